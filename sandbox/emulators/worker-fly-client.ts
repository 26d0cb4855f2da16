// The slice of the Fly Machines API the worker emulator calls, over plain HTTP (global
// fetch), so it can only see what a real Fly API (or the Fly emulator) would show it.
// Errors mirror the real worker: non-2xx → FlyApiError "Fly API <op> failed (<status>): <body>",
// an unreachable API → "Network connection lost." (what workerd says).

export class FlyApiError extends Error {
    constructor(
        readonly op: string,
        readonly status: number,
        readonly body: string,
    ) {
        super(`Fly API ${op} failed (${status}): ${body}`);
        this.name = "FlyApiError";
    }
}

export class NetworkConnectionLost extends Error {
    constructor() {
        super("Network connection lost.");
        this.name = "Error";
    }
}

export interface FlyMachine {
    id: string;
    state: string;
    instance_id?: string;
    region?: string;
    config?: { image?: string; [k: string]: unknown };
}

export interface FlyVolume {
    id: string;
    name?: string;
    region: string;
}

/** Macaroon tokens (fm1/fm2) go as `FlyV1`, classic ones as `Bearer`; a token that names its scheme is kept. */
export function flyAuthorization(token: string): string {
    if (/^(Bearer|FlyV1) /.test(token)) return token;
    return /^fm[12]/.test(token) ? `FlyV1 ${token}` : `Bearer ${token}`;
}

export class WorkerFlyClient {
    private readonly base: string;

    /** `apiUrl` may be the host (`http://127.0.0.1:1234`) or already end in `/v1`. */
    constructor(
        apiUrl: string,
        private readonly token: string,
    ) {
        const trimmed = apiUrl.replace(/\/+$/, "");
        this.base = trimmed.endsWith("/v1") ? trimmed : `${trimmed}/v1`;
    }

    async getApp(app: string): Promise<unknown | null> {
        return this.call("getApp", "GET", `/apps/${app}`, undefined, true);
    }

    async createApp(app: string, orgSlug: string): Promise<void> {
        await this.call("createApp", "POST", `/apps`, { app_name: app, org_slug: orgSlug });
    }

    async allocateIp(app: string, type: "v6" | "shared_v4"): Promise<void> {
        await this.call("allocateIp", "POST", `/apps/${app}/ips`, { type });
    }

    async createVolume(app: string, body: { name: string; size_gb: number; region: string; compute?: unknown }): Promise<FlyVolume> {
        return (await this.call("createVolume", "POST", `/apps/${app}/volumes`, body)) as FlyVolume;
    }

    /** Resolves false when the volume was already gone (404 counts as done). */
    async deleteVolume(app: string, id: string): Promise<boolean> {
        return (await this.call("deleteVolume", "DELETE", `/apps/${app}/volumes/${id}`, undefined, true)) !== null;
    }

    async createMachine(app: string, body: unknown): Promise<FlyMachine> {
        return (await this.call("createMachine", "POST", `/apps/${app}/machines`, body)) as FlyMachine;
    }

    async getMachine(app: string, id: string): Promise<FlyMachine | null> {
        return (await this.call("getMachine", "GET", `/apps/${app}/machines/${id}`, undefined, true)) as FlyMachine | null;
    }

    async startMachine(app: string, id: string): Promise<void> {
        await this.call("startMachine", "POST", `/apps/${app}/machines/${id}/start`);
    }

    async stopMachine(app: string, id: string): Promise<void> {
        await this.call("stopMachine", "POST", `/apps/${app}/machines/${id}/stop`);
    }

    async waitForState(app: string, id: string, state: string, timeoutSeconds: number, instanceId?: string): Promise<void> {
        const q = new URLSearchParams({ state, timeout: String(timeoutSeconds) });
        if (instanceId) q.set("instance_id", instanceId);
        await this.call("waitForState", "GET", `/apps/${app}/machines/${id}/wait?${q}`);
    }

    /** Force-destroys; resolves false when the machine was already gone. */
    async destroyMachine(app: string, id: string): Promise<boolean> {
        return (await this.call("destroyMachine", "DELETE", `/apps/${app}/machines/${id}?force=true`, undefined, true)) !== null;
    }

    /** One request; `nullOn404` turns a 404 into `null` instead of an error. */
    private async call(op: string, method: string, path: string, body?: unknown, nullOn404 = false): Promise<unknown> {
        let res: Response;
        let text: string;
        try {
            res = await fetch(`${this.base}${path}`, {
                method,
                headers: {
                    authorization: flyAuthorization(this.token),
                    ...(body === undefined ? {} : { "content-type": "application/json" }),
                },
                body: body === undefined ? undefined : JSON.stringify(body),
            });
            text = await res.text();
        } catch {
            throw new NetworkConnectionLost();
        }
        if (res.status === 404 && nullOn404) return null;
        if (!res.ok) throw new FlyApiError(op, res.status, text);
        if (!text) return {};
        try {
            return JSON.parse(text);
        } catch {
            return {};
        }
    }
}
