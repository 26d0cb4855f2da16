// Points the worker at a new image tag: FLY_IMAGE_TAG and OPENCLAW_VERSION in .dev.vars
// (which the worker reads at start), plus publish-image-version on workers that have it.
// The file changes only when the resource is created or updated: the publish goes first, so
// a failed one leaves .dev.vars as it was. Destroy leaves .dev.vars as it is: the file is the
// developer's, and the tag it names stays valid in the registry.
// Then, before the instance step may destroy anything, it checks that the worker's next
// provision will use the new tag (checkWorkerWillUseTag): this is the last step before the
// instance, and a worker that was not restarted stops the rollout here with the instance intact.
import * as pulumi from "@pulumi/pulumi";
import { WorkerImageVersionInputs, WorkerImageVersionOutputs, WorkerTagCheck } from "../lib/contract";
import { parseDevVars, updateDevVars } from "../lib/devVars";
import * as fly from "./flyMachinesClient";
import * as platform from "./platformClient";
import { configureFromStack, stackAccess } from "./settings";

// The props live in the shared contract (lib/contract.ts).
export type { WorkerImageVersionInputs, WorkerImageVersionOutputs };

const REPLACE_ON = ["imageTag", "openclawVersion", "imageDigest"] as const;
/** Inputs only the tag check reads: a change to them alone is no reason to point the worker again. */
const CHECK_ONLY: ReadonlyArray<keyof WorkerImageVersionInputs> = ["userId", "kilocodeApiKey", "workerRestartedForTag"];

const RESTART = "cd cloud/kiloclaw && pnpm start";

/** The tag at the end of an image reference (`<registry>/<app>:<tag>[@digest]`). */
function tagOf(image: string): string {
    return /:([^/:@]+)(@.*)?$/.exec(image)?.[1] ?? "";
}

/** Statuses whose instance the probe may re-provision (config-only): anything else is going away or not there. */
const PROBE_STATES = ["running", "stopped", "provisioned"];

/**
 * Whether the worker's next provision for inputs.userId uses inputs.imageTag, decided before the instance is
 * touched. Per generation (README, "Older workers must be restarted after a new tag"):
 * - newest: the instance step pins the tag (`pinnedImageTag`), so no restart is needed;
 * - current: provision takes the registered "latest", which a worker that was not restarted sets back to the
 *   tag it read from .dev.vars at start on every request. A config-only re-provision of the existing instance
 *   (no Fly call, the machine keeps its image) makes it read "latest" into `trackedImageTag`, which status shows;
 * - early: the worker uses the FLY_IMAGE_TAG it read at start and no route shows it: the developer confirms the
 *   restart with kiloclaw:workerRestartedForTag.
 * Without an instance there is nothing to keep: the instance step checks the machine's image after provisioning.
 */
async function checkWorkerWillUseTag(inputs: WorkerImageVersionInputs): Promise<WorkerTagCheck> {
    if (!inputs.userId) return "skipped";
    const access = stackAccess();
    const api: platform.WorkerApi = { baseUrl: access.workerUrl, internalApiKey: access.internalApiKey };
    const userId = inputs.userId;
    const tag = inputs.imageTag;
    const s = await platform.getStatus(api, userId);
    if (s.status === null || !PROBE_STATES.includes(s.status)) return "no-instance";
    if ((await platform.detectCapabilities(api, userId)).debugStatus) return "pinned";
    const kept = `Nothing was destroyed: the instance of ${userId} keeps running its current image.`;
    const confirmed = inputs.workerRestartedForTag === tag;
    if (!("trackedImageTag" in s)) {
        // Early: only Fly says which tag the instance runs.
        const machine =
            s.flyAppName && s.flyMachineId
                ? await fly.getMachine({ baseUrl: access.flyApiUrl, token: access.flyApiToken }, s.flyAppName, s.flyMachineId)
                : undefined;
        if (machine?.config?.image && tagOf(machine.config.image) === tag) return "already-running";
        if (confirmed) return "restart-confirmed";
        throw new Error(
            `.dev.vars now names ${tag}, but this worker (the early generation: no publish-image-version, no trackedImageTag in its ` +
                "status) offers no read that tells which image its next provision will use: it uses the FLY_IMAGE_TAG it read from " +
                `.dev.vars when it started (wrangler dev does not reload it). ${kept} Restart the worker (\`${RESTART}\`), then run ` +
                `\`pulumi up -c kiloclaw:workerRestartedForTag=${tag}\`.`,
        );
    }
    if (s.trackedImageTag === tag) return "already-running";
    const configured = [s.envVarCount, s.secretCount, s.channelCount].some((n) => typeof n === "number" && n > 0);
    if (configured) {
        // The probe sends only the key: it would reset the env vars, secrets and channels set on the instance.
        if (confirmed) return "restart-confirmed";
        throw new Error(
            `.dev.vars now names ${tag}, but the instance of ${userId} has env vars, secrets or channels that the worker's only read of ` +
                "its next tag (a config-only re-provision) would reset, so it was not probed. " +
                `${kept} Restart the worker (\`${RESTART}\`) so it reads the new .dev.vars, then run ` +
                `\`pulumi up -c kiloclaw:workerRestartedForTag=${tag}\`.`,
        );
    }
    // Twice: the worker registers its .dev.vars version after it answers, so the second read comes after the first one's registration.
    for (let probe = 0; probe < 2; probe++) {
        const res = await platform.provision(api, { userId, kilocodeApiKey: inputs.kilocodeApiKey }, 30_000);
        if (res === "lost")
            throw new Error(`The worker did not answer a re-provision of ${userId} (reading which tag it tracks); run \`pulumi up\` again.`);
        if (res.status !== 200 && res.status !== 201)
            throw platform.workerError(`Re-provisioning ${userId} to read which tag the worker tracks`, res);
        const tracked = (await platform.getStatus(api, userId)).trackedImageTag ?? null;
        if (tracked !== tag) {
            throw new Error(
                `The worker will not provision ${tag}: it tracks ${tracked ?? "no tag"} for ${userId} after a re-provision, because it ` +
                    "registers the FLY_IMAGE_TAG it read from .dev.vars when it started (wrangler dev does not reload .dev.vars) " +
                    `over the published version. ${kept} Restart the worker (stop \`pnpm start\`, then \`${RESTART}\`), then run ` +
                    "`pulumi up` again.",
            );
        }
    }
    return "read-back";
}

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
        // Write beside the real file and rename, so the worker never reads half a file; a symlinked
        // .dev.vars stays a link and its target is what changes.
        const target = fs.realpathSync(file);
        const tmp = `${target}.kiloclaw-rollout-${process.pid}.tmp`;
        try {
            fs.writeFileSync(tmp, updated, { mode: fs.statSync(target).mode });
            fs.renameSync(tmp, target);
        } finally {
            fs.rmSync(tmp, { force: true });
        }
    }
    // After .dev.vars names the tag: a restart the check asks for makes the worker read it.
    const workerTagCheck = await checkWorkerWillUseTag(inputs);
    return { ...inputs, previousImageTag, published, workerTagCheck };
}

export const workerImageVersionProvider: pulumi.dynamic.ResourceProvider<WorkerImageVersionInputs, WorkerImageVersionOutputs> = {
    configure: configureFromStack,

    async diff(_id: string, olds: WorkerImageVersionOutputs, news: WorkerImageVersionInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACE_ON.filter((k) => (olds[k] ?? null) !== (news[k] ?? null));
        const changed = (Object.keys(news) as Array<keyof WorkerImageVersionInputs>).some(
            (k) => !CHECK_ONLY.includes(k) && JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null),
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
