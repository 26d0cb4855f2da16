// Removes the local Docker images a rollout built (`kiloclaw-<project>-<stack>:<tag>`, named by the
// stack's identity, lib/localScope.ts) and the staged build contexts they were built from: a new tag
// replaces this resource, which removes the previous tag's once the new instance runs; destroy removes
// the current ones. Only names this stack owns are tracked, so no other stack's image is ever touched.
// @pulumi/docker's Image never deletes the local image, and each real image is ~1.5 GB.
// child_process and fs are required inside the methods: the provider is serialized into the state.
import type * as pulumi from "@pulumi/pulumi";
import type { LocalImagesInputs, LocalImagesOutputs } from "../lib/contract";

/** Runs `docker <args>` and returns its exit code and stderr. */
function docker(args: string[]): { code: number; stderr: string } {
    const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
    const r = spawnSync("docker", args, { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
    return { code: r.error ? -1 : (r.status ?? -1), stderr: (r.stderr ?? "").trim() };
}

/** Removes staged context directories, and a stack's context directory once it is empty. */
function removeContexts(dirs: string[]): void {
    const fs = require("node:fs") as typeof import("node:fs");
    const path = require("node:path") as typeof import("node:path");
    for (const dir of dirs) {
        fs.rmSync(dir, { recursive: true, force: true });
        try {
            fs.rmdirSync(path.dirname(dir));
        } catch {
            // the stack's other tags are still there, or it is already gone
        }
    }
}

export const localImagesProvider: pulumi.dynamic.ResourceProvider<LocalImagesInputs, LocalImagesOutputs> = {
    async create(inputs: LocalImagesInputs): Promise<pulumi.dynamic.CreateResult<LocalImagesOutputs>> {
        return { id: `local-images-${Date.now().toString(36)}`, outs: { images: inputs.images, contexts: inputs.contexts ?? [] } };
    },

    async diff(_id: string, olds: LocalImagesOutputs, news: LocalImagesInputs): Promise<pulumi.dynamic.DiffResult> {
        const changed = JSON.stringify(olds.images) !== JSON.stringify(news.images);
        // Replace (create first, delete last): the old images go when the update is done with them.
        if (changed) return { changes: true, replaces: ["images"], deleteBeforeReplace: false };
        // Same images, their context elsewhere (a moved cache): recorded in place, nothing removed.
        return { changes: JSON.stringify(olds.contexts ?? []) !== JSON.stringify(news.contexts ?? []), replaces: [], deleteBeforeReplace: false };
    },

    async update(_id: string, _olds: LocalImagesOutputs, news: LocalImagesInputs): Promise<pulumi.dynamic.UpdateResult<LocalImagesOutputs>> {
        return { outs: { images: news.images, contexts: news.contexts ?? [] } };
    },

    async delete(_id: string, props: LocalImagesOutputs): Promise<void> {
        const present = props.images.filter((ref) => docker(["image", "inspect", ref]).code === 0);
        if (present.length === 0) {
            if (docker(["info"]).code !== 0) {
                throw new Error(
                    `Docker is not running, so the local images ${props.images.join(", ")} cannot be removed: start Docker ` +
                        "(bootstrap/start-docker.sh) and run `pulumi destroy` again.",
                );
            }
            // already removed (by hand, or never pulled here)
        } else {
            const rmi = docker(["rmi", ...present]);
            if (rmi.code !== 0) {
                throw new Error(
                    `docker rmi ${present.join(" ")} failed: ${rmi.stderr}\nStop what uses them ` +
                        `(\`docker ps -a --filter ancestor=${present[0]}\`) and run \`pulumi destroy\` (or \`pulumi up\`) again.`,
                );
            }
        }
        removeContexts(props.contexts ?? []);
    },
};
