// The developer's instance, managed only through the worker's platform API:
// provision (and start on older workers), wait for `running`, check the worker
// really uses our tag; destroy through the worker and wait until it is gone.
import * as pulumi from "@pulumi/pulumi";
import { WorkerInstanceInputs, WorkerInstanceOutputs } from "../lib/contract";
import { errorText, sleep } from "./http";
import * as platform from "./platformClient";

// The props live in the shared contract (lib/contract.ts).
export type { WorkerInstanceInputs, WorkerInstanceOutputs };

const REPLACE_ON = ["workerUrl", "userId", "imageTag", "openclawVersion", "region"] as const;

function api(props: { workerUrl: string; internalApiKey: string }): platform.WorkerApi {
    return { baseUrl: props.workerUrl, internalApiKey: props.internalApiKey };
}

/** Destroys the user's instance through the worker and waits until its status reads null. */
async function destroyAndWait(props: WorkerInstanceInputs): Promise<void> {
    const deadline = Date.now() + props.timeoutSeconds * 1000;
    const outcome = await platform.destroyInstance(api(props), props.userId);
    if (outcome === "absent") return;
    for (;;) {
        const s = await platform.getStatus(api(props), props.userId);
        if (s.status === null) return;
        if (Date.now() >= deadline) {
            throw new Error(
                `The instance of ${props.userId} is still "${s.status}" ${props.timeoutSeconds}s after destroy. The worker retries failed ` +
                    "deletes every minute: check its log, then run `pulumi destroy` (or `pulumi up`) again.",
            );
        }
        await sleep(props.pollMs ?? 1000);
    }
}

/** A Fly timeout during the worker's own 60 s wait: the pull goes on, so wait instead of re-provisioning. */
function isFirstPullTimeout(res: { status: number; body: unknown }): boolean {
    return res.status === 500 && /408|deadline_exceeded|waitForState/i.test(errorText(res.body)) && !machineFailed(res);
}

/** The worker's wait timed out on a machine Fly reports `failed`: waiting longer cannot help. */
function machineFailed(res: { status: number; body: unknown }): boolean {
    return res.status === 500 && /currently\s+failed/i.test(errorText(res.body));
}

function machineFailedError(inputs: WorkerInstanceInputs, res: { body: unknown }): Error {
    return new Error(
        `The machine of ${inputs.userId} failed to start (${errorText(res.body)}). \`fly logs --app ${inputs.expectedFlyAppName} --no-tail\` ` +
            "shows why (the runbook's \"Machine won't start\": missing KILOCODE_API_KEY, an image tag mismatch, an old start-openclaw.sh); " +
            "fix it, then run `pulumi up` again.",
    );
}

async function provisionAndWait(inputs: WorkerInstanceInputs): Promise<platform.InstanceStatus> {
    const deadline = Date.now() + inputs.timeoutSeconds * 1000;
    // One instance per user: an existing one runs an old image and must go first.
    const existing = await platform.getStatus(api(inputs), inputs.userId);
    if (existing.status !== null) await destroyAndWait(inputs);

    let res = await platform.provision(api(inputs), { userId: inputs.userId, kilocodeApiKey: inputs.kilocodeApiKey, region: inputs.region });
    if (res.status === 409) {
        // The Cloud app still records an instance: remove it through the worker and try once more.
        await destroyAndWait(inputs);
        res = await platform.provision(api(inputs), { userId: inputs.userId, kilocodeApiKey: inputs.kilocodeApiKey, region: inputs.region });
        if (res.status === 409) {
            throw new Error(
                `Provisioning ${inputs.userId} answered 409 "${errorText(res.body)}" even after destroying through the worker. ` +
                    "Destroy the instance from the Cloud UI (localhost:3000/claw), then run `pulumi up` again.",
            );
        }
    }
    if (machineFailed(res)) throw machineFailedError(inputs, res);
    if (res.status !== 201 && res.status !== 200 && !isFirstPullTimeout(res)) {
        throw platform.workerError(`Provisioning the instance of ${inputs.userId}`, res);
    }

    let startedLastRound = false;
    for (;;) {
        const s = await platform.getStatus(api(inputs), inputs.userId);
        if (s.status === "running") return s;
        if (Date.now() >= deadline) {
            throw new Error(
                `The instance of ${inputs.userId} is "${s.status}" after ${inputs.timeoutSeconds}s, not "running". ` +
                    `\`fly machines list --app ${s.flyAppName ?? inputs.expectedFlyAppName}\` shows why: "replacing" = Fly is still pulling ` +
                    `the image (408 on first pull; warm it first, or raise kiloclaw:instanceTimeoutSeconds), then run \`pulumi up\` again.`,
            );
        }
        if (s.status === "provisioned" || s.status === "stopped") {
            // Older workers do not auto-start; after a 408 the worker also needs a second start.
            const started = await platform.startInstance(api(inputs), inputs.userId);
            if (machineFailed(started)) throw machineFailedError(inputs, started);
            if (started.status !== 200 && !isFirstPullTimeout(started)) throw platform.workerError(`Starting the instance of ${inputs.userId}`, started);
            // The worker answers /start once the machine is started: read the status at once (once in a row).
            if (started.status === 200 && !startedLastRound) {
                startedLastRound = true;
                continue;
            }
        }
        startedLastRound = false;
        await sleep(inputs.pollMs ?? 1000);
    }
}

/**
 * A failed create is not recorded in the stack, so an instance it leaves behind (half-provisioned,
 * or running the wrong image) would be invisible to `pulumi destroy`: remove it through the worker,
 * and say so in the error.
 */
async function removeLeftInstance(inputs: WorkerInstanceInputs, failure: Error): Promise<Error> {
    let status: string | null;
    try {
        status = (await platform.getStatus(api(inputs), inputs.userId)).status;
    } catch {
        return failure; // The worker is down or refuses the key: the failure already says how to fix that.
    }
    if (status === null) return failure;
    try {
        await destroyAndWait(inputs);
    } catch (err) {
        return new Error(`${failure.message} Removing the instance it left failed too: ${(err as Error).message}`);
    }
    return new Error(`${failure.message} The instance it left was destroyed through the worker.`);
}

function outputsFrom(inputs: WorkerInstanceInputs, s: platform.InstanceStatus, gatewayToken: string | null): WorkerInstanceOutputs {
    return {
        ...inputs,
        status: s.status,
        sandboxId: s.sandboxId,
        flyAppName: s.flyAppName,
        flyMachineId: s.flyMachineId,
        flyVolumeId: s.flyVolumeId,
        flyRegion: s.flyRegion,
        trackedImageTag: s.trackedImageTag,
        runningOpenclawVersion: s.openclawVersion,
        gatewayToken,
    };
}

export const workerInstanceProvider: pulumi.dynamic.ResourceProvider = {
    async diff(_id: string, olds: WorkerInstanceOutputs, news: WorkerInstanceInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces: string[] = REPLACE_ON.filter((k) => olds[k] !== news[k]);
        // Refresh found the instance on another tag (or not running): re-provision it.
        if (olds.trackedImageTag && olds.trackedImageTag !== news.imageTag && !replaces.includes("imageTag")) replaces.push("imageTag");
        if (olds.status !== "running" && !replaces.includes("status")) replaces.push("status");
        const changes =
            replaces.length > 0 ||
            (Object.keys(news) as Array<keyof WorkerInstanceInputs>).some((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
        return { changes, replaces, deleteBeforeReplace: true };
    },

    async create(inputs: WorkerInstanceInputs): Promise<pulumi.dynamic.CreateResult> {
        try {
            const s = await provisionAndWait(inputs);
            if (s.trackedImageTag !== inputs.imageTag) {
                throw new Error(
                    `The worker provisioned ${inputs.userId} with image tag "${s.trackedImageTag}", not "${inputs.imageTag}": it has not picked up ` +
                        "FLY_IMAGE_TAG from .dev.vars (wrangler dev reads it only at start). Restart the worker (`cd cloud/kiloclaw && pnpm start`), " +
                        "then run `pulumi up` again.",
                );
            }
            const gatewayToken = (await platform.getGatewayToken(api(inputs), inputs.userId)) ?? null;
            return { id: s.sandboxId ?? inputs.userId, outs: outputsFrom(inputs, s, gatewayToken) };
        } catch (err) {
            throw await removeLeftInstance(inputs, err as Error);
        }
    },

    async read(id: string, props: WorkerInstanceOutputs): Promise<pulumi.dynamic.ReadResult> {
        const s = await platform.getStatus(api(props), props.userId);
        // A null status means the instance is gone: an empty id drops it from the state.
        if (s.status === null) return { id: "", props: {} };
        return { id, props: outputsFrom(props, s, props.gatewayToken) };
    },

    async update(_id: string, olds: WorkerInstanceOutputs, news: WorkerInstanceInputs): Promise<pulumi.dynamic.UpdateResult> {
        // Keys or deadlines changed: nothing to do on the worker beyond re-reading it.
        const s = await platform.getStatus(api(news), news.userId);
        const gatewayToken = (await platform.getGatewayToken(api(news), news.userId)) ?? olds.gatewayToken;
        return { outs: outputsFrom(news, s, gatewayToken) };
    },

    async delete(_id: string, props: WorkerInstanceOutputs): Promise<void> {
        await destroyAndWait(props);
    },
};
