import * as path from "node:path";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { imageTagForContext } from "../lib/contextHash";

export interface KiloclawImageArgs {
    /** The kiloclaw/ directory: the build context. */
    context: string;
    /** Dockerfile path relative to the context. */
    dockerfile?: string;
}

/** Builds the KiloClaw image locally for linux/amd64, tagged by the hash of its build context. */
export class KiloclawImage extends pulumi.ComponentResource {
    /** `dev-` + 12 hex of the context hash: unchanged files give an unchanged tag. */
    public readonly imageTag: string;
    /** The local image name, `kiloclaw:<tag>`. */
    public readonly imageName: pulumi.Output<string>;
    /** The local image id; changes whenever the image is rebuilt. */
    public readonly imageId: pulumi.Output<string>;

    constructor(name: string, args: KiloclawImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:KiloclawImage", name, {}, opts);
        const dockerfile = args.dockerfile ?? "Dockerfile";
        this.imageTag = imageTagForContext(args.context, dockerfile);

        const image = new docker.Image(
            `${name}-build`,
            {
                imageName: `kiloclaw:${this.imageTag}`,
                build: {
                    context: args.context,
                    dockerfile: path.join(args.context, dockerfile),
                    // Fly runs amd64 only; an arm64 laptop must still build amd64.
                    platform: "linux/amd64",
                },
                skipPush: true,
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.imageName = image.imageName;
        this.imageId = image.repoDigest;
        this.registerOutputs({ imageTag: this.imageTag, imageName: this.imageName, imageId: this.imageId });
    }
}
