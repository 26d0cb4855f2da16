// Removes the local Docker images a rollout built and tagged (`kiloclaw:<tag>` and the
// pushed `<registry>/<app>:<tag>`): a new tag replaces this resource, which removes the
// previous tag's images once the new instance runs; destroy removes the current ones.
// @pulumi/docker's Image never deletes the local image, and each real image is ~1.5 GB.
// child_process is required inside the methods: the provider is serialized into the state.
import type * as pulumi from "@pulumi/pulumi";
import type { LocalImagesInputs, LocalImagesOutputs } from "../lib/contract";

/** Runs `docker <args>` and returns its exit code and stderr. */
function docker(args: string[]): { code: number; stderr: string } {
    const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
    const r = spawnSync("docker", args, { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
    return { code: r.error ? -1 : (r.status ?? -1), stderr: (r.stderr ?? "").trim() };
}

export const localImagesProvider: pulumi.dynamic.ResourceProvider<LocalImagesInputs, LocalImagesOutputs> = {
    async create(inputs: LocalImagesInputs): Promise<pulumi.dynamic.CreateResult<LocalImagesOutputs>> {
        return { id: `local-images-${Date.now().toString(36)}`, outs: { images: inputs.images } };
    },

    async diff(_id: string, olds: LocalImagesOutputs, news: LocalImagesInputs): Promise<pulumi.dynamic.DiffResult> {
        const changed = JSON.stringify(olds.images) !== JSON.stringify(news.images);
        // Replace (create first, delete last): the old images go when the update is done with them.
        return { changes: changed, replaces: changed ? ["images"] : [], deleteBeforeReplace: false };
    },

    async delete(_id: string, props: LocalImagesOutputs): Promise<void> {
        const present = props.images.filter((ref) => docker(["image", "inspect", ref]).code === 0);
        if (present.length === 0) {
            if (docker(["info"]).code === 0) return; // already removed (by hand, or never pulled here)
            throw new Error(
                `Docker is not running, so the local images ${props.images.join(", ")} cannot be removed: start Docker ` +
                    "(bootstrap/start-docker.sh) and run `pulumi destroy` again.",
            );
        }
        const rmi = docker(["rmi", ...present]);
        if (rmi.code !== 0) {
            throw new Error(
                `docker rmi ${present.join(" ")} failed: ${rmi.stderr}\nStop what uses them ` +
                    `(\`docker ps -a --filter ancestor=${present[0]}\`) and run \`pulumi destroy\` (or \`pulumi up\`) again.`,
            );
        }
    },
};
