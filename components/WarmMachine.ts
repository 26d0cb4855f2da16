import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider } from "../dynamic-providers/warmMachineProvider";

export interface WarmMachineArgs {
    flyApiUrl: pulumi.Input<string>;
    /** The Fly app whose registry holds the image (the runbook warms in FLY_APP_NAME's app). */
    appName: pulumi.Input<string>;
    region: pulumi.Input<string>;
    /** The pushed image, `<registry>/<app>:<tag>`. */
    image: pulumi.Input<string>;
    flyApiToken: pulumi.Input<string>;
    /** Marks the machine so a crashed run's leftover is found and removed (the stack's name). */
    owner: pulumi.Input<string>;
    timeoutSeconds?: pulumi.Input<number>;
    /** Seconds per call to Fly's wait endpoint (at most 60). */
    waitSeconds?: pulumi.Input<number>;
}

class WarmMachineResource extends pulumi.dynamic.Resource {
    public readonly machineId!: pulumi.Output<string>;
    public readonly waitTimeouts!: pulumi.Output<number>;

    constructor(name: string, props: Record<string, pulumi.Input<unknown>>, opts: pulumi.CustomResourceOptions) {
        super(warmMachineProvider, name, { machineId: undefined, waitTimeouts: undefined, ...props }, opts, "kiloclaw", "WarmMachine");
    }
}

/** Pulls a new image onto Fly with a throwaway machine (placeholder key only), then destroys it. */
export class WarmMachine extends pulumi.ComponentResource {
    /** The throwaway machine's id (already destroyed). */
    public readonly machineId: pulumi.Output<string>;
    /** How many times Fly answered 408 while the image was pulled. */
    public readonly waitTimeouts: pulumi.Output<number>;

    constructor(name: string, args: WarmMachineArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:WarmMachine", name, {}, opts);
        const machine = new WarmMachineResource(
            `${name}-machine`,
            {
                flyApiUrl: args.flyApiUrl,
                appName: args.appName,
                region: args.region,
                image: args.image,
                // The runbook's placeholder: the image pulls and starts, no real key is exposed.
                env: { KILOCODE_API_KEY: "warm" },
                flyApiToken: pulumi.secret(args.flyApiToken),
                owner: args.owner,
                timeoutSeconds: args.timeoutSeconds ?? 300,
                waitSeconds: args.waitSeconds ?? 60,
            },
            { parent: this, dependsOn: opts?.dependsOn, additionalSecretOutputs: ["flyApiToken"] },
        );
        this.machineId = machine.machineId;
        this.waitTimeouts = machine.waitTimeouts;
        this.registerOutputs({ machineId: this.machineId, waitTimeouts: this.waitTimeouts });
    }
}
