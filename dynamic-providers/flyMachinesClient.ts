// A small client for the Fly Machines API calls a warm-up needs.
import { flyAuthorizationHeader } from "../lib/flyAuth";
import { errorText, HttpResponse, isNetworkError, requestJson } from "./http";

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
    name?: string;
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

async function call(api: FlyApi, method: "GET" | "POST" | "DELETE", path: string, body?: unknown, timeoutMs?: number): Promise<HttpResponse> {
    const url = `${api.baseUrl.replace(/\/+$/, "")}/v1${path}`;
    try {
        return await requestJson({ method, url, body, timeoutMs, headers: { authorization: flyAuthorizationHeader(api.token) } });
    } catch (err) {
        if (isNetworkError(err)) {
            throw new Error(`Cannot reach the Fly Machines API at ${api.baseUrl} (${err.code}). Check kiloclaw:flyApiUrl and your network, then run \`pulumi up\` again.`);
        }
        throw err;
    }
}

/** An error for an unexpected Fly answer, with the next step where there is one. */
export function flyError(what: string, res: HttpResponse): Error {
    const requestId = res.headers["fly-request-id"] ? ` [fly-request-id ${res.headers["fly-request-id"]}]` : "";
    const detail = `${what} failed (${res.status}): ${errorText(res.body)}${requestId}.`;
    if (res.status === 401 || res.status === 403) {
        return new Error(
            `${detail} Fly refused the API token: set \`pulumi config set --secret kiloclaw:flyApiToken <token>\` ` +
                "(or FLY_API_TOKEN in .dev.vars); `fly auth token` prints a fresh one.",
        );
    }
    if (res.status === 404) return new Error(`${detail} Check that the Fly app exists and kiloclaw:registryApp names it.`);
    if (res.status === 429 || res.status === 502 || res.status === 503) {
        return new Error(`${detail} Fly kept answering ${res.status} after retries: wait a minute and run \`pulumi up\` again.`);
    }
    return new Error(detail);
}

export async function createMachine(api: FlyApi, app: string, req: MachineCreateRequest): Promise<FlyMachine> {
    const res = await call(api, "POST", `/apps/${encodeURIComponent(app)}/machines`, req);
    if (res.status !== 200 && res.status !== 201) throw flyError(`Creating a machine in ${app}`, res);
    return res.body as FlyMachine;
}

export async function getMachine(api: FlyApi, app: string, id: string): Promise<FlyMachine | undefined> {
    const res = await call(api, "GET", `/apps/${encodeURIComponent(app)}/machines/${encodeURIComponent(id)}`);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw flyError(`Reading machine ${id}`, res);
    return res.body as FlyMachine;
}

/** Machines of an app whose metadata has every given key=value. */
export async function listMachines(api: FlyApi, app: string, metadata: Record<string, string> = {}): Promise<FlyMachine[]> {
    const query = Object.entries(metadata)
        .map(([k, v]) => `metadata.${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join("&");
    const res = await call(api, "GET", `/apps/${encodeURIComponent(app)}/machines${query ? `?${query}` : ""}`);
    if (res.status === 404) return [];
    if (res.status !== 200) throw flyError(`Listing machines of ${app}`, res);
    const machines = (res.body as FlyMachine[]) ?? [];
    // Filter here too: not every Fly version honours the metadata filter.
    return machines.filter((m) => Object.entries(metadata).every(([k, v]) => m.config?.metadata?.[k] === v));
}

export interface WaitResult {
    reached: boolean;
    /** The state Fly reported on timeout (e.g. "replacing" while it still pulls the image). */
    currentState?: string;
}

/** One call to Fly's wait endpoint: reached, or a 408 timeout (a 404 while waiting for "destroyed" is reached). */
export async function waitForState(api: FlyApi, app: string, id: string, state: string, timeoutSeconds: number): Promise<WaitResult> {
    const timeout = Math.max(1, Math.min(FLY_MAX_WAIT_SECONDS, Math.round(timeoutSeconds)));
    const res = await call(
        api,
        "GET",
        `/apps/${encodeURIComponent(app)}/machines/${encodeURIComponent(id)}/wait?state=${state}&timeout=${timeout}`,
        undefined,
        (timeout + 15) * 1000,
    );
    if (res.status === 200) return { reached: true };
    if (res.status === 404 && state === "destroyed") return { reached: true };
    if (res.status === 408) {
        const current = /currently\s+(\w+)/.exec(errorText(res.body));
        return { reached: false, currentState: current?.[1] };
    }
    throw flyError(`Waiting for machine ${id} to be ${state}`, res);
}

/** Destroys a machine, killing it if it runs; a machine that is already gone counts as destroyed. */
export async function destroyMachine(api: FlyApi, app: string, id: string): Promise<void> {
    const res = await call(api, "DELETE", `/apps/${encodeURIComponent(app)}/machines/${encodeURIComponent(id)}?force=true`);
    if (res.status !== 200 && res.status !== 202 && res.status !== 404) throw flyError(`Destroying machine ${id}`, res);
}
