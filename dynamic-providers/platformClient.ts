// A client for the KiloClaw worker's platform API (/api/platform/*), for every generation of
// it (see the reference's "Generations"). It decides from status codes and status reads, not
// from error wording: the newest worker sanitises its error bodies to "<operation> failed".
import { errorText, HttpResponse, isLostAnswer, isNetworkError, requestJson } from "./http";

export interface WorkerApi {
    /** e.g. http://localhost:8795 */
    baseUrl: string;
    internalApiKey: string;
}

export type InstanceState = "provisioned" | "starting" | "restarting" | "restoring" | "running" | "stopped" | "destroying";

/** States the worker leaves on its own (a start, a UI restart, a snapshot restore): wait, never replace. */
export const TRANSIENT_STATES: readonly string[] = ["starting", "restarting", "restoring"];

export interface InstanceStatus {
    userId: string | null;
    sandboxId: string | null;
    status: InstanceState | null;
    flyAppName: string | null;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    /** Absent on the early worker. */
    openclawVersion?: string | null;
    imageVariant?: string | null;
    trackedImageTag?: string | null;
    [field: string]: unknown;
}

/** The newest worker's `GET debug-status`: the status plus the worker's own bookkeeping. */
export interface DebugStatus extends InstanceStatus {
    lastStartErrorMessage?: string | null;
    lastStartErrorAt?: number | null;
    lastMetadataRecoveryAt?: number | null;
}

export interface ProvisionRequest {
    userId: string;
    kilocodeApiKey?: string;
    region?: string;
    /** Newest worker: run this tag instead of its "latest" (no worker restart needed). */
    pinnedImageTag?: string;
}

export interface PublishImageVersionRequest {
    openclawVersion: string;
    variant?: string;
    imageTag: string;
    imageDigest?: string;
    setLatest?: boolean;
}

/** The routes that differ between generations, as the worker answered them. */
export interface WorkerCapabilities {
    /** `gateway/status` (current and newest). */
    gatewayStatus: boolean;
    /** `debug-status` (newest); the same generation takes `pinnedImageTag` and `skipCooldown`. */
    debugStatus: boolean;
}

/** The newest worker refuses `/start` for 30 minutes after a start that failed before a machine existed. */
export const START_COOLDOWN_MS = 30 * 60 * 1000;

/** Status reads, gateway reads and the like: quick. */
const READ_TIMEOUT_MS = 30_000;

/**
 * Every generation answers a `/api/platform/*` route it does not have from the user-session
 * catch-all: 401 "Authentication required" (never 404).
 */
export function isNoSuchRoute(res: HttpResponse): boolean {
    return res.status === 401 && errorText(res.body) === "Authentication required";
}

/** The fix for a worker that cannot be reached, as the runbook gives it. */
export function workerDownMessage(baseUrl: string, code: string): string {
    const port = /:(\d+)/.exec(baseUrl.replace(/^\w+:\/\//, ""))?.[1] ?? "8795";
    return (
        `The KiloClaw worker is not reachable at ${baseUrl} (${code}). Start it with \`cd cloud/kiloclaw && pnpm start\` ` +
        `(\`lsof -i :${port}\` shows what holds the port), check kiloclaw:workerUrl, then run \`pulumi up\` again.`
    );
}

/** An error for an unexpected worker answer, with the next step. */
export function workerError(what: string, res: HttpResponse): Error {
    const text = errorText(res.body);
    const detail = `${what} failed (${res.status} ${text})`;
    if (res.status === 403) {
        return new Error(
            `${detail}: the worker refused the internal API key. Set it to INTERNAL_API_SECRET from .dev.vars with ` +
                "`pulumi config set --secret kiloclaw:internalApiKey <value>` (or remove the setting to read .dev.vars), " +
                "and restart `pnpm start` if you changed .dev.vars.",
        );
    }
    if (res.status === 500 && text === "Server configuration error") {
        return new Error(`${detail}: the worker has no INTERNAL_API_SECRET. Add it to .dev.vars and restart \`pnpm start\`.`);
    }
    if (res.status === 503 && text === "Configuration error") {
        return new Error(
            `${detail}: the worker lacks INTERNAL_API_SECRET, GATEWAY_TOKEN_SECRET, FLY_API_TOKEN or HYPERDRIVE. ` +
                "Complete .dev.vars (see .dev.vars.example) and restart `pnpm start`.",
        );
    }
    if (isNoSuchRoute(res)) {
        return new Error(
            `${detail}: this worker has no such route (an older generation). Update cloud/kiloclaw, restart \`pnpm start\`, then run \`pulumi up\` again.`,
        );
    }
    if (res.status >= 500 && typeof res.body === "string") {
        return new Error(
            `${what} failed (${res.status} from ${res.url?.split("?")[0] ?? "the worker"}: ${text}): that is not the worker's own answer. ` +
                "Check kiloclaw:workerUrl points at the worker itself (the address `pnpm start` prints), not a proxy in front of it, then run `pulumi up` again.",
        );
    }
    if (res.status >= 500) {
        return new Error(`${detail}: the worker failed; its log (the \`pnpm start\` terminal) shows why. Fix that, then run \`pulumi up\` again.`);
    }
    return new Error(`${detail}.`);
}

function send(api: WorkerApi, method: "GET" | "POST", route: string, body: unknown, timeoutMs: number): Promise<HttpResponse> {
    const url = `${api.baseUrl.replace(/\/+$/, "")}/api/platform/${route}`;
    return requestJson({ method, url, body, headers: { "x-internal-api-key": api.internalApiKey }, timeoutMs });
}

function unreachable(api: WorkerApi, err: unknown): unknown {
    return isNetworkError(err) ? new Error(workerDownMessage(api.baseUrl, err.code)) : err;
}

async function call(api: WorkerApi, method: "GET" | "POST", route: string, body?: unknown): Promise<HttpResponse> {
    try {
        return await send(api, method, route, body, READ_TIMEOUT_MS);
    } catch (err) {
        throw unreachable(api, err);
    }
}

/**
 * The answer to a provision, start or destroy, or "lost" when it never came (timeout, dropped
 * connection): the worker may have acted, so the caller reads the status instead of sending it again.
 */
export type LifecycleAnswer = HttpResponse | "lost";

async function lifecycle(api: WorkerApi, route: string, body: unknown, timeoutMs: number): Promise<LifecycleAnswer> {
    try {
        return await send(api, "POST", route, body, timeoutMs);
    } catch (err) {
        if (isLostAnswer(err)) return "lost";
        throw unreachable(api, err);
    }
}

export function provision(api: WorkerApi, req: ProvisionRequest, timeoutMs: number): Promise<LifecycleAnswer> {
    return lifecycle(api, "provision", req, timeoutMs);
}

export function startInstance(api: WorkerApi, userId: string, timeoutMs: number, skipCooldown = false): Promise<LifecycleAnswer> {
    return lifecycle(api, "start", skipCooldown ? { userId, skipCooldown } : { userId }, timeoutMs);
}

export function destroyInstance(api: WorkerApi, userId: string, timeoutMs: number): Promise<LifecycleAnswer> {
    return lifecycle(api, "destroy", { userId }, timeoutMs);
}

export async function getStatus(api: WorkerApi, userId: string): Promise<InstanceStatus> {
    const res = await call(api, "GET", `status?userId=${encodeURIComponent(userId)}`);
    if (res.status !== 200) throw workerError(`Reading the status of ${userId}`, res);
    return res.body as InstanceStatus;
}

/** Which of the routes that differ between generations this worker has. */
export async function detectCapabilities(api: WorkerApi, userId: string): Promise<WorkerCapabilities> {
    const q = `userId=${encodeURIComponent(userId)}`;
    const [gateway, debug] = await Promise.all([call(api, "GET", `gateway/status?${q}`), call(api, "GET", `debug-status?${q}`)]);
    return { gatewayStatus: !isNoSuchRoute(gateway), debugStatus: !isNoSuchRoute(debug) };
}

/** The newest worker's debug-status, or undefined on a worker without it. */
export async function getDebugStatus(api: WorkerApi, userId: string): Promise<DebugStatus | undefined> {
    const res = await call(api, "GET", `debug-status?userId=${encodeURIComponent(userId)}`);
    if (res.status === 200) return res.body as DebugStatus;
    if (isNoSuchRoute(res)) return undefined;
    throw workerError(`Reading the debug status of ${userId}`, res);
}

/**
 * The gateway process state on the machine ("running" when it serves); while the worker cannot say,
 * no state, and on a 5xx the worker's own text (e.g. "GatewayControllerError: …") for the message.
 */
export async function getGatewayState(api: WorkerApi, userId: string): Promise<{ state?: string; workerSays?: string }> {
    const res = await call(api, "GET", `gateway/status?userId=${encodeURIComponent(userId)}`);
    const state = (res.body as { state?: unknown } | undefined)?.state;
    if (res.status === 200 && typeof state === "string") return { state };
    if (res.status === 403 || isNoSuchRoute(res)) throw workerError(`Reading the gateway status of ${userId}`, res);
    if (res.status >= 500) return { workerSays: `${res.status} ${errorText(res.body)}` };
    return {};
}

export async function getGatewayToken(api: WorkerApi, userId: string): Promise<string | undefined> {
    const res = await call(api, "GET", `gateway-token?userId=${encodeURIComponent(userId)}`);
    if (res.status === 200) return String((res.body as { gatewayToken?: unknown } | undefined)?.gatewayToken ?? "");
    if (res.status === 404 || res.status === 503) return undefined;
    throw workerError(`Reading the gateway token of ${userId}`, res);
}

/** "published", or "unsupported" for an older worker without the route (the 401 catch-all). */
export async function publishImageVersion(api: WorkerApi, req: PublishImageVersionRequest): Promise<"published" | "unsupported"> {
    const res = await call(api, "POST", "publish-image-version", { variant: "default", setLatest: true, ...req });
    if (res.status === 200 || res.status === 201) return "published";
    if (isNoSuchRoute(res)) return "unsupported";
    throw workerError(`Publishing openclaw ${req.openclawVersion} → ${req.imageTag}`, res);
}
