// The developer's instance, managed only through the worker's platform API, on every
// generation of it: provision (and start where the worker leaves that to us), wait through
// the worker's own transitions until `running`, verify the Fly machine runs the pushed image,
// wait for the gateway; destroy through the worker and wait until it is gone. Decisions come
// from status reads and from Fly, never from error wording, and a provision, start or destroy
// whose answer was lost is never sent again blindly: the status says what happened.
import * as pulumi from "@pulumi/pulumi";
import { WorkerInstanceInputs, WorkerInstanceOutputs } from "../lib/contract";
import * as fly from "./flyMachinesClient";
import { errorText, HttpResponse, sleep } from "./http";
import * as platform from "./platformClient";
import { configureFromStack, stackAccess } from "./settings";

// The props live in the shared contract (lib/contract.ts).
export type { WorkerInstanceInputs, WorkerInstanceOutputs };

const REPLACE_ON = ["userId", "imageTag", "imageRef", "openclawVersion", "region"] as const;

/** Fly machine states on the way to `started` (a first pull shows as `replacing`). */
const FLY_STARTING_STATES = ["starting", "replacing", "restarting", "updating"];

/** Fly's 60 s wait plus the worker's 60 s health probe, and a margin: a lifecycle call may take that long. */
const DEFAULT_REQUEST_TIMEOUT_SECONDS = 150;

function worker(): platform.WorkerApi {
    const access = stackAccess();
    return { baseUrl: access.workerUrl, internalApiKey: access.internalApiKey };
}

function flyApi(): fly.FlyApi {
    const access = stackAccess();
    return { baseUrl: access.flyApiUrl, token: access.flyApiToken };
}

/** One operation's clock: the overall deadline and the time each lifecycle call may take within it. */
interface Clock {
    began: number;
    deadline: number;
    requestMs: number;
}

function clockFor(props: WorkerInstanceInputs): Clock {
    const began = Date.now();
    return {
        began,
        deadline: began + props.timeoutSeconds * 1000,
        requestMs: (props.requestTimeoutSeconds ?? DEFAULT_REQUEST_TIMEOUT_SECONDS) * 1000,
    };
}

function callTimeout(clock: Clock): number {
    return Math.max(1000, Math.min(clock.requestMs, clock.deadline - Date.now()));
}

function pause(props: WorkerInstanceInputs): Promise<void> {
    return sleep(props.pollMs ?? 1000);
}

/** Destroys the user's instance through the worker and waits until its status reads null (waiting out a `restoring` first). */
async function destroyAndWait(props: WorkerInstanceInputs, clock = clockFor(props)): Promise<void> {
    let sent = false;
    for (;;) {
        const s = await platform.getStatus(worker(), props.userId);
        if (s.status === null) return;
        if (Date.now() >= clock.deadline) {
            throw new Error(
                `The instance of ${props.userId} is still "${s.status}" ${props.timeoutSeconds}s after destroy. The worker retries failed ` +
                    "deletes every minute: check its log, then run `pulumi destroy` (or `pulumi up`) again.",
            );
        }
        // The worker refuses to destroy while it restores a snapshot, and finishes a `destroying` itself.
        const busy = s.status === "restoring" || (s.status === "destroying" && sent);
        if (!busy) {
            const res = await platform.destroyInstance(worker(), props.userId, callTimeout(clock));
            sent = true;
            // Lost answers and refusals alike: the next status read says where things stand.
            if (res !== "lost" && res.status !== 200 && res.status < 500)
                throw platform.workerError(`Destroying the instance of ${props.userId}`, res);
            if (res !== "lost" && res.status === 200) continue;
        }
        await pause(props);
    }
}

function machineFailedError(inputs: WorkerInstanceInputs, app: string, why: string): Error {
    return new Error(
        `The machine of ${inputs.userId} failed to start (${why}). \`fly logs --app ${app} --no-tail\` ` +
            "shows why (the runbook's \"Machine won't start\": missing KILOCODE_API_KEY, an image tag mismatch, an image whose own command fails); " +
            "fix it, then run `pulumi up` again.",
    );
}

/** Fly's own word on the instance's machine, when the worker has one. */
async function machineState(s: platform.InstanceStatus): Promise<string | undefined> {
    if (!s.flyAppName || !s.flyMachineId) return undefined;
    return (await fly.getMachine(flyApi(), s.flyAppName, s.flyMachineId))?.state ?? "destroyed";
}

/** One create's progress: what the worker can do, the clock, and what was already tried. (Plain data: it is serialized with the provider.) */
interface StartRun {
    inputs: WorkerInstanceInputs;
    caps: platform.WorkerCapabilities;
    clock: Clock;
    provisions: number;
    skippedCooldown: boolean;
    /** A start refused with no machine was tried once more (workers without debug-status). */
    retriedStart?: boolean;
}

async function provisionInstance(run: StartRun): Promise<void> {
    const { inputs } = run;
    const body: platform.ProvisionRequest = { userId: inputs.userId, kilocodeApiKey: inputs.kilocodeApiKey, region: inputs.region };
    // The generation with debug-status also takes a pinned tag: it then runs ours without a worker restart.
    if (run.caps.debugStatus) body.pinnedImageTag = inputs.imageTag;
    for (;;) {
        run.provisions += 1;
        const res = await platform.provision(worker(), body, callTimeout(run.clock));
        if (res === "lost" || res.status === 200 || res.status === 201) return;
        if (res.status === 409 && run.provisions === 1) {
            // The Cloud app still records an instance: remove it through the worker and try once more.
            await destroyAndWait(inputs, run.clock);
            continue;
        }
        if (res.status === 409) {
            throw new Error(
                `Provisioning ${inputs.userId} answered 409 "${errorText(res.body)}" even after destroying through the worker. ` +
                    "Destroy the instance from the Cloud UI (localhost:3000/claw), then run `pulumi up` again.",
            );
        }
        if (res.status < 500) throw platform.workerError(`Provisioning the instance of ${inputs.userId}`, res);
        // A 500 may come after the worker persisted the instance (a Fly wait that timed out): the status decides.
        const s = await platform.getStatus(worker(), inputs.userId);
        if (s.status === null) throw await startError(run, `Provisioning the instance of ${inputs.userId}`, res);
        return;
    }
}

/** Reads the status until `running`, starting the instance where the worker waits for that. */
async function untilRunning(run: StartRun): Promise<platform.InstanceStatus> {
    const { inputs } = run;
    let readAgainAtOnce = false;
    for (;;) {
        const s = await platform.getStatus(worker(), inputs.userId);
        if (s.status === "running") return s;
        if (Date.now() >= run.clock.deadline) {
            throw new Error(
                `The instance of ${inputs.userId} is "${s.status}" after ${inputs.timeoutSeconds}s, not "running". ` +
                    `\`fly machines list --app ${s.flyAppName ?? inputs.expectedFlyAppName}\` shows why: "replacing" = Fly is still pulling ` +
                    `the image (408 on first pull; warm it first, or raise kiloclaw:instanceTimeoutSeconds), then run \`pulumi up\` again.`,
            );
        }
        if (s.status === "provisioned" || s.status === "stopped") {
            const state = await machineState(s);
            if (state === "failed") throw machineFailedError(inputs, s.flyAppName ?? inputs.expectedFlyAppName, 'Fly state "failed"');
            // Fly is still pulling or starting the worker's machine: a /start now would only queue behind the worker's own.
            const underWay = state !== undefined && FLY_STARTING_STATES.includes(state);
            // Older workers do not auto-start; after a Fly timeout the worker also needs a second start.
            const started = !underWay && (await startInstance(run, s));
            if (started && !readAgainAtOnce) {
                readAgainAtOnce = true; // The worker answers /start once the machine runs: read at once (once in a row).
                continue;
            }
        }
        readAgainAtOnce = false;
        await pause(inputs);
    }
}

/** One `/start`; true when the worker said ok. A refusal is explained from the worker's and Fly's state. */
async function startInstance(run: StartRun, s: platform.InstanceStatus, skipCooldown = false): Promise<boolean> {
    const res = await platform.startInstance(worker(), run.inputs.userId, callTimeout(run.clock), skipCooldown);
    if (res === "lost") return false;
    if (res.status === 200) return true;
    if (res.status < 500) throw platform.workerError(`Starting the instance of ${run.inputs.userId}`, res);
    const debug = run.caps.debugStatus ? await platform.getDebugStatus(worker(), run.inputs.userId) : undefined;
    if (debug && inCooldown(debug)) {
        // Ours: a start of this run failed before a machine existed; skipping the cooldown is safe.
        const ours = (debug.lastStartErrorAt ?? 0) >= run.clock.began;
        if (ours && !run.skippedCooldown) {
            run.skippedCooldown = true;
            return startInstance(run, s, true);
        }
        // The start that skipped the cooldown failed as well: no cooldown holds it back, the worker's reason does.
        if (ours) throw await startError(run, `Starting the instance of ${run.inputs.userId} (skipping the cooldown)`, res, debug);
        const minutes = Math.ceil((cooldownEnd(debug) - Date.now()) / 60_000);
        throw new Error(
            `The worker refuses to start ${run.inputs.userId} for about ${minutes} more minute(s): an earlier start failed before a machine ` +
                `existed${debug.lastStartErrorMessage ? ` ("${debug.lastStartErrorMessage}")` : ""}, and the worker waits 30 minutes before ` +
                "trying to recover it. Fix that cause, then run `pulumi up` again after the wait (or destroy the instance from the Cloud UI).",
        );
    }
    // A machine Fly still works on (pulling, starting) is worth waiting for; a failed one is not.
    const state = await machineState(debug ?? (await platform.getStatus(worker(), run.inputs.userId)));
    if (state === "failed") throw machineFailedError(run.inputs, s.flyAppName ?? run.inputs.expectedFlyAppName, 'Fly state "failed"');
    if (state !== undefined && state !== "destroyed") return false;
    // A worker without debug-status has no cooldown to consult: a refusal with no machine (Fly refused a create once) gets one more start.
    if (!run.caps.debugStatus && !run.retriedStart) {
        run.retriedStart = true;
        return false;
    }
    throw await startError(run, `Starting the instance of ${run.inputs.userId}`, res, debug);
}

/** A start that failed with no machine to wait for: quote the worker's own reason where it keeps one. */
async function startError(run: StartRun, what: string, res: HttpResponse, known?: platform.DebugStatus): Promise<Error> {
    const debug = known ?? (run.caps.debugStatus ? await platform.getDebugStatus(worker(), run.inputs.userId) : undefined);
    const reason = debug?.lastStartErrorMessage;
    if (!reason) return platform.workerError(what, res);
    return new Error(
        `${what} failed (${res.status} ${errorText(res.body)}): the worker says "${reason}" (its debug-status, lastStartErrorMessage). ` +
            "Fix that, then run `pulumi up` again.",
    );
}

function cooldownEnd(debug: platform.DebugStatus): number {
    return (debug.lastMetadataRecoveryAt ?? 0) + platform.START_COOLDOWN_MS;
}

/** A start that failed before a machine existed leaves `stopped`, no machine, and a recent metadata recovery. */
function inCooldown(debug: platform.DebugStatus): boolean {
    return debug.status === "stopped" && !debug.flyMachineId && !!debug.lastMetadataRecoveryAt && cooldownEnd(debug) > Date.now();
}

/** The runbook's "Verify it's running your dev image", against Fly itself: the machine's `config.image` must be the pushed ref. */
async function verifyImage(inputs: WorkerInstanceInputs, s: platform.InstanceStatus, pinned: boolean): Promise<string> {
    const app = s.flyAppName ?? inputs.expectedFlyAppName;
    const machine = s.flyMachineId ? await fly.getMachine(flyApi(), app, s.flyMachineId) : undefined;
    const image = machine?.config?.image;
    if (!image) {
        throw new Error(
            `The worker reports ${inputs.userId} running on machine "${s.flyMachineId}", but Fly has no such machine in ${app}: ` +
                `check \`fly machines list --app ${app}\`, then run \`pulumi up\` again.`,
        );
    }
    if (image === inputs.imageRef) return image;
    if (pinned) {
        throw new Error(
            `The worker started ${inputs.userId} on ${image}, not ${inputs.imageRef}, although the provision pinned tag "${inputs.imageTag}". ` +
                "Check FLY_REGISTRY_APP in .dev.vars against kiloclaw:registryApp (the worker pulls from its own registry app), then run `pulumi up` again.",
        );
    }
    throw new Error(
        `The worker provisioned ${inputs.userId} on ${image}, not ${inputs.imageRef}: it has not picked up FLY_IMAGE_TAG from .dev.vars ` +
            "(wrangler dev reads it only at start), or it pulls from another registry app. Restart the worker (`cd cloud/kiloclaw && pnpm start`), " +
            "then run `pulumi up` again.",
    );
}

/** After `running`: the gateway must answer (the worker marks `running` even when its own probe timed out). */
async function waitForGateway(inputs: WorkerInstanceInputs, s: platform.InstanceStatus, clock: Clock): Promise<string> {
    let state: string | undefined;
    let workerSays: string | undefined;
    for (;;) {
        ({ state, workerSays } = await platform.getGatewayState(worker(), inputs.userId));
        if (state === "running") return state;
        if (Date.now() >= clock.deadline) break;
        await pause(inputs);
    }
    const app = s.flyAppName ?? inputs.expectedFlyAppName;
    throw new Error(
        `The instance of ${inputs.userId} is "running" but its gateway is not (${state ? `state "${state}"` : workerSays ? `the worker answers ${workerSays}` : "no answer"}) after ${inputs.timeoutSeconds}s ` +
            `(the runbook's "Can't access gateway"): \`fly status --app ${app}\` shows whether the machine runs, and ` +
            `\`fly ssh console --app ${app} -C "curl -s http://localhost:18789/"\` whether the gateway answers inside it. ` +
            "Fix the image (or raise kiloclaw:instanceTimeoutSeconds for a slow start), then run `pulumi up` again.",
    );
}

/**
 * A failed create is not recorded in the stack, so an instance it leaves behind (half-provisioned,
 * or running the wrong image) would be invisible to `pulumi destroy`: remove it through the worker,
 * and say so in the error.
 */
async function removeLeftInstance(inputs: WorkerInstanceInputs, failure: Error): Promise<Error> {
    let status: string | null;
    try {
        status = (await platform.getStatus(worker(), inputs.userId)).status;
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

function outputsFrom(
    inputs: WorkerInstanceInputs,
    s: platform.InstanceStatus,
    seen: Pick<WorkerInstanceOutputs, "gatewayToken" | "gatewayState" | "runningImage">,
): WorkerInstanceOutputs {
    return {
        ...inputs,
        status: s.status,
        sandboxId: s.sandboxId,
        flyAppName: s.flyAppName,
        flyMachineId: s.flyMachineId,
        flyVolumeId: s.flyVolumeId,
        flyRegion: s.flyRegion,
        trackedImageTag: s.trackedImageTag ?? null,
        runningOpenclawVersion: s.openclawVersion ?? null,
        ...seen,
    };
}

export const workerInstanceProvider: pulumi.dynamic.ResourceProvider<WorkerInstanceInputs, WorkerInstanceOutputs> = {
    configure: configureFromStack,

    async diff(_id: string, olds: WorkerInstanceOutputs, news: WorkerInstanceInputs): Promise<pulumi.dynamic.DiffResult> {
        // State written before imageRef existed has none: the tag alone decides there.
        const replaces: string[] = REPLACE_ON.filter((k) => olds[k] !== news[k] && !(k === "imageRef" && olds.imageRef === undefined));
        // Refresh found the instance on another tag, or settled off `running`: re-provision it.
        // A transient status (the worker starting, restarting or restoring it) is not a reason.
        if (olds.trackedImageTag && olds.trackedImageTag !== news.imageTag && !replaces.includes("imageTag")) replaces.push("imageTag");
        if (olds.status !== "running" && !platform.TRANSIENT_STATES.includes(olds.status ?? "") && !replaces.includes("status"))
            replaces.push("status");
        const changes =
            replaces.length > 0 ||
            (Object.keys(news) as Array<keyof WorkerInstanceInputs>).some((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
        return { changes, replaces, deleteBeforeReplace: true };
    },

    async create(inputs: WorkerInstanceInputs): Promise<pulumi.dynamic.CreateResult<WorkerInstanceOutputs>> {
        const clock = clockFor(inputs);
        try {
            // One instance per user: an existing one runs an old image and must go first.
            const existing = await platform.getStatus(worker(), inputs.userId);
            if (existing.status !== null) await destroyAndWait(inputs, clock);
            const caps = await platform.detectCapabilities(worker(), inputs.userId);
            const run: StartRun = { inputs, caps, clock, provisions: 0, skippedCooldown: false };
            await provisionInstance(run);
            const s = await untilRunning(run);
            const runningImage = await verifyImage(inputs, s, caps.debugStatus);
            const gatewayState = caps.gatewayStatus ? await waitForGateway(inputs, s, clock) : "unsupported";
            const gatewayToken = (await platform.getGatewayToken(worker(), inputs.userId)) ?? null;
            return { id: s.sandboxId ?? inputs.userId, outs: outputsFrom(inputs, s, { gatewayToken, gatewayState, runningImage }) };
        } catch (err) {
            throw await removeLeftInstance(inputs, err as Error);
        }
    },

    async read(id: string, props?: WorkerInstanceOutputs): Promise<pulumi.dynamic.ReadResult<WorkerInstanceOutputs>> {
        if (!props) return { id: "" };
        const s = await platform.getStatus(worker(), props.userId);
        // A null status means the instance is gone: an empty id drops it from the state.
        if (s.status === null) return { id: "" };
        // A transient status is the worker at work on a healthy instance: keep what we knew.
        const settled = platform.TRANSIENT_STATES.includes(s.status) ? { ...s, status: props.status as platform.InstanceState } : s;
        return { id, props: outputsFrom(props, settled, props) };
    },

    async update(_id: string, olds: WorkerInstanceOutputs, news: WorkerInstanceInputs): Promise<pulumi.dynamic.UpdateResult<WorkerInstanceOutputs>> {
        // Only the key or deadlines changed: nothing to do on the worker beyond re-reading it.
        const s = await platform.getStatus(worker(), news.userId);
        const gatewayToken = (await platform.getGatewayToken(worker(), news.userId)) ?? olds.gatewayToken;
        return { outs: outputsFrom(news, s, { gatewayToken, gatewayState: olds.gatewayState, runningImage: olds.runningImage }) };
    },

    async delete(_id: string, props: WorkerInstanceOutputs): Promise<void> {
        await destroyAndWait(props);
    },
};
