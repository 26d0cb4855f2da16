// A client for the KiloClaw worker's platform API (/api/platform/*).
import { errorText, HttpResponse, isNetworkError, requestJson } from "./http";

export interface WorkerApi {
    /** e.g. http://localhost:8795 */
    baseUrl: string;
    internalApiKey: string;
}

export type InstanceState = "provisioned" | "running" | "stopped" | "destroying";

export interface InstanceStatus {
    userId: string | null;
    sandboxId: string | null;
    status: InstanceState | null;
    flyAppName: string | null;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    openclawVersion: string | null;
    imageVariant: string | null;
    trackedImageTag: string | null;
    [field: string]: unknown;
}

export interface ProvisionRequest {
    userId: string;
    kilocodeApiKey?: string;
    region?: string;
}

export interface PublishImageVersionRequest {
    openclawVersion: string;
    variant?: string;
    imageTag: string;
    imageDigest?: string;
    setLatest?: boolean;
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
    if (/Network connection lost/.test(text)) {
        return new Error(`${detail}: the worker could not reach Fly. Check FLY_API_TOKEN in .dev.vars and your network, then run \`pulumi up\` again.`);
    }
    if (res.status >= 500) {
        // Anything else the worker could not do (often a Fly call it made): its log has the cause.
        return new Error(`${detail}: the worker failed; its log (the \`pnpm start\` terminal) shows why. Fix that, then run \`pulumi up\` again.`);
    }
    return new Error(`${detail}.`);
}

async function call(api: WorkerApi, method: "GET" | "POST", route: string, body?: unknown): Promise<HttpResponse> {
    const url = `${api.baseUrl.replace(/\/+$/, "")}/api/platform/${route}`;
    try {
        return await requestJson({ method, url, body, headers: { "x-internal-api-key": api.internalApiKey }, timeoutMs: 120_000 });
    } catch (err) {
        if (isNetworkError(err)) throw new Error(workerDownMessage(api.baseUrl, err.code));
        throw err;
    }
}

/** 201 on success; other answers are returned for the caller to judge (409, 500 during a slow first pull). */
export async function provision(api: WorkerApi, req: ProvisionRequest): Promise<HttpResponse> {
    return call(api, "POST", "provision", req);
}

export async function startInstance(api: WorkerApi, userId: string): Promise<HttpResponse> {
    return call(api, "POST", "start", { userId });
}

/** "destroying" once accepted; "absent" when the worker has no instance (it answers 500 "Instance not provisioned"). */
export async function destroyInstance(api: WorkerApi, userId: string): Promise<"destroying" | "absent"> {
    const res = await call(api, "POST", "destroy", { userId });
    if (res.status === 200) return "destroying";
    if (isNotProvisioned(res)) return "absent";
    throw workerError(`Destroying the instance of ${userId}`, res);
}

export function isNotProvisioned(res: HttpResponse): boolean {
    return (res.status === 500 || res.status === 404) && /Instance not provisioned/.test(errorText(res.body));
}

export async function getStatus(api: WorkerApi, userId: string): Promise<InstanceStatus> {
    const res = await call(api, "GET", `status?userId=${encodeURIComponent(userId)}`);
    if (res.status !== 200) throw workerError(`Reading the status of ${userId}`, res);
    return res.body as InstanceStatus;
}

export async function getGatewayToken(api: WorkerApi, userId: string): Promise<string | undefined> {
    const res = await call(api, "GET", `gateway-token?userId=${encodeURIComponent(userId)}`);
    if (res.status === 200) return String(res.body?.gatewayToken ?? "");
    if (res.status === 404 || res.status === 503) return undefined;
    throw workerError(`Reading the gateway token of ${userId}`, res);
}

/** "published", or "unsupported" for an older worker without the route (404). */
export async function publishImageVersion(api: WorkerApi, req: PublishImageVersionRequest): Promise<"published" | "unsupported"> {
    const res = await call(api, "POST", "publish-image-version", { variant: "default", setLatest: true, ...req });
    if (res.status === 200 || res.status === 201) return "published";
    if (res.status === 404) return "unsupported";
    throw workerError(`Publishing openclaw ${req.openclawVersion} → ${req.imageTag}`, res);
}
