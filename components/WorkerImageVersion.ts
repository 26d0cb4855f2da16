import * as pulumi from "@pulumi/pulumi";
import { workerImageVersionProvider } from "../dynamic-providers/workerImageVersionProvider";

export interface WorkerImageVersionArgs {
    /** cloud/kiloclaw/.dev.vars */
    devVarsPath: pulumi.Input<string>;
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
    workerUrl: pulumi.Input<string>;
    internalApiKey: pulumi.Input<string>;
    /** Call publish-image-version on workers that have it. */
    publish?: pulumi.Input<boolean>;
    /** Non-secret worker settings from .dev.vars, for the policy pack. */
    workerSettings?: pulumi.Input<Record<string, string>>;
    /** Names of the keys .env.development.local sets, for the policy pack. */
    envLocalKeys?: pulumi.Input<string[]>;
}

class WorkerImageVersionResource extends pulumi.dynamic.Resource {
    public readonly previousImageTag!: pulumi.Output<string | null>;
    public readonly published!: pulumi.Output<string>;

    constructor(name: string, props: Record<string, pulumi.Input<unknown>>, opts: pulumi.CustomResourceOptions) {
        super(workerImageVersionProvider, name, { previousImageTag: undefined, published: undefined, ...props }, opts, "kiloclaw", "WorkerImageVersion");
    }
}

/** Points the worker at the new tag: FLY_IMAGE_TAG and OPENCLAW_VERSION in .dev.vars, and publish-image-version. */
export class WorkerImageVersion extends pulumi.ComponentResource {
    public readonly imageTag: pulumi.Output<string>;
    /** The tag .dev.vars named before this rollout. */
    public readonly previousImageTag: pulumi.Output<string | null>;
    /** "published", "unsupported" (older worker) or "skipped". */
    public readonly published: pulumi.Output<string>;

    constructor(name: string, args: WorkerImageVersionArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:WorkerImageVersion", name, {}, opts);
        const version = new WorkerImageVersionResource(
            `${name}-dev-vars`,
            {
                devVarsPath: args.devVarsPath,
                imageTag: args.imageTag,
                imageDigest: args.imageDigest,
                openclawVersion: args.openclawVersion,
                openclawPin: args.openclawPin,
                registryServer: args.registryServer,
                registryApp: args.registryApp,
                workerRegistryApp: args.workerRegistryApp,
                workerUrl: args.workerUrl,
                internalApiKey: pulumi.secret(args.internalApiKey),
                publish: args.publish ?? true,
                workerSettings: args.workerSettings ?? {},
                envLocalKeys: args.envLocalKeys ?? [],
            },
            { parent: this, dependsOn: opts?.dependsOn, additionalSecretOutputs: ["internalApiKey"] },
        );
        this.imageTag = pulumi.output(args.imageTag);
        this.previousImageTag = version.previousImageTag;
        this.published = version.published;
        this.registerOutputs({ imageTag: this.imageTag, previousImageTag: this.previousImageTag, published: this.published });
    }
}
