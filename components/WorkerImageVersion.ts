import * as pulumi from "@pulumi/pulumi";
import { workerImageVersionProvider } from "../dynamic-providers/workerImageVersionProvider";
import { COMPONENT_TYPES, DYNAMIC_MODULE, WorkerImageVersionFacts, WorkerImageVersionInputs } from "../lib/contract";

/** The worker's URL and key and .dev.vars' path are not args: the provider reads them from the stack config each time it runs. */
export interface WorkerImageVersionArgs {
    imageTag: pulumi.Input<string>;
    imageDigest?: pulumi.Input<string>;
    openclawVersion: pulumi.Input<string>;
    /** The Dockerfile's pin, for the policy pack (absent for a prebuilt image). */
    openclawPin?: pulumi.Input<string>;
    registryServer: pulumi.Input<string>;
    /** Where the image was pushed. */
    registryApp: pulumi.Input<string>;
    /** Where the worker pulls from (FLY_REGISTRY_APP ?? FLY_APP_NAME ?? kiloclaw-machines). */
    workerRegistryApp: pulumi.Input<string>;
    /** Call publish-image-version on workers that have it. */
    publish?: pulumi.Input<boolean>;
    /** The instance's user: the provider checks the worker will provision the new tag for it before the instance step runs. */
    userId?: pulumi.Input<string>;
    /** Sent with the current worker's config-only re-provision that reads back its tag (kept secret). */
    kilocodeApiKey?: pulumi.Input<string>;
    /** kiloclaw:workerRestartedForTag, for a worker that offers no read of its tag. */
    workerRestartedForTag?: pulumi.Input<string>;
    /** Non-secret worker settings from .dev.vars, for the policy pack. */
    workerSettings?: pulumi.Input<Record<string, string>>;
    /** Names of the keys .env.development.local sets, for the policy pack. */
    envLocalKeys?: pulumi.Input<string[]>;
}

class WorkerImageVersionResource extends pulumi.dynamic.Resource {
    public readonly previousImageTag!: pulumi.Output<string | null>;
    public readonly published!: pulumi.Output<string>;
    public readonly workerTagCheck!: pulumi.Output<string>;

    constructor(
        name: string,
        props: { [K in keyof WorkerImageVersionInputs]: pulumi.Input<WorkerImageVersionInputs[K]> },
        opts: pulumi.CustomResourceOptions,
    ) {
        super(
            workerImageVersionProvider,
            name,
            { previousImageTag: undefined, published: undefined, workerTagCheck: undefined, ...props },
            opts,
            DYNAMIC_MODULE,
            "WorkerImageVersion",
        );
    }
}

type FactInputs = { [K in keyof WorkerImageVersionFacts]: pulumi.Input<WorkerImageVersionFacts[K]> };

/**
 * Points the worker at the new tag: FLY_IMAGE_TAG and OPENCLAW_VERSION in .dev.vars, and publish-image-version;
 * then checks the worker's next provision will use it (the last step before the instance).
 * The facts only the policy pack reads are this component's own props (WorkerImageVersionFacts): the provider
 * never sees them, so editing them causes no provider work.
 */
export class WorkerImageVersion extends pulumi.ComponentResource {
    public readonly imageTag: pulumi.Output<string>;
    /** The tag .dev.vars named before this rollout. */
    public readonly previousImageTag: pulumi.Output<string | null>;
    /** "published", "unsupported" (older worker) or "skipped". */
    public readonly published: pulumi.Output<string>;
    /** How the worker's use of the tag was checked before the instance step (WorkerTagCheck). */
    public readonly workerTagCheck: pulumi.Output<string>;

    constructor(name: string, args: WorkerImageVersionArgs, opts?: pulumi.ComponentResourceOptions) {
        const facts: FactInputs = {
            imageTag: args.imageTag,
            openclawVersion: args.openclawVersion,
            openclawPin: args.openclawPin,
            registryServer: args.registryServer,
            registryApp: args.registryApp,
            workerRegistryApp: args.workerRegistryApp,
            workerSettings: args.workerSettings ?? {},
            envLocalKeys: args.envLocalKeys ?? [],
        };
        super(COMPONENT_TYPES.workerImageVersion, name, facts, opts);
        const version = new WorkerImageVersionResource(
            `${name}-dev-vars`,
            {
                imageTag: args.imageTag,
                imageDigest: args.imageDigest,
                openclawVersion: args.openclawVersion,
                publish: args.publish ?? true,
                userId: args.userId,
                kilocodeApiKey: args.kilocodeApiKey === undefined ? undefined : pulumi.secret(args.kilocodeApiKey),
                workerRestartedForTag: args.workerRestartedForTag,
            },
            { parent: this, dependsOn: opts?.dependsOn, additionalSecretOutputs: ["kilocodeApiKey"] },
        );
        this.imageTag = pulumi.output(args.imageTag);
        this.previousImageTag = version.previousImageTag;
        this.published = version.published;
        this.workerTagCheck = version.workerTagCheck;
        // Stack policies read a component's outputs: the facts go there too, under the same names.
        this.registerOutputs({
            ...facts,
            imageTag: this.imageTag,
            previousImageTag: this.previousImageTag,
            published: this.published,
            workerTagCheck: this.workerTagCheck,
        });
    }
}
