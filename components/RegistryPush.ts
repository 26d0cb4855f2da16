import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

export interface RegistryPushArgs {
    /** The local image to push. */
    sourceImage: pulumi.Input<string>;
    /** Re-push when this changes (the local image id). */
    sourceImageId: pulumi.Input<string>;
    registryServer: pulumi.Input<string>;
    registryApp: pulumi.Input<string>;
    imageTag: pulumi.Input<string>;
    /** The Fly API token, used as the registry password (user `x`), as `fly auth docker` does. */
    registryToken: pulumi.Input<string>;
}

/** Tags and pushes the image to `<registryServer>/<registryApp>:<tag>`; no login outlives the push. */
export class RegistryPush extends pulumi.ComponentResource {
    /** `<registryServer>/<registryApp>:<tag>`: the name pushed to (known before the push). */
    public readonly targetImage: pulumi.Output<string>;
    /**
     * `<registryServer>/<registryApp>:<tag>@sha256:…`: exactly what was pushed. It comes from the push's
     * result, so whatever pulls it (the warm machine) waits for the push and gets that manifest, not a re-pushed tag.
     */
    public readonly imageRef: pulumi.Output<string>;
    /** The pushed manifest digest, `sha256:…`. */
    public readonly digest: pulumi.Output<string>;

    constructor(name: string, args: RegistryPushArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:RegistryPush", name, {}, opts);
        this.targetImage = pulumi.interpolate`${args.registryServer}/${args.registryApp}:${args.imageTag}`;
        const push = new command.local.Command(
            `${name}-push`,
            {
                // Relative: the command provider runs in the project directory (dir unset), so no checkout's path is in the state.
                create: "bash scripts/push-image.sh",
                environment: {
                    SOURCE_IMAGE: args.sourceImage,
                    TARGET_IMAGE: this.targetImage,
                    REGISTRY_SERVER: args.registryServer,
                    REGISTRY_USERNAME: "x",
                },
                // The token goes on stdin: never on a command line or in the environment.
                stdin: pulumi.secret(args.registryToken),
                triggers: [args.sourceImageId, this.targetImage],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.digest = push.stdout.apply(pushedDigest);
        this.imageRef = pulumi.all([this.targetImage, this.digest, push.urn]).apply(([target, digest, urn]) => {
            if (!digest) {
                throw new Error(
                    `The push of ${target} printed no sha256 digest (scripts/push-image.sh): re-push with \`pulumi up --replace '${urn}'\`.`,
                );
            }
            return `${target}@${digest}`;
        });
        this.registerOutputs({ targetImage: this.targetImage, imageRef: this.imageRef, digest: this.digest });
    }
}

/** The last `sha256:<64 hex>` the push script printed. */
export function pushedDigest(stdout: string): string {
    const all = stdout.match(/sha256:[0-9a-f]{64}/g);
    return all ? all[all.length - 1] : "";
}
