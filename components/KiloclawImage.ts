import * as path from "node:path";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { localImageRepository, LocalScope, localScopeSlug } from "../lib/localScope";
import { stackContextsRoot, stageBuildContext, stagedContextsRoot } from "../lib/stagedContext";

export interface KiloclawImageArgs {
    /** The kiloclaw/ directory: the build context. */
    context: string;
    /** Dockerfile path relative to the context. */
    dockerfile?: string;
    /** `--build-arg`s; part of the tag. */
    buildArgs?: Record<string, string>;
    /** Whose image it is: names the image and the staged context's directory (lib/localScope.ts). */
    scope: LocalScope;
}

/**
 * Builds the KiloClaw image locally for linux/amd64, tagged by the hash of what its Dockerfile consumes.
 * Docker gets a staged copy of only those files (lib/stagedContext.ts), never the worker's directory.
 */
export class KiloclawImage extends pulumi.ComponentResource {
    /** `dev-` + 12 hex of the build-input hash: the worker's own files beside the Dockerfile never change it. */
    public readonly imageTag: string;
    /** The staged build context, relative to the project directory (as docker and LocalImages get it: no machine path in the state). */
    public readonly contextDir: string;
    /** The local image name, `kiloclaw-<project>-<stack>[-<sandbox>]:<tag>`: no other stack shares it. */
    public readonly imageName: pulumi.Output<string>;
    /** The local image id; changes whenever the image is rebuilt. */
    public readonly imageId: pulumi.Output<string>;

    constructor(name: string, args: KiloclawImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:KiloclawImage", name, {}, opts);
        const dockerfile = args.dockerfile ?? "Dockerfile";
        // The program's cwd is the project directory, as is the docker provider's: a path relative to it is
        // the same in every checkout, and the state holds no path of this machine.
        const projectDir = process.cwd();
        const staged = stageBuildContext(
            args.context,
            dockerfile,
            args.buildArgs,
            stackContextsRoot(localScopeSlug(args.scope), stagedContextsRoot(projectDir)),
        );
        this.imageTag = staged.tag;
        const context = path.relative(projectDir, staged.dir).split(path.sep).join("/");
        this.contextDir = context;

        const image = new docker.Image(
            `${name}-build`,
            {
                imageName: `${localImageRepository(args.scope)}:${this.imageTag}`,
                build: {
                    context,
                    dockerfile: path.posix.join(context, staged.dockerfileRel),
                    args: args.buildArgs,
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
