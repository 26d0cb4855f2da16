import * as pulumi from "@pulumi/pulumi";
import { workerInstanceProvider } from "../dynamic-providers/workerInstanceProvider";
import { COMPONENT_TYPES, DYNAMIC_MODULE, WorkerInstanceInputs } from "../lib/contract";

/** The worker's URL and key are not args: the provider reads them from the stack config each time it runs. */
export interface WorkerInstanceArgs {
    userId: pulumi.Input<string>;
    /** The tag the instance must run; a new tag destroys and re-provisions it. */
    imageTag: pulumi.Input<string>;
    /** The pushed image; the instance's Fly machine must run exactly this. */
    imageRef: pulumi.Input<string>;
    openclawVersion: pulumi.Input<string>;
    region: pulumi.Input<string>;
    kilocodeApiKey: pulumi.Input<string>;
    /** `dev-` + sha256(userId)[:20], as the worker derives it. */
    expectedFlyAppName: pulumi.Input<string>;
    timeoutSeconds?: pulumi.Input<number>;
    /** Pause between status reads, in ms. */
    pollMs?: pulumi.Input<number>;
}

class WorkerInstanceResource extends pulumi.dynamic.Resource {
    public readonly status!: pulumi.Output<string>;
    public readonly sandboxId!: pulumi.Output<string>;
    public readonly flyAppName!: pulumi.Output<string>;
    public readonly flyMachineId!: pulumi.Output<string>;
    public readonly flyVolumeId!: pulumi.Output<string>;
    public readonly flyRegion!: pulumi.Output<string>;
    public readonly trackedImageTag!: pulumi.Output<string>;
    public readonly runningOpenclawVersion!: pulumi.Output<string | null>;
    public readonly runningImage!: pulumi.Output<string>;
    public readonly gatewayState!: pulumi.Output<string>;
    public readonly gatewayToken!: pulumi.Output<string>;

    constructor(
        name: string,
        props: { [K in keyof WorkerInstanceInputs]: pulumi.Input<WorkerInstanceInputs[K]> },
        opts: pulumi.CustomResourceOptions,
    ) {
        const outputs = [
            "status",
            "sandboxId",
            "flyAppName",
            "flyMachineId",
            "flyVolumeId",
            "flyRegion",
            "trackedImageTag",
            "runningOpenclawVersion",
            "runningImage",
            "gatewayState",
            "gatewayToken",
        ];
        super(
            workerInstanceProvider,
            name,
            { ...Object.fromEntries(outputs.map((k) => [k, undefined])), ...props },
            opts,
            DYNAMIC_MODULE,
            "WorkerInstance",
        );
    }
}

/** The developer's KiloClaw instance, provisioned and destroyed only through the worker's platform API. */
export class WorkerInstance extends pulumi.ComponentResource {
    public readonly status: pulumi.Output<string>;
    public readonly sandboxId: pulumi.Output<string>;
    public readonly flyAppName: pulumi.Output<string>;
    public readonly flyMachineId: pulumi.Output<string>;
    public readonly flyVolumeId: pulumi.Output<string>;
    public readonly flyRegion: pulumi.Output<string>;
    public readonly openclawVersion: pulumi.Output<string>;
    public readonly trackedImageTag: pulumi.Output<string>;
    /** The image Fly reports the instance's machine runs (checked against the pushed ref). */
    public readonly runningImage: pulumi.Output<string>;
    /** The gateway's state as the worker reports it ("running"), or "unsupported" on a worker without gateway/status. */
    public readonly gatewayState: pulumi.Output<string>;
    /** Secret. */
    public readonly gatewayToken: pulumi.Output<string>;

    constructor(name: string, args: WorkerInstanceArgs, opts?: pulumi.ComponentResourceOptions) {
        super(COMPONENT_TYPES.workerInstance, name, {}, opts);
        const instance = new WorkerInstanceResource(
            `${name}-instance`,
            {
                userId: args.userId,
                imageTag: args.imageTag,
                imageRef: args.imageRef,
                openclawVersion: args.openclawVersion,
                region: args.region,
                kilocodeApiKey: pulumi.secret(args.kilocodeApiKey),
                expectedFlyAppName: args.expectedFlyAppName,
                timeoutSeconds: args.timeoutSeconds ?? 300,
                pollMs: args.pollMs ?? 1000,
            },
            // One instance per user: the old one must be gone before the new one is provisioned.
            { parent: this, dependsOn: opts?.dependsOn, deleteBeforeReplace: true, additionalSecretOutputs: ["gatewayToken", "kilocodeApiKey"] },
        );
        this.status = instance.status;
        this.sandboxId = instance.sandboxId;
        this.flyAppName = instance.flyAppName;
        this.flyMachineId = instance.flyMachineId;
        this.flyVolumeId = instance.flyVolumeId;
        this.flyRegion = instance.flyRegion;
        this.openclawVersion = pulumi
            .all([instance.runningOpenclawVersion, args.openclawVersion])
            .apply(([running, expected]) => running ?? expected);
        this.trackedImageTag = instance.trackedImageTag;
        this.runningImage = instance.runningImage;
        this.gatewayState = instance.gatewayState;
        this.gatewayToken = pulumi.secret(instance.gatewayToken);
        this.registerOutputs({
            status: this.status,
            sandboxId: this.sandboxId,
            flyAppName: this.flyAppName,
            flyMachineId: this.flyMachineId,
            flyVolumeId: this.flyVolumeId,
            flyRegion: this.flyRegion,
            openclawVersion: this.openclawVersion,
            trackedImageTag: this.trackedImageTag,
            runningImage: this.runningImage,
            gatewayState: this.gatewayState,
            gatewayToken: this.gatewayToken,
        });
    }
}
