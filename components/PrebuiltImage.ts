import * as pulumi from "@pulumi/pulumi";
import { prebuiltImageProvider } from "../dynamic-providers/prebuiltImageProvider";
import { COMPONENT_TYPES, DYNAMIC_MODULE, PrebuiltImageInputs } from "../lib/contract";

/** The registry token is not an arg: the provider reads it from the stack config when it runs. */
export interface PrebuiltImageArgs {
    /** `<registry>/<app>:<tag>` from kiloclaw:imageRef. */
    imageRef: pulumi.Input<string>;
    registryServer: pulumi.Input<string>;
    /** The openclaw version the stack publishes to the worker. */
    expectedOpenclawVersion: pulumi.Input<string>;
    /** Where that version comes from, for the error message. */
    versionSource: pulumi.Input<string>;
}

type PrebuiltImageProps = { [K in keyof PrebuiltImageInputs]: pulumi.Input<PrebuiltImageInputs[K]> };

class PrebuiltImageResource extends pulumi.dynamic.Resource {
    public readonly digest!: pulumi.Output<string>;
    public readonly openclawVersion!: pulumi.Output<string>;

    constructor(name: string, props: PrebuiltImageProps, opts: pulumi.CustomResourceOptions) {
        super(prebuiltImageProvider, name, { digest: undefined, openclawVersion: undefined, ...props }, opts, DYNAMIC_MODULE, "PrebuiltImage");
    }
}

/** Pulls an image already in the registry and checks its openclaw version before anything else of the rollout runs. */
export class PrebuiltImage extends pulumi.ComponentResource {
    /** `<registry>/<app>:<tag>@sha256:…`: exactly the image that was checked. */
    public readonly imageRef: pulumi.Output<string>;
    public readonly digest: pulumi.Output<string>;
    /** What `openclaw --version` printed in the image. */
    public readonly openclawVersion: pulumi.Output<string>;

    constructor(name: string, args: PrebuiltImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super(COMPONENT_TYPES.prebuiltImage, name, {}, opts);
        const checked = new PrebuiltImageResource(`${name}-check`, { ...args }, { parent: this, dependsOn: opts?.dependsOn });
        this.digest = checked.digest;
        this.openclawVersion = checked.openclawVersion;
        this.imageRef = pulumi.interpolate`${args.imageRef}@${checked.digest}`;
        this.registerOutputs({ imageRef: this.imageRef, digest: this.digest, openclawVersion: this.openclawVersion });
    }
}
