// A small client for the Fly Machines API calls a warm-up (and the image check of an instance) needs.
// Waiting follows Fly's "Waiting well": at most one wait call per second per machine, whatever Fly
// answers, and the state comes from `GET .../machines/{id}`, never from the wording of a 408.
import { flyAuthorizationHeader } from "../lib/flyAuth";
import { errorText, HttpRequest, HttpResponse, isLostAnswer, isNetworkError, requestJson, sleep } from "./http";

export interface FlyApi {
    /** e.g. https://api.machines.dev (the client adds /v1). */
    baseUrl: string;
    token: string;
}

export interface FlyMachine {
    id: string;
    name?: string;
    state: string;
    region?: string;
    config?: { image?: string; env?: Record<string, string>; metadata?: Record<string, string> };
}

export interface MachineCreateRequest {
    /** Required: a create whose answer was lost is found again by its name instead of being re-sent. */
    name: string;
    region?: string;
    config: {
        image: string;
        env?: Record<string, string>;
        guest?: { cpu_kind: string; cpus: number; memory_mb: number };
        auto_destroy?: boolean;
        restart?: { policy: "no" | "on-failure" | "always" };
        metadata?: Record<string, string>;
    };
}

/** Fly's longest allowed wait: it rejects larger timeouts. */
export const FLY_MAX_WAIT_SECONDS = 60;
/** Fly allows about one request per second per action per machine: wait calls start at least this far apart. */
export const WAIT_CALL_INTERVAL_MS = 1000;

async function call(api: FlyApi, req: Omit<HttpRequest, "url" | "headers"> & { path: string }): Promise<HttpResponse> {
    const url = `${api.baseUrl.replace(/\/+$/, "")}/v1${req.path}`;
    try {
        return await requestJson({ ...req, url, headers: { authorization: flyAuthorizationHeader(api.token) } });
    } catch (err) {
        // A lost answer to a request that must not be re-sent goes back as is: the caller reads the state.
        if (isNetworkError(err) && !(err.answerLost && req.idempotent === false)) {
            throw new Error(
                `Cannot reach the Fly Machines API at ${api.baseUrl} (${err.code}). Check kiloclaw:flyApiUrl and your network, ` +
                    "then run `pulumi up` again.",
            );
        }
        throw err;
    }
}

function machinePath(app: string, id?: string): string {
    return `/apps/${encodeURIComponent(app)}/machines${id === undefined ? "" : `/${encodeURIComponent(id)}`}`;
}

/** An error for an unexpected Fly answer, with the next step where there is one. */
export function flyError(what: string, res: HttpResponse, app?: string): Error {
    const requestId = res.headers["fly-request-id"] ? ` [fly-request-id ${res.headers["fly-request-id"]}]` : "";
    const detail = `${what} failed (${res.status}): ${errorText(res.body)}${requestId}.`;
    if (res.status === 401 || res.status === 403) {
        return new Error(
            `${detail} Fly refused the API token. Make a scoped one with \`fly tokens deploy --app ${app ?? "<app>"}\` (or \`fly tokens org <org>\`) ` +
                "and set it: `pulumi config set --secret kiloclaw:flyApiToken <token>` (or FLY_API_TOKEN in .dev.vars).",
        );
    }
    if (res.status === 404) return new Error(`${detail} Check that the Fly app exists and kiloclaw:registryApp names it.`);
    if (res.status === 429 || res.status === 502 || res.status === 503) {
        return new Error(`${detail} Fly kept answering ${res.status} after retries: wait a minute and run \`pulumi up\` again.`);
    }
    return new Error(detail);
}

/**
 * Creates a machine. A POST whose answer was lost (Fly may have acted) is not re-sent blindly: the
 * machine is looked up by its name, and the POST goes again only when the lookup shows Fly made none.
 */
export async function createMachine(api: FlyApi, app: string, req: MachineCreateRequest): Promise<FlyMachine> {
    for (let attempt = 1; ; attempt++) {
        let res: HttpResponse;
        try {
            res = await call(api, { method: "POST", path: machinePath(app), body: req, idempotent: false });
        } catch (err) {
            if (!isLostAnswer(err)) throw err;
            const made = (await listMachines(api, app)).find((m) => m.name === req.name);
            if (made) return made;
            if (attempt < 2) continue;
            throw new Error(
                `Creating machine ${req.name} in ${app}: the answer was lost twice (${err.code}) and no machine of that name exists. ` +
                    "Nothing was left behind: run `pulumi up` again.",
            );
        }
        if (res.status !== 200 && res.status !== 201) throw flyError(`Creating a machine in ${app}`, res, app);
        return res.body as FlyMachine;
    }
}

/** The machine, or undefined once it is gone (Fly answers 404 after a destroy). */
export async function getMachine(api: FlyApi, app: string, id: string): Promise<FlyMachine | undefined> {
    const res = await call(api, { method: "GET", path: machinePath(app, id) });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw flyError(`Reading machine ${id}`, res, app);
    return res.body as FlyMachine;
}

/** Machines of an app whose metadata has every given key=value. */
export async function listMachines(api: FlyApi, app: string, metadata: Record<string, string> = {}): Promise<FlyMachine[]> {
    const query = Object.entries(metadata)
        .map(([k, v]) => `metadata.${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join("&");
    const res = await call(api, { method: "GET", path: `${machinePath(app)}${query ? `?${query}` : ""}` });
    if (res.status === 404) return [];
    if (res.status !== 200) throw flyError(`Listing machines of ${app}`, res, app);
    const machines = (res.body as FlyMachine[]) ?? [];
    // Filter here too: not every Fly version honours the metadata filter.
    return machines.filter((m) => Object.entries(metadata).every(([k, v]) => m.config?.metadata?.[k] === v));
}

/** One call to Fly's wait endpoint: 200 reached, 408 not yet, 404 gone (done when waiting for "destroyed"). */
async function waitCall(api: FlyApi, app: string, id: string, state: string, timeoutSeconds: number): Promise<"reached" | "timeout" | "gone"> {
    const timeout = Math.max(1, Math.min(FLY_MAX_WAIT_SECONDS, Math.round(timeoutSeconds)));
    const res = await call(api, {
        method: "GET",
        path: `${machinePath(app, id)}/wait?state=${state}&timeout=${timeout}`,
        // Room for Fly's own wait: the request is a long poll.
        timeoutMs: (timeout + 15) * 1000,
    });
    if (res.status === 200) return "reached";
    if (res.status === 408) return "timeout";
    if (res.status === 404) return "gone";
    throw flyError(`Waiting for machine ${id} to be ${state}`, res, app);
}

export interface WaitForStartedOptions {
    /** Epoch ms after which the wait gives up. */
    deadline: number;
    /** Timeout of each wait call, at most 60 s. */
    waitSeconds: number;
    /** The image, for the messages. */
    image: string;
}

export interface WaitOutcome {
    reached: boolean;
    /** How many wait calls Fly answered 408. */
    timeouts: number;
    /** The state `GET .../machines/{id}` last reported (e.g. "replacing" while Fly still pulls the image). */
    lastState: string;
}

/** One entry of a machine's `events` (newest first), as Fly keeps them. */
export interface MachineEvent {
    type?: string;
    status?: string;
    source?: string;
    timestamp?: number;
    request?: { exit_event?: { exit_code?: number } };
}

/** The events Fly kept for a machine, a destroyed one too (`include_deleted`); [] when Fly shows none. */
export async function machineEvents(api: FlyApi, app: string, id: string): Promise<MachineEvent[]> {
    const res = await call(api, { method: "GET", path: `${machinePath(app)}?include_deleted=true` });
    if (res.status !== 200 || !Array.isArray(res.body)) return [];
    const machine = (res.body as Array<FlyMachine & { events?: MachineEvent[] }>).find((m) => m.id === id);
    return machine?.events ?? [];
}

/**
 * The machine was destroyed during the wait. The image is blamed only when Fly's events show its
 * process exited (auto_destroy then removes it); otherwise someone else destroyed it.
 */
async function destroyedError(api: FlyApi, app: string, id: string, image: string): Promise<Error> {
    const events = await machineEvents(api, app, id).catch(() => [] as MachineEvent[]);
    const exit = events.find((e) => e.type === "exit");
    if (exit) return autoDestroyedError(app, id, image, exit.request?.exit_event?.exit_code);
    const destroy = events.find((e) => e.type === "destroy");
    const by = destroy?.source ? `a destroy by "${destroy.source}" and no exit of its process` : "no exit of its process";
    return new Error(
        `The warm machine ${id} in ${app} was destroyed while waiting for "started", but not by its image: Fly's events show ${by}. ` +
            "Someone or something else destroyed it (another `pulumi up` of this stack, `fly machine destroy`, a cleanup script). " +
            `\`fly machines list --app ${app}\` shows what runs there; then run \`pulumi up\` again.`,
    );
}

/** The machine's process exited and auto_destroy removed it: more waiting cannot help. */
function autoDestroyedError(app: string, id: string, image: string, exitCode?: number): Error {
    const code = exitCode === undefined ? "" : ` (exit code ${exitCode})`;
    return new Error(
        `The warm machine ${id} in ${app} was destroyed while waiting for "started": the image's process exited${code}, and Fly destroys a ` +
            `machine with auto_destroy (restart "no") when it does. See why: \`fly logs --app ${app} --no-tail\`; reproduce locally with ` +
            `\`docker run --rm -e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token ${image}\`, which runs the image's own ` +
            `command (\`docker image inspect -f '{{.Config.Entrypoint}} {{.Config.Cmd}}' ${image}\` shows it). Fix the image, then run \`pulumi up\` again.`,
    );
}

function failedError(app: string, id: string, image: string): Error {
    return new Error(
        `The warm machine ${id} in ${app} failed to start (Fly state "failed"): the image ${image} does not run. ` +
            `\`fly logs --app ${app} --no-tail\` shows why (the runbook's "Machine won't start"); fix the image, then run \`pulumi up\` again.`,
    );
}

/**
 * Waits until the machine is `started` or the deadline passes. Wait calls start at least
 * WAIT_CALL_INTERVAL_MS apart, so a Fly that answers 408 at once meets about one call a second.
 * Throws when the machine is destroyed (or 404) or `failed`: it will never start.
 */
export async function waitForStarted(api: FlyApi, app: string, id: string, opts: WaitForStartedOptions): Promise<WaitOutcome> {
    let timeouts = 0;
    let lastState = "created";
    let previousCallAt = -Infinity;
    for (;;) {
        const pause = previousCallAt + WAIT_CALL_INTERVAL_MS - Date.now();
        if (pause > 0) await sleep(pause);
        const remaining = Math.ceil((opts.deadline - Date.now()) / 1000);
        if (remaining <= 0) return { reached: false, timeouts, lastState };
        previousCallAt = Date.now();
        const answer = await waitCall(api, app, id, "started", Math.min(opts.waitSeconds, remaining));
        if (answer === "reached") return { reached: true, timeouts, lastState: "started" };
        if (answer === "gone") throw await destroyedError(api, app, id, opts.image);
        timeouts++;
        const machine = await getMachine(api, app, id);
        lastState = machine?.state ?? "destroyed";
        if (lastState === "destroyed" || lastState === "destroying") throw await destroyedError(api, app, id, opts.image);
        if (lastState === "failed") throw failedError(app, id, opts.image);
    }
}

/** One wait for `destroyed` (after a destroy call); false if the machine still exists when it ends. */
export async function waitForDestroyed(api: FlyApi, app: string, id: string, timeoutSeconds: number): Promise<boolean> {
    const answer = await waitCall(api, app, id, "destroyed", timeoutSeconds);
    if (answer !== "timeout") return true;
    const machine = await getMachine(api, app, id);
    return !machine || machine.state === "destroyed";
}

/** Destroys a machine, killing it if it runs; a machine that is already gone counts as destroyed. */
export async function destroyMachine(api: FlyApi, app: string, id: string): Promise<void> {
    const res = await call(api, { method: "DELETE", path: `${machinePath(app, id)}?force=true` });
    if (res.status !== 200 && res.status !== 202 && res.status !== 404) throw flyError(`Destroying machine ${id}`, res, app);
}
