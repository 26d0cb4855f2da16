import * as pulumi from "@pulumi/pulumi";
import { COMPONENT_TYPES } from "../lib/contract";
import { localImagesProvider } from "../dynamic-providers/localImagesProvider";

export interface LocalImagesArgs {
    /** References this stack built in the local Docker engine (named by its identity). */
    images: pulumi.Input<pulumi.Input<string>[]>;
    /** The staged build contexts those images were built from. */
    contexts?: pulumi.Input<pulumi.Input<string>[]>;
}

class LocalImagesResource extends pulumi.dynamic.Resource {
    constructor(name: string, props: Record<string, pulumi.Input<unknown>>, opts: pulumi.CustomResourceOptions) {
        super(localImagesProvider, name, { ...props }, opts, "kiloclaw", "LocalImages");
    }
}

/**
 * The local images (and staged build contexts) of the current tag: removed when a new tag supersedes them (after the new
 * instance runs) and on `pulumi destroy` (after the instance is gone).
 */
export class LocalImages extends pulumi.ComponentResource {
    public readonly images: pulumi.Output<string[]>;

    constructor(name: string, args: LocalImagesArgs, opts?: pulumi.ComponentResourceOptions) {
        super(COMPONENT_TYPES.localImages, name, {}, opts);
        this.images = pulumi.output(args.images);
        new LocalImagesResource(
            `${name}-cleanup`,
            { images: this.images, contexts: args.contexts ?? [] },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.registerOutputs({ images: this.images });
    }
}
