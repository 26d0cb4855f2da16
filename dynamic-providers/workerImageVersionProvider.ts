// Points the worker at a new image tag: FLY_IMAGE_TAG and OPENCLAW_VERSION in .dev.vars
// (which the worker reads at start), plus publish-image-version on workers that have it.
// The file changes only when the resource is created or updated: the publish goes first, so
// a failed one leaves .dev.vars as it was. Destroy leaves .dev.vars as it is: the file is the
// developer's, and the tag it names stays valid in the registry.
import * as pulumi from "@pulumi/pulumi";
import { WorkerImageVersionInputs, WorkerImageVersionOutputs } from "../lib/contract";
import { parseDevVars, updateDevVars } from "../lib/devVars";
import * as platform from "./platformClient";
import { configureFromStack, stackAccess } from "./settings";

// The props live in the shared contract (lib/contract.ts).
export type { WorkerImageVersionInputs, WorkerImageVersionOutputs };

const REPLACE_ON = ["imageTag", "openclawVersion", "imageDigest"] as const;

/** .dev.vars of kiloclaw:kiloclawDir, from the stack config at call time (not an input: a checkout may move). */
function devVarsPath(): string {
    const file = stackAccess().devVarsPath;
    if (!file) throw new Error("kiloclaw:kiloclawDir is not set: run `pulumi config set kiloclaw:kiloclawDir <path to cloud/kiloclaw>`.");
    return file;
}

async function apply(inputs: WorkerImageVersionInputs): Promise<WorkerImageVersionOutputs> {
    // Required inside the method: a captured fs module does not serialize.
    const fs: typeof import("node:fs") = require("node:fs");
    const file = devVarsPath();
    if (!fs.existsSync(file)) {
        throw new Error(`${file} does not exist: copy .dev.vars.example to .dev.vars in cloud/kiloclaw (or fix kiloclaw:kiloclawDir).`);
    }
    const text = fs.readFileSync(file, "utf8");
    const previousImageTag = parseDevVars(text).FLY_IMAGE_TAG ?? null;
    let published: WorkerImageVersionOutputs["published"] = "skipped";
    if (inputs.publish) {
        const access = stackAccess();
        published = await platform.publishImageVersion(
            { baseUrl: access.workerUrl, internalApiKey: access.internalApiKey },
            {
                openclawVersion: inputs.openclawVersion,
                imageTag: inputs.imageTag,
                ...(inputs.imageDigest ? { imageDigest: inputs.imageDigest } : {}),
            },
        );
    }
    const updated = updateDevVars(text, { FLY_IMAGE_TAG: inputs.imageTag, OPENCLAW_VERSION: inputs.openclawVersion });
    if (updated !== text) {
        // Write beside and rename, so the worker never reads half a file.
        const tmp = `${file}.kiloclaw-rollout-${process.pid}.tmp`;
        fs.writeFileSync(tmp, updated, { mode: fs.statSync(file).mode });
        fs.renameSync(tmp, file);
    }
    return { ...inputs, previousImageTag, published };
}

export const workerImageVersionProvider: pulumi.dynamic.ResourceProvider<WorkerImageVersionInputs, WorkerImageVersionOutputs> = {
    configure: configureFromStack,

    async diff(_id: string, olds: WorkerImageVersionOutputs, news: WorkerImageVersionInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACE_ON.filter((k) => (olds[k] ?? null) !== (news[k] ?? null));
        const changed = (Object.keys(news) as Array<keyof WorkerImageVersionInputs>).some(
            (k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null),
        );
        return { changes: changed || replaces.length > 0, replaces: [...replaces], deleteBeforeReplace: false };
    },

    async create(inputs: WorkerImageVersionInputs): Promise<pulumi.dynamic.CreateResult<WorkerImageVersionOutputs>> {
        const outs = await apply(inputs);
        return { id: `${inputs.imageTag}`, outs };
    },

    async read(id: string, props?: WorkerImageVersionOutputs): Promise<pulumi.dynamic.ReadResult<WorkerImageVersionOutputs>> {
        if (!props) return { id: "" };
        const fs: typeof import("node:fs") = require("node:fs");
        const file = devVarsPath();
        if (!fs.existsSync(file)) return { id, props: { ...props, imageTag: "", openclawVersion: "" } };
        // Report what the file says now, so a hand edit (or push-dev.sh) shows up as drift.
        const vars = parseDevVars(fs.readFileSync(file, "utf8"));
        return { id, props: { ...props, imageTag: vars.FLY_IMAGE_TAG ?? "", openclawVersion: vars.OPENCLAW_VERSION ?? "" } };
    },

    async update(
        _id: string,
        _olds: WorkerImageVersionOutputs,
        news: WorkerImageVersionInputs,
    ): Promise<pulumi.dynamic.UpdateResult<WorkerImageVersionOutputs>> {
        return { outs: await apply(news) };
    },

    async delete(): Promise<void> {
        // Deliberately leaves .dev.vars alone (see the file comment).
    },
};
