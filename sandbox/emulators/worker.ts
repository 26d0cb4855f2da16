// A stand-in for the KiloClaw worker's platform API (`pnpm start` → wrangler dev on 8795),
// faithful to /work/shared/reference/platform-api.md including what was observed running the
// real worker: .dev.vars read only at start, re-provision is config-only, destroy of nothing is
// a 500, and the per-request version registration that undoes a disagreeing publish.
// It keeps one instance per user (the Durable Object) and drives the Fly Machines API over
// HTTP, so it works against the Fly emulator exactly as the real worker works against Fly.
import * as crypto from "node:crypto";
import { touchWranglerState } from "../fixtures/checkout";
import { readDevVars } from "./dev-vars-file";
import { EmulatorServer, FaultRule, IncomingJson, JsonReply, RequestLogEntry } from "./server";
import { FlyApiError, WorkerFlyClient } from "./worker-fly-client";
import {
    MachineSize,
    ProvisionBody,
    Validated,
    validateProvisionBody,
    validatePublishBody,
    validateUserIdBody,
} from "./worker-validation";

export interface WorkerEmulatorOptions {
    /** The worker's `.dev.vars`; read at start and on `restart()` only, like wrangler dev. */
    devVarsPath?: string;
    /** The worker's directory: every request rewrites its `.wrangler/state/`, as wrangler dev's local persistence does. */
    kiloclawDir?: string;
    /** Values layered over the file's (an `undefined` value hides a file key). */
    vars?: Record<string, string | undefined>;
    /** Fly Machines API base, e.g. the Fly emulator's `url` (with or without `/v1`). */
    flyApiUrl: string;
    /** Registry host in machine images (default `registry.fly.io`). */
    registryServer?: string;
    /** Newer workers start the machine during provision (default); false = older worker, `provisioned` until /start. */
    autoStart?: boolean;
    /** false → `publish-image-version` 404s like an older worker (default true). */
    publishRoute?: boolean;
    /**
     * Re-read `.dev.vars` on every request (default false). The real worker does NOT do this;
     * the local sandbox turns it on to stand in for a developer who restarts `pnpm start`
     * after every `.dev.vars` edit. Tests of the "needs a restart" trap must leave it off.
     */
    reloadDevVarsOnRequest?: boolean;
    /** Scales the worker's own "seconds" (the 1-minute destroy retry alarm). The Fly wait it asks for is always timeout=60. */
    msPerSecond?: number;
    /** How long the `destroying` phase lasts before the Fly deletes run (default 50 ms). */
    destroyDelayMs?: number;
    port?: number;
}

export type InstanceStatus = "provisioned" | "running" | "stopped" | "destroying";

/** The Durable Object's state for one user (what `instance(userId)` returns a copy of). */
export interface WorkerInstanceRecord {
    userId: string;
    sandboxId: string;
    status: InstanceStatus;
    provisionedAt: number;
    lastStartedAt: number | null;
    lastStoppedAt: number | null;
    kilocodeApiKey: string | null;
    kilocodeApiKeyExpiresAt: string | null;
    kilocodeDefaultModel: string | null;
    envVars: Record<string, string> | null;
    encryptedSecrets: Record<string, unknown> | null;
    channels: Record<string, unknown> | null;
    machineSize: MachineSize | null;
    flyAppName: string;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    openclawVersion: string | null;
    imageVariant: string | null;
    trackedImageTag: string | null;
    /** Image the current machine was created with (inspection only; not in the status route). */
    machineImage: string | null;
    pendingDestroyMachineId: string | null;
    pendingDestroyVolumeId: string | null;
    /** Last error a background destroy attempt hit (inspection only). */
    lastDestroyError: string | null;
}

/** The `GET /api/platform/status` body. */
export interface WorkerStatus {
    userId: string | null;
    sandboxId: string | null;
    status: InstanceStatus | null;
    provisionedAt: number | null;
    lastStartedAt: number | null;
    lastStoppedAt: number | null;
    envVarCount: number | null;
    secretCount: number | null;
    channelCount: number | null;
    flyAppName: string | null;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    machineSize: MachineSize | null;
    openclawVersion: string | null;
    imageVariant: string | null;
    trackedImageTag: string | null;
}

/** A KV value under `image-version:<version|latest>:<variant>`. */
export interface ImageVersionEntry {
    openclawVersion: string;
    variant: string;
    imageTag: string;
    imageDigest: string | null;
    publishedAt: string;
}

const LATEST_KEY = "image-version:latest:default";
const STARTUP_WAIT_SECONDS = 60;
const VOLUME_SIZE_GB = 10;
const GATEWAY_PORT = 18789;
const DEFAULT_GUEST = { cpus: 2, memory_mb: 3072, cpu_kind: "shared" };
/** Region aliases the real worker expands; enough for "us,eu" style lists. */
const REGION_ALIASES: Record<string, string> = { us: "iad", eu: "ams" };

export function sandboxIdFor(userId: string): string {
    return Buffer.from(userId, "utf8").toString("base64url");
}

export function flyAppNameFor(userId: string, workerEnv: string | undefined): string {
    const hash = crypto.createHash("sha256").update(userId).digest("hex").slice(0, 20);
    return `${workerEnv === "development" ? "dev" : "acct"}-${hash}`;
}

export function gatewayTokenFor(sandboxId: string, secret: string): string {
    return crypto.createHmac("sha256", secret).update(sandboxId).digest("hex");
}

export class WorkerEmulator {
    private readonly server: EmulatorServer;
    private vars: Record<string, string | undefined> = {};
    private readonly instances = new Map<string, WorkerInstanceRecord>();
    private readonly kv = new Map<string, ImageVersionEntry>();
    /** Apps the worker already ensured (the real worker remembers them in its App DO). */
    private readonly ensuredApps = new Set<string>();
    /** Per-user queue: a Durable Object handles one lifecycle call at a time. */
    private readonly userQueues = new Map<string, Promise<unknown>>();
    private readonly timers = new Set<NodeJS.Timeout>();
    private closed = false;

    private constructor(private readonly opts: WorkerEmulatorOptions) {
        this.server = new EmulatorServer((req) => this.handle(req));
        this.loadVars();
    }

    static async start(opts: WorkerEmulatorOptions): Promise<WorkerEmulator> {
        const emulator = new WorkerEmulator({ ...opts, vars: opts.vars ? { ...opts.vars } : undefined });
        await emulator.server.listen(opts.port ?? 0);
        return emulator;
    }

    get url(): string {
        return this.server.url;
    }

    get requests(): RequestLogEntry[] {
        return this.server.requests;
    }

    inject(rule: FaultRule): void {
        this.server.inject(rule);
    }

    clearFaults(): void {
        this.server.clearFaults();
    }

    async close(): Promise<void> {
        this.closed = true;
        for (const t of this.timers) clearTimeout(t);
        this.timers.clear();
        await this.server.close();
    }

    /**
     * Like stopping and re-running `pnpm start`: re-reads `.dev.vars` (and, when given,
     * replaces the `vars` overrides). Instances and KV survive, as wrangler's local
     * persistence keeps them.
     */
    async restart(vars?: Record<string, string | undefined>): Promise<void> {
        if (vars) this.opts.vars = { ...vars };
        this.loadVars();
    }

    /** Wipes a user's instance behind the program's back, deleting its machine and volume on Fly. */
    async destroyOutOfBand(userId: string): Promise<void> {
        const rec = this.instances.get(userId);
        if (!rec) return;
        this.instances.delete(userId);
        const fly = this.flyClient();
        const machineId = rec.flyMachineId ?? rec.pendingDestroyMachineId;
        const volumeId = rec.flyVolumeId ?? rec.pendingDestroyVolumeId;
        if (machineId) await fly.destroyMachine(rec.flyAppName, machineId);
        if (volumeId) await fly.deleteVolume(rec.flyAppName, volumeId);
    }

    /** A copy of the user's Durable Object state, or undefined when there is none. */
    instance(userId: string): WorkerInstanceRecord | undefined {
        const rec = this.instances.get(userId);
        return rec ? structuredClone(rec) : undefined;
    }

    /** The KV entry `image-version:latest:default`, or null. */
    kvLatest(): ImageVersionEntry | null {
        return this.kvGet(LATEST_KEY);
    }

    kvGet(key: string): ImageVersionEntry | null {
        const entry = this.kv.get(key);
        return entry ? { ...entry } : null;
    }

    // ---- request handling -------------------------------------------------

    private async handle(req: IncomingJson): Promise<JsonReply> {
        if (this.opts.kiloclawDir) touchWranglerState(this.opts.kiloclawDir, `${req.method} ${req.path}`);
        if (this.opts.reloadDevVarsOnRequest) this.loadVars();
        // The real worker registers its .dev.vars version on every request, before routing.
        this.registerVersionIfNeeded();

        if (!req.path.startsWith("/api/platform/")) return { status: 404, body: { error: "Not Found" } };

        const v = this.vars;
        if (v.DEV_MODE !== "true") {
            // HYPERDRIVE is a binding wrangler always provides locally: treated as present.
            const missing = ["INTERNAL_API_SECRET", "GATEWAY_TOKEN_SECRET", "FLY_API_TOKEN"].filter((k) => !v[k]);
            if (missing.length > 0) return { status: 503, body: { error: "Configuration error", missing } };
        }
        if (!v.INTERNAL_API_SECRET) return { status: 500, body: { error: "Server configuration error" } };
        const key = req.headers["x-internal-api-key"];
        if (!safeEqual(Array.isArray(key) ? key[0] : key, v.INTERNAL_API_SECRET)) {
            return { status: 403, body: { error: "Forbidden" } };
        }

        const route = `${req.method} ${req.path.slice("/api/platform".length)}`;
        switch (route) {
            case "POST /provision":
                return this.withBody(req, validateProvisionBody, async (b) => ({
                    status: 201,
                    body: await this.queued(b.userId, () => this.provision(b)),
                }));
            case "POST /start":
                return this.withBody(req, validateUserIdBody, async ({ userId }) => {
                    await this.queued(userId, () => this.start(userId));
                    return { status: 200, body: { ok: true } };
                });
            case "POST /stop":
                return this.withBody(req, validateUserIdBody, async ({ userId }) => {
                    await this.queued(userId, () => this.stop(userId));
                    return { status: 200, body: { ok: true } };
                });
            case "POST /destroy":
                return this.withBody(req, validateUserIdBody, async ({ userId }) => {
                    await this.queued(userId, async () => this.destroy(userId));
                    return { status: 200, body: { ok: true } };
                });
            case "GET /status": {
                const userId = req.query.userId;
                if (!userId) return { status: 400, body: { error: "userId query parameter is required" } };
                return { status: 200, body: this.status(userId) };
            }
            case "GET /gateway-token":
                return this.gatewayToken(req.query.userId);
            case "POST /publish-image-version":
                if (this.opts.publishRoute === false) return { status: 404, body: { error: "Not Found" } };
                return this.withBody(req, validatePublishBody, async (b) => {
                    const entry: ImageVersionEntry = {
                        openclawVersion: b.openclawVersion,
                        variant: b.variant,
                        imageTag: b.imageTag,
                        imageDigest: b.imageDigest,
                        publishedAt: new Date().toISOString(),
                    };
                    this.kv.set(`image-version:${b.openclawVersion}:${b.variant}`, entry);
                    if (b.setLatest) this.kv.set(`image-version:latest:${b.variant}`, entry);
                    return { status: 201, body: { ok: true, ...entry, setLatest: b.setLatest } };
                });
            default:
                return { status: 404, body: { error: "Not Found" } };
        }
    }

    /** JSON parse → validation → action; anything the action throws becomes a 500 `{error}`. */
    private async withBody<T>(req: IncomingJson, validate: (b: unknown) => Validated<T>, action: (b: T) => Promise<JsonReply>): Promise<JsonReply> {
        let body: unknown;
        try {
            body = JSON.parse(req.rawBody);
        } catch {
            return { status: 400, body: { error: "Malformed JSON body" } };
        }
        const result = validate(body);
        if (!result.ok) return { status: 400, body: { error: "Invalid request", details: result.details } };
        try {
            return await action(result.value);
        } catch (err) {
            return { status: 500, body: { error: errorText(err) } };
        }
    }

    private queued<T>(userId: string, fn: () => Promise<T>): Promise<T> {
        const prev = this.userQueues.get(userId) ?? Promise.resolve();
        const next = prev.then(fn, fn);
        this.userQueues.set(userId, next.catch(() => undefined));
        return next;
    }

    // ---- vars and the version registry -------------------------------------

    private loadVars(): void {
        const fromFile = this.opts.devVarsPath ? readDevVars(this.opts.devVarsPath) : {};
        this.vars = { ...fromFile, ...(this.opts.vars ?? {}) };
    }

    private registerVersionIfNeeded(): void {
        const version = this.vars.OPENCLAW_VERSION;
        const tag = this.vars.FLY_IMAGE_TAG;
        if (!version || !tag) return;
        const latest = this.kv.get(LATEST_KEY);
        if (latest && latest.openclawVersion === version && latest.imageTag === tag) return;
        const entry: ImageVersionEntry = {
            openclawVersion: version,
            variant: "default",
            imageTag: tag,
            imageDigest: null,
            publishedAt: new Date().toISOString(),
        };
        this.kv.set(`image-version:${version}:default`, entry);
        this.kv.set(LATEST_KEY, { ...entry });
    }

    private flyClient(): WorkerFlyClient {
        return new WorkerFlyClient(this.opts.flyApiUrl, this.vars.FLY_API_TOKEN ?? "");
    }

    // ---- the Durable Object's lifecycle -----------------------------------

    private async provision(body: ProvisionBody): Promise<{ sandboxId: string }> {
        const existing = this.instances.get(body.userId);
        if (existing?.status === "destroying") throw new Error("Cannot provision: instance is being destroyed");
        const sandboxId = sandboxIdFor(body.userId);
        const latest = this.kv.get(LATEST_KEY);

        if (existing) {
            // Config-only update: no Fly call, the machine keeps its image; the tracked
            // version is refreshed from whatever "latest" says now.
            applyConfig(existing, body);
            if (latest) applyVersion(existing, latest);
            return { sandboxId };
        }

        const fly = this.flyClient();
        const appName = flyAppNameFor(body.userId, this.vars.WORKER_ENV);
        await this.ensureApp(fly, appName);
        const volume = await this.createVolume(fly, appName, sandboxId, body);

        const rec: WorkerInstanceRecord = {
            userId: body.userId,
            sandboxId,
            status: "provisioned",
            provisionedAt: Date.now(),
            lastStartedAt: null,
            lastStoppedAt: null,
            kilocodeApiKey: null,
            kilocodeApiKeyExpiresAt: null,
            kilocodeDefaultModel: null,
            envVars: null,
            encryptedSecrets: null,
            channels: null,
            machineSize: null,
            flyAppName: appName,
            flyMachineId: null,
            flyVolumeId: volume.id,
            flyRegion: volume.region,
            openclawVersion: null,
            imageVariant: null,
            trackedImageTag: null,
            machineImage: null,
            pendingDestroyMachineId: null,
            pendingDestroyVolumeId: null,
            lastDestroyError: null,
        };
        applyConfig(rec, body);
        if (latest) applyVersion(rec, latest);
        // Persisted before the machine exists, so a failed start leaves a `provisioned` instance.
        this.instances.set(body.userId, rec);

        if (this.opts.autoStart !== false) await this.startMachine(rec);
        return { sandboxId };
    }

    private async start(userId: string): Promise<void> {
        const rec = this.instances.get(userId);
        if (!rec) throw new Error("Instance not provisioned");
        if (rec.status === "destroying") throw new Error("Cannot start: instance is being destroyed");
        await this.startMachine(rec);
    }

    private async stop(userId: string): Promise<void> {
        const rec = this.instances.get(userId);
        if (!rec) throw new Error("Instance not provisioned");
        if (rec.status !== "running") return; // no-op when stopped, provisioned or destroying
        if (rec.flyMachineId) {
            const fly = this.flyClient();
            const machine = await fly.getMachine(rec.flyAppName, rec.flyMachineId);
            if (machine && !["stopped", "failed", "created", "suspended", "destroyed"].includes(machine.state)) {
                if (machine.state !== "stopping") await fly.stopMachine(rec.flyAppName, rec.flyMachineId);
                await fly.waitForState(rec.flyAppName, rec.flyMachineId, "stopped", STARTUP_WAIT_SECONDS, machine.instance_id);
            }
        }
        rec.status = "stopped";
        rec.lastStoppedAt = Date.now();
    }

    /** Phase one of destroy: mark `destroying` and answer; the Fly deletes follow. */
    private destroy(userId: string): void {
        const rec = this.instances.get(userId);
        if (!rec) throw new Error("Instance not provisioned");
        if (rec.status === "destroying") return;
        rec.status = "destroying";
        rec.pendingDestroyMachineId = rec.flyMachineId;
        rec.pendingDestroyVolumeId = rec.flyVolumeId;
        this.later(this.opts.destroyDelayMs ?? 50, () => this.finishDestroy(rec));
    }

    /** Phase two: delete machine then volume (404 = done); wipe the state once both are gone, else retry in a minute. */
    private async finishDestroy(rec: WorkerInstanceRecord): Promise<void> {
        if (this.closed || this.instances.get(rec.userId) !== rec) return;
        const fly = this.flyClient();
        try {
            if (rec.pendingDestroyMachineId) {
                await fly.destroyMachine(rec.flyAppName, rec.pendingDestroyMachineId);
                rec.pendingDestroyMachineId = null;
                rec.flyMachineId = null;
            }
            if (rec.pendingDestroyVolumeId) {
                await fly.deleteVolume(rec.flyAppName, rec.pendingDestroyVolumeId);
                rec.pendingDestroyVolumeId = null;
                rec.flyVolumeId = null;
            }
        } catch (err) {
            rec.lastDestroyError = errorText(err);
            this.later(60 * (this.opts.msPerSecond ?? 1000), () => this.finishDestroy(rec));
            return;
        }
        if (this.instances.get(rec.userId) === rec) this.instances.delete(rec.userId);
    }

    /** Starts the existing machine, or creates one when there is none (or Fly lost it), then waits for `started`. */
    private async startMachine(rec: WorkerInstanceRecord): Promise<void> {
        const fly = this.flyClient();
        const existing = rec.flyMachineId ? await fly.getMachine(rec.flyAppName, rec.flyMachineId) : null;
        if (!existing || existing.state === "destroyed" || existing.state === "destroying") {
            const image = this.imageFor(rec);
            const machine = await fly.createMachine(rec.flyAppName, this.machineRequest(rec, image));
            // Recorded before the wait: a 408 leaves a provisioned instance that knows its machine.
            rec.flyMachineId = machine.id;
            rec.machineImage = image;
        } else if (["stopped", "created", "suspended"].includes(existing.state)) {
            await fly.startMachine(rec.flyAppName, existing.id);
        }
        await fly.waitForState(rec.flyAppName, rec.flyMachineId as string, "started", STARTUP_WAIT_SECONDS);
        if (this.instances.get(rec.userId) !== rec || rec.status === "destroying") return;
        rec.status = "running";
        rec.lastStartedAt = Date.now();
    }

    private async ensureApp(fly: WorkerFlyClient, appName: string): Promise<void> {
        if (this.ensuredApps.has(appName)) return;
        if ((await fly.getApp(appName)) === null) {
            await fly.createApp(appName, this.vars.FLY_ORG_SLUG ?? "personal");
            await fly.allocateIp(appName, "v6");
            await fly.allocateIp(appName, "shared_v4");
        }
        this.ensuredApps.add(appName);
    }

    /** Tries the requested regions in turn, moving on only on capacity errors. */
    private async createVolume(fly: WorkerFlyClient, appName: string, sandboxId: string, body: ProvisionBody) {
        const regions = (body.region || this.vars.FLY_REGION || "iad")
            .split(",")
            .map((r) => r.trim())
            .filter(Boolean)
            .map((r) => REGION_ALIASES[r] ?? r);
        let lastError: unknown = new Error("No region to create the volume in");
        for (const region of regions) {
            try {
                const volume = await fly.createVolume(appName, {
                    name: `kiloclaw_${sandboxId}`,
                    size_gb: VOLUME_SIZE_GB,
                    region,
                    compute: guestFor(body.machineSize ?? null),
                });
                return { id: volume.id, region: volume.region ?? region };
            } catch (err) {
                if (!isCapacityError(err)) throw err;
                lastError = err;
            }
        }
        throw lastError;
    }

    private imageFor(rec: WorkerInstanceRecord): string {
        const app = this.vars.FLY_REGISTRY_APP || this.vars.FLY_APP_NAME || "kiloclaw-machines";
        const tag = rec.trackedImageTag ?? (this.vars.FLY_IMAGE_TAG || "latest");
        return `${this.opts.registryServer ?? "registry.fly.io"}/${app}:${tag}`;
    }

    private machineRequest(rec: WorkerInstanceRecord, image: string): unknown {
        const secret = this.vars.GATEWAY_TOKEN_SECRET;
        if (!secret) throw new Error("GATEWAY_TOKEN_SECRET is not configured");
        const env: Record<string, string> = { ...(rec.envVars ?? {}) };
        const optional: Record<string, string | null | undefined> = {
            KILOCODE_API_KEY: rec.kilocodeApiKey,
            KILOCODE_API_KEY_EXPIRES_AT: rec.kilocodeApiKeyExpiresAt,
            KILOCODE_DEFAULT_MODEL: rec.kilocodeDefaultModel,
            KILOCODE_API_BASE_URL: this.vars.KILOCODE_API_BASE_URL,
            OPENCLAW_ALLOWED_ORIGINS: this.vars.OPENCLAW_ALLOWED_ORIGINS,
        };
        for (const [k, v] of Object.entries(optional)) if (v) env[k] = v;
        env.OPENCLAW_GATEWAY_TOKEN = gatewayTokenFor(rec.sandboxId, secret);
        env.AUTO_APPROVE_DEVICES = "true";

        const metadata: Record<string, string> = {
            kiloclaw_user_id: rec.userId,
            kiloclaw_sandbox_id: rec.sandboxId,
        };
        if (rec.openclawVersion) metadata.kiloclaw_openclaw_version = rec.openclawVersion;

        return {
            name: rec.sandboxId,
            region: rec.flyRegion ?? undefined,
            config: {
                image,
                env,
                guest: guestFor(rec.machineSize),
                services: [
                    {
                        protocol: "tcp",
                        internal_port: GATEWAY_PORT,
                        ports: [
                            { port: 443, handlers: ["tls", "http"] },
                            { port: 80, handlers: ["http"] },
                        ],
                    },
                ],
                mounts: rec.flyVolumeId ? [{ volume: rec.flyVolumeId, path: "/root" }] : [],
                metadata,
                auto_destroy: false,
                restart: { policy: "on-failure" },
            },
        };
    }

    // ---- read-only routes -------------------------------------------------

    private status(userId: string): WorkerStatus {
        const rec = this.instances.get(userId);
        if (!rec) {
            return {
                userId: null, sandboxId: null, status: null, provisionedAt: null, lastStartedAt: null,
                lastStoppedAt: null, envVarCount: null, secretCount: null, channelCount: null,
                flyAppName: null, flyMachineId: null, flyVolumeId: null, flyRegion: null,
                machineSize: null, openclawVersion: null, imageVariant: null, trackedImageTag: null,
            };
        }
        return {
            userId: rec.userId,
            sandboxId: rec.sandboxId,
            status: rec.status,
            provisionedAt: rec.provisionedAt,
            lastStartedAt: rec.lastStartedAt,
            lastStoppedAt: rec.lastStoppedAt,
            envVarCount: Object.keys(rec.envVars ?? {}).length,
            secretCount: Object.keys(rec.encryptedSecrets ?? {}).length,
            channelCount: Object.values(rec.channels ?? {}).filter((c) => c != null).length,
            flyAppName: rec.flyAppName,
            flyMachineId: rec.flyMachineId,
            flyVolumeId: rec.flyVolumeId,
            flyRegion: rec.flyRegion,
            machineSize: rec.machineSize,
            openclawVersion: rec.openclawVersion,
            imageVariant: rec.imageVariant,
            trackedImageTag: rec.trackedImageTag,
        };
    }

    private gatewayToken(userId: string | undefined): JsonReply {
        if (!userId) return { status: 400, body: { error: "userId query parameter is required" } };
        const secret = this.vars.GATEWAY_TOKEN_SECRET;
        if (!secret) return { status: 503, body: { error: "GATEWAY_TOKEN_SECRET is not configured" } };
        const rec = this.instances.get(userId);
        if (!rec) return { status: 404, body: { error: "Instance not provisioned" } };
        return { status: 200, body: { gatewayToken: gatewayTokenFor(rec.sandboxId, secret) } };
    }

    /** A timer that close() cancels (stands in for the Durable Object's alarm). */
    private later(ms: number, fn: () => Promise<void>): void {
        const t = setTimeout(() => {
            this.timers.delete(t);
            fn().catch(() => undefined);
        }, ms);
        this.timers.add(t);
    }
}

function applyConfig(rec: WorkerInstanceRecord, body: ProvisionBody): void {
    rec.kilocodeApiKey = body.kilocodeApiKey ?? null;
    rec.kilocodeApiKeyExpiresAt = body.kilocodeApiKeyExpiresAt ?? null;
    rec.kilocodeDefaultModel = body.kilocodeDefaultModel ?? null;
    rec.envVars = body.envVars ?? null;
    rec.encryptedSecrets = body.encryptedSecrets ?? null;
    rec.channels = body.channels ?? null;
    rec.machineSize = body.machineSize ?? rec.machineSize;
}

function applyVersion(rec: WorkerInstanceRecord, latest: ImageVersionEntry): void {
    rec.openclawVersion = latest.openclawVersion;
    rec.imageVariant = latest.variant;
    rec.trackedImageTag = latest.imageTag;
}

function guestFor(size: MachineSize | null): { cpus: number; memory_mb: number; cpu_kind: string } {
    return size ? { cpus: size.cpus, memory_mb: size.memory_mb, cpu_kind: size.cpu_kind ?? "shared" } : { ...DEFAULT_GUEST };
}

function isCapacityError(err: unknown): boolean {
    return err instanceof FlyApiError && (err.status === 422 || err.status === 409 || /capacity/i.test(err.body));
}

/** What the real worker's 500 body says: DO errors keep their class name as a prefix across RPC. */
function errorText(err: unknown): string {
    if (err instanceof FlyApiError) return `FlyApiError: ${err.message}`;
    return err instanceof Error ? err.message : String(err);
}

/** Constant-time comparison (hashing first so lengths don't leak either). */
function safeEqual(given: string | undefined, expected: string): boolean {
    if (given === undefined) return false;
    const a = crypto.createHash("sha256").update(given).digest();
    const b = crypto.createHash("sha256").update(expected).digest();
    return crypto.timingSafeEqual(a, b);
}
