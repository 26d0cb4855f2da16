// A stand-in for the KiloClaw worker's platform API (`pnpm start` → wrangler dev on 8795), in
// each generation the project must work with (`profile`: early, current, newest; see
// worker-profiles.ts), faithful to shared/reference/platform-api.md including what was
// observed running the real worker: .dev.vars read only at start, re-provision is config-only,
// destroy of nothing is a 500, unknown routes answer the session catch-all's 401, and the
// per-request version registration that undoes a disagreeing publish.
// It keeps one instance per user (the Durable Object) and drives the Fly Machines API over
// HTTP, so it works against the Fly emulator exactly as the real worker works against Fly.
// Its own waits (Fly's 60 s wait, the 60 s health probe, alarms, cooldowns) run in emulated
// seconds (`msPerSecond`).
import * as crypto from "node:crypto";
import { touchWranglerState } from "../fixtures/checkout";
import { readDevVars } from "./dev-vars-file";
import { Emulator, IncomingJson, JsonReply, sleep } from "./server";
import { FlyApiError, FlyMachine, WorkerFlyClient } from "./worker-fly-client";
import { NO_SUCH_ROUTE, WorkerProfile, WorkerProfileName, workerProfile } from "./worker-profiles";
import {
    MachineSize,
    ProvisionBody,
    StartBody,
    Validated,
    validateProvisionBody,
    validatePublishBody,
    validateUserIdBody,
} from "./worker-validation";

export interface WorkerEmulatorOptions {
    /** Which generation of the worker to play (default "current"). */
    profile?: WorkerProfileName;
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
    /**
     * Re-read `.dev.vars` on every request (default false). The real worker does NOT do this;
     * the local sandbox turns it on to stand in for a developer who restarts `pnpm start`
     * after every `.dev.vars` edit. Tests of the "needs a restart" trap must leave it off.
     */
    reloadDevVarsOnRequest?: boolean;
    /** Real milliseconds per emulated second of the worker's own waits (default 1000). The Fly wait it asks for is always timeout=60. */
    msPerSecond?: number;
    /** Extra time the Fly deletes of a destroy take, in ms (default 0), to widen the `destroying` window. */
    destroyDelayMs?: number;
    /**
     * The gateway of every machine: "healthy" answers the health probe, "crashed" never does (its controller reports
     * the process crashed), "unreachable" has no controller answering either (default "healthy").
     */
    gateway?: GatewayHealth;
    port?: number;
}

export type GatewayHealth = "healthy" | "crashed" | "unreachable";

export type InstanceStatus = "provisioned" | "starting" | "restarting" | "restoring" | "running" | "stopped" | "destroying";

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
    /** Last error a destroy attempt hit (inspection only). */
    lastDestroyError: string | null;
    /** Newest worker: why the last start failed (debug-status only). */
    lastStartErrorMessage: string | null;
    lastStartErrorAt: number | null;
    /** Newest worker: when a start last tried to recover a missing machine (the 30-minute cooldown counts from here). */
    lastMetadataRecoveryAt: number | null;
    lastLiveCheckAt: number | null;
    /** Newest worker: when its Durable Object alarm fires next (epoch ms; debug-status only). */
    alarmScheduledAt: number | null;
    /** A `/start` is running (newest: a second one answers ok at once). */
    starting: boolean;
}

/** The `GET /api/platform/status` body (the early worker lacks the version fields). */
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
    machineSize?: MachineSize | null;
    openclawVersion?: string | null;
    imageVariant?: string | null;
    trackedImageTag?: string | null;
}

/** A KV value under `image-version:<version|latest>:<variant>`. */
export interface ImageVersionEntry {
    openclawVersion: string;
    variant: string;
    imageTag: string;
    imageDigest: string | null;
    publishedAt: string;
}

/** An error the worker reports in its own words on every generation (not sanitised). */
class WorkerError extends Error {}

const NOT_PROVISIONED = "Instance not provisioned";
const LATEST_KEY = "image-version:latest:default";
const FLY_WAIT_SECONDS = 60;
const HEALTH_PROBE_SECONDS = 60;
const LIVE_CHECK_EVERY_SECONDS = 30;
const RECONCILE_EVERY_SECONDS = 30;
const GIVE_UP_STARTING_SECONDS = 300;
const START_COOLDOWN_SECONDS = 30 * 60;
/** The newest worker's alarm: this many seconds by status after each scheduling, plus up to 60 s of jitter. */
const ALARM_SECONDS: Record<InstanceStatus, number> = {
    running: 5 * 60,
    starting: 60,
    restarting: 60,
    restoring: 60,
    destroying: 60,
    provisioned: 30 * 60,
    stopped: 30 * 60,
};
const ALARM_JITTER_SECONDS = 60;
const VOLUME_SIZE_GB = 10;
const GATEWAY_PORT = 18789;
const DEFAULT_GUEST = { cpus: 2, memory_mb: 3072, cpu_kind: "shared" };
/** Region aliases the early worker expands; the current one passes names through. */
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

export class WorkerEmulator extends Emulator {
    readonly profile: WorkerProfile;
    private vars: Record<string, string | undefined> = {};
    private readonly instances = new Map<string, WorkerInstanceRecord>();
    /** `kiloclaw_instances` in Postgres: written at provision, never marked destroyed by the worker's own destroy. */
    private readonly postgresRows = new Map<string, { sandboxId: string; flyAppName: string }>();
    private readonly kv = new Map<string, ImageVersionEntry>();
    /** Apps the worker already ensured (the real worker remembers them in its App DO). */
    private readonly ensuredApps = new Set<string>();
    /** Per-user queue: a Durable Object handles one lifecycle call at a time. */
    private readonly userQueues = new Map<string, Promise<unknown>>();
    private gatewayHealth: GatewayHealth;

    private constructor(private readonly opts: WorkerEmulatorOptions) {
        super();
        this.profile = workerProfile(opts.profile);
        this.gatewayHealth = opts.gateway ?? "healthy";
        this.loadVars();
    }

    static async start(opts: WorkerEmulatorOptions): Promise<WorkerEmulator> {
        const emulator = new WorkerEmulator({ ...opts, vars: opts.vars ? { ...opts.vars } : undefined });
        await emulator.server.listen(opts.port ?? 0);
        return emulator;
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

    /**
     * A developer who restarts `pnpm start` after every `.dev.vars` edit (true), or one who does not (false):
     * the worker then keeps the tag it read last and re-registers it on every request, as the real one does.
     */
    setReloadDevVarsOnRequest(on: boolean): void {
        this.opts.reloadDevVarsOnRequest = on;
    }

    /** Makes every machine's gateway answer the health probe, or never again. */
    setGateway(health: GatewayHealth): void {
        this.gatewayHealth = health;
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

    /** Puts the instance in a status behind the program's back (a UI restart, a snapshot restore); `until` ends it after that many emulated seconds. */
    setStatus(userId: string, status: InstanceStatus, untilSeconds?: number): void {
        const rec = this.instances.get(userId);
        if (!rec) throw new Error(`no instance for ${userId}`);
        const previous = rec.status;
        rec.status = status;
        if (untilSeconds !== undefined) {
            this.later(untilSeconds * this.msPerSecond, () => {
                if (this.instances.get(userId) === rec && rec.status === status) rec.status = previous;
            });
        }
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

    private get msPerSecond(): number {
        return this.opts.msPerSecond ?? 1000;
    }

    private emulatedSleep(seconds: number): Promise<void> {
        return sleep(seconds * this.msPerSecond);
    }

    // ---- request handling -------------------------------------------------

    protected async handle(req: IncomingJson): Promise<JsonReply> {
        if (this.opts.kiloclawDir) touchWranglerState(this.opts.kiloclawDir, `${req.method} ${req.path}`);
        if (this.opts.reloadDevVarsOnRequest) this.loadVars();
        // The real worker registers its .dev.vars version on every request, before routing.
        this.registerVersionIfNeeded();

        if (!req.path.startsWith("/api/platform/")) return { status: 404, body: { error: "Not Found" } };

        const v = this.vars;
        if (v.DEV_MODE !== "true") {
            // HYPERDRIVE is a binding wrangler always provides locally: treated as present.
            const missing = ["INTERNAL_API_SECRET", "GATEWAY_TOKEN_SECRET", "FLY_API_TOKEN"].filter((k) => !v[k]);
            // The real body names nothing: `{"error":"Configuration error"}` (every generation).
            if (missing.length > 0) return { status: 503, body: { error: "Configuration error" } };
        }
        if (!v.INTERNAL_API_SECRET) return { status: 500, body: { error: "Server configuration error" } };
        const key = req.headers["x-internal-api-key"];
        if (!safeEqual(Array.isArray(key) ? key[0] : key, v.INTERNAL_API_SECRET)) {
            return { status: 403, body: { error: "Forbidden" } };
        }

        const p = this.profile;
        const route = `${req.method} ${req.path.slice("/api/platform".length)}`;
        switch (route) {
            case "POST /provision":
                // zod strips keys a schema does not have: only the generation with pinnedImageTag checks it.
                return this.withBody(
                    req,
                    (b, zod) => validateProvisionBody(b, zod, p.pinnedImageTag),
                    "provision",
                    async (b) => ({
                        status: 201,
                        body: await this.queued(b.userId, () => this.provision(b)),
                    }),
                );
            case "POST /start":
                return this.withBody(req, validateUserIdBody, "start", async (b) => {
                    // Newest: a start while one runs answers at once, starting nothing.
                    if (!(p.startCooldown && this.instances.get(b.userId)?.starting)) await this.queued(b.userId, () => this.start(b));
                    return { status: 200, body: { ok: true } };
                });
            case "POST /stop":
                return this.withBody(req, validateUserIdBody, "stop", async ({ userId }) => {
                    await this.queued(userId, () => this.stop(userId));
                    return { status: 200, body: { ok: true } };
                });
            case "POST /destroy":
                return this.withBody(req, validateUserIdBody, "destroy", async ({ userId }) => {
                    await this.queued(userId, () => this.destroy(userId));
                    return { status: 200, body: { ok: true } };
                });
            case "GET /status":
                return this.withUserId(req, async (userId) => ({ status: 200, body: this.status(userId) }));
            case "GET /gateway-token":
                return this.withUserId(req, async (userId) => this.gatewayToken(userId));
            case "GET /gateway/status":
                if (!p.gatewayStatusRoute) return NO_SUCH_ROUTE;
                return this.withUserId(req, (userId) => this.guard("gateway status", () => this.gatewayStatus(userId)));
            case "GET /debug-status":
                if (!p.debugStatusRoute) return NO_SUCH_ROUTE;
                return this.withUserId(req, async (userId) => ({ status: 200, body: this.debugStatus(userId) }));
            case "POST /publish-image-version":
                if (!p.publishRoute) return NO_SUCH_ROUTE;
                return this.publish(req);
            default:
                return NO_SUCH_ROUTE;
        }
    }

    private async withUserId(req: IncomingJson, action: (userId: string) => Promise<JsonReply>): Promise<JsonReply> {
        const userId = req.query.userId;
        if (!userId) return { status: 400, body: { error: "userId query parameter is required" } };
        return action(userId);
    }

    /** JSON parse → validation → action; anything the action throws becomes a 500 `{error}`. */
    private async withBody<T>(
        req: IncomingJson,
        validate: (b: unknown, zod: 3 | 4) => Validated<T>,
        operation: string,
        action: (b: T) => Promise<JsonReply>,
    ): Promise<JsonReply> {
        const body = parseJson(req.rawBody);
        if (body === MALFORMED) return MALFORMED_REPLY;
        const result = validate(body, this.profile.zod);
        if (!result.ok) return { status: 400, body: { error: "Invalid request", details: result.details } };
        return this.guard(operation, () => action(result.value));
    }

    /** A thrown error as the generation reports it: its message, or (newest) `"<operation> failed"` unless it is the worker's own words. */
    private async guard(operation: string, action: () => Promise<JsonReply>): Promise<JsonReply> {
        try {
            return await action();
        } catch (err) {
            const own = err instanceof WorkerError;
            return { status: 500, body: { error: this.profile.sanitizedErrors && !own ? `${operation} failed` : errorText(err) } };
        }
    }

    private async publish(req: IncomingJson): Promise<JsonReply> {
        const body = parseJson(req.rawBody);
        if (body === MALFORMED) return MALFORMED_REPLY;
        const checked = validatePublishBody(body, this.profile.zod);
        if (!checked.ok) return { status: 400, body: { error: checked.error, ...(checked.details ? { details: checked.details } : {}) } };
        const b = checked.value;
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
    }

    private queued<T>(userId: string, fn: () => Promise<T>): Promise<T> {
        const prev = this.userQueues.get(userId) ?? Promise.resolve();
        const next = prev.then(fn, fn);
        this.userQueues.set(
            userId,
            next.catch(() => undefined),
        );
        return next;
    }

    // ---- vars and the version registry -------------------------------------

    private loadVars(): void {
        const fromFile = this.opts.devVarsPath ? readDevVars(this.opts.devVarsPath) : {};
        this.vars = { ...fromFile, ...(this.opts.vars ?? {}) };
    }

    // Which image the next provision uses, and what reads it (worker source, kiloclaw/): early (Kilo-Org
    // d0ce2a8f) has no version registry: the machine image is the FLY_IMAGE_TAG read at start, and no route
    // shows it. Current (evan-claw f64a77b6) resolves "latest" only inside provision (a re-provision of an
    // existing instance is config-only and refreshes trackedImageTag, which status shows; envVars, secrets
    // and channels are replaced by the request's). Newest (f26d7342) takes pinnedImageTag, and also has
    // GET /versions/latest (not played here: the rollout pins). On all three the registration below runs on
    // every request with the values read at start, so a worker that was not restarted undoes a publish.
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
        if (existing?.status === "destroying") throw new WorkerError("Cannot provision: instance is being destroyed");
        const sandboxId = sandboxIdFor(body.userId);
        const version = this.versionFor(body);

        if (existing) {
            // Config-only update: no Fly call, the machine keeps its image; the tracked
            // version is refreshed from whatever "latest" (or the pinned tag) says now.
            applyConfig(existing, body);
            if (version) applyVersion(existing, version);
            return { sandboxId };
        }

        const fly = this.flyClient();
        const appName = flyAppNameFor(body.userId, this.vars.WORKER_ENV);
        await this.ensureApp(fly, appName);
        const volume = await this.createVolume(fly, appName, sandboxId, body);

        const rec = newRecord(body.userId, sandboxId, appName, volume);
        applyConfig(rec, body);
        if (version) applyVersion(rec, version);
        // Persisted before the machine exists, so a failed start leaves a `provisioned` instance.
        this.instances.set(body.userId, rec);
        this.postgresRows.set(body.userId, { sandboxId, flyAppName: appName });

        if (this.profile.backgroundStart) {
            rec.status = "starting";
            this.scheduleAlarm(rec);
            this.later(0, () => this.backgroundStart(rec));
        } else if (this.profile.autoStart) {
            await this.startMachine(rec, false);
        }
        return { sandboxId };
    }

    /** The version an instance tracks: the pinned tag (newest, looked up in the registry, else taken as given), else "latest". */
    private versionFor(body: ProvisionBody): ImageVersionEntry | null {
        const latest = this.kv.get(LATEST_KEY) ?? null;
        if (!this.profile.pinnedImageTag || !body.pinnedImageTag) return latest;
        const known = [...this.kv.values()].find((e) => e.imageTag === body.pinnedImageTag);
        return (
            known ?? {
                openclawVersion: latest?.openclawVersion ?? "",
                variant: "default",
                imageTag: body.pinnedImageTag,
                imageDigest: null,
                publishedAt: "",
            }
        );
    }

    /** Newest: provision's start runs after the answer; a failure shows only in debug-status, and the reconcile alarm settles `starting`. */
    private async backgroundStart(rec: WorkerInstanceRecord): Promise<void> {
        const began = Date.now();
        try {
            await this.startMachine(rec, false);
        } catch (err) {
            this.recordStartError(rec, err);
            if (!rec.flyMachineId) {
                if (this.isCurrent(rec)) rec.status = "stopped";
                return;
            }
            this.later(RECONCILE_EVERY_SECONDS * this.msPerSecond, () => this.reconcileStarting(rec, began));
        }
    }

    private async reconcileStarting(rec: WorkerInstanceRecord, began: number): Promise<void> {
        if (!this.isCurrent(rec) || rec.status !== "starting" || !rec.flyMachineId) return;
        const machine = await this.flyClient().getMachine(rec.flyAppName, rec.flyMachineId);
        if (machine?.state === "started") {
            await this.healthProbe(rec);
            if (this.isCurrent(rec) && rec.status === "starting") this.markRunning(rec);
            return;
        }
        if (Date.now() - began >= GIVE_UP_STARTING_SECONDS * this.msPerSecond) {
            rec.status = "stopped";
            rec.lastStoppedAt = Date.now();
            return;
        }
        this.later(RECONCILE_EVERY_SECONDS * this.msPerSecond, () => this.reconcileStarting(rec, began));
    }

    private async start(body: StartBody): Promise<void> {
        const rec = this.instances.get(body.userId);
        if (!rec) {
            if (this.profile.restoreOnStart && this.postgresRows.has(body.userId)) return this.restoreFromPostgres(body.userId);
            throw new WorkerError(NOT_PROVISIONED);
        }
        if (rec.status === "destroying") throw new WorkerError("Cannot start: instance is being destroyed");
        try {
            await this.startMachine(rec, body.skipCooldown === true);
        } catch (err) {
            this.recordStartError(rec, err);
            throw err;
        }
    }

    /**
     * Current: `/start` without Durable Object state rebuilds it from the Postgres row the worker's
     * own destroy left active; the old volume is gone, so Fly refuses and the instance stays `provisioned`.
     */
    private async restoreFromPostgres(userId: string): Promise<void> {
        const row = this.postgresRows.get(userId)!;
        const rec = newRecord(userId, row.sandboxId, row.flyAppName, { id: null, region: null });
        this.instances.set(userId, rec);
        throw new FlyApiError("createVolume", 404, JSON.stringify({ error: "source volume not found" }));
    }

    private async stop(userId: string): Promise<void> {
        const rec = this.instances.get(userId);
        if (!rec) throw new WorkerError(NOT_PROVISIONED);
        if (rec.status !== "running") return; // no-op when stopped, provisioned or destroying
        if (rec.flyMachineId) {
            const fly = this.flyClient();
            const machine = await fly.getMachine(rec.flyAppName, rec.flyMachineId);
            if (machine && !["stopped", "failed", "created", "suspended", "destroyed"].includes(machine.state)) {
                if (machine.state !== "stopping") await fly.stopMachine(rec.flyAppName, rec.flyMachineId);
                await fly.waitForState(rec.flyAppName, rec.flyMachineId, "stopped", FLY_WAIT_SECONDS, machine.instance_id);
            }
        }
        rec.status = "stopped";
        rec.lastStoppedAt = Date.now();
        this.scheduleAlarm(rec);
    }

    /**
     * Synchronous: the answer comes after the Fly deletes and the state wipe. When a delete fails the
     * answer is still 200 and the status stays `destroying`; the alarm (and any later destroy) retries.
     */
    private async destroy(userId: string): Promise<void> {
        const rec = this.instances.get(userId);
        if (!rec) throw new WorkerError(NOT_PROVISIONED);
        if (rec.status === "restoring" && this.profile.refuseDestroyWhileRestoring) {
            throw new WorkerError("Cannot destroy: instance is restoring from snapshot");
        }
        if (rec.status !== "destroying") {
            rec.status = "destroying";
            rec.pendingDestroyMachineId = rec.flyMachineId;
            rec.pendingDestroyVolumeId = rec.flyVolumeId;
        }
        await this.finishDestroy(rec);
    }

    /** Deletes machine then volume (404 = done); wipes the state once both are gone, else retries in 60 s + up to 60 s of jitter. */
    private async finishDestroy(rec: WorkerInstanceRecord): Promise<void> {
        if (this.closed || !this.isCurrent(rec)) return;
        if (this.opts.destroyDelayMs) await sleep(this.opts.destroyDelayMs);
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
            this.later(this.scheduleAlarm(rec, ALARM_SECONDS.destroying), () => this.finishDestroy(rec));
            return;
        }
        if (this.isCurrent(rec)) this.instances.delete(rec.userId);
    }

    /** Starts the existing machine, or creates one when there is none (or Fly lost it); waits for `started`, then probes the gateway. */
    private async startMachine(rec: WorkerInstanceRecord, skipCooldown: boolean): Promise<void> {
        rec.starting = true;
        try {
            const fly = this.flyClient();
            const existing = rec.flyMachineId ? await fly.getMachine(rec.flyAppName, rec.flyMachineId) : null;
            if (existing) this.backfillMachineSize(rec, existing);
            if (!existing || existing.state === "destroyed" || existing.state === "destroying") {
                this.recoverMetadata(rec, skipCooldown);
                const image = this.imageFor(rec);
                const machine = await fly.createMachine(rec.flyAppName, this.machineRequest(rec, image));
                // Recorded before the wait: a 408 leaves an instance that knows its machine.
                rec.flyMachineId = machine.id;
                rec.machineImage = image;
            } else if (["stopped", "created", "suspended"].includes(existing.state)) {
                await fly.startMachine(rec.flyAppName, existing.id);
            }
            await fly.waitForState(rec.flyAppName, rec.flyMachineId as string, "started", FLY_WAIT_SECONDS);
            await this.healthProbe(rec);
            if (!this.isCurrent(rec) || rec.status === "destroying") return;
            this.markRunning(rec);
        } finally {
            rec.starting = false;
        }
    }

    /** Newest: a start without a machine first looks for one by metadata, at most once per 30 minutes unless told to skip the cooldown. */
    private recoverMetadata(rec: WorkerInstanceRecord, skipCooldown: boolean): void {
        if (!this.profile.startCooldown) return;
        const last = rec.lastMetadataRecoveryAt;
        if (!skipCooldown && last !== null && Date.now() - last < START_COOLDOWN_SECONDS * this.msPerSecond) {
            throw new Error("Metadata recovery failed; aborting start to avoid creating a duplicate machine");
        }
        rec.lastMetadataRecoveryAt = Date.now();
    }

    /** Current and newest: poll the gateway for up to 60 s after Fly's `started`, then carry on ("proceeding anyway") whatever it said. */
    private async healthProbe(rec: WorkerInstanceRecord): Promise<void> {
        if (!this.profile.healthProbe) return;
        for (let waited = 0; waited < HEALTH_PROBE_SECONDS && !this.closed && this.isCurrent(rec); waited += 5) {
            if (this.gatewayHealth === "healthy") return;
            await this.emulatedSleep(5);
        }
    }

    private markRunning(rec: WorkerInstanceRecord): void {
        rec.status = "running";
        rec.lastStartedAt = Date.now();
        rec.lastStartErrorMessage = null;
        this.scheduleAlarm(rec);
    }

    /**
     * The alarm's next time for the instance's status; returns the delay in ms. Only the newest worker
     * shows it (debug-status); the emulator fires only the destroy retry and the `starting` reconcile.
     */
    private scheduleAlarm(rec: WorkerInstanceRecord, seconds = ALARM_SECONDS[rec.status]): number {
        const delayMs = (seconds + Math.random() * ALARM_JITTER_SECONDS) * this.msPerSecond;
        if (this.profile.debugStatusRoute) rec.alarmScheduledAt = Date.now() + delayMs;
        return delayMs;
    }

    /**
     * Current and newest (since evan-claw 0e4885f6, with machineSize in status): an instance without a
     * recorded size takes the guest its Fly machine runs with, on a live check and on a start of that machine.
     */
    private backfillMachineSize(rec: WorkerInstanceRecord, machine: FlyMachine): void {
        const guest = machine.config?.guest as MachineSize | undefined;
        if (!this.profile.versionInStatus || rec.machineSize !== null || !guest) return;
        rec.machineSize = { cpus: guest.cpus, memory_mb: guest.memory_mb, cpu_kind: guest.cpu_kind };
    }

    private recordStartError(rec: WorkerInstanceRecord, err: unknown): void {
        rec.lastStartErrorMessage = errorText(err);
        rec.lastStartErrorAt = Date.now();
    }

    private isCurrent(rec: WorkerInstanceRecord): boolean {
        return this.instances.get(rec.userId) === rec;
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

    /** Tries the requested regions in turn (shuffled from the current worker on), moving on only on capacity errors. */
    private async createVolume(fly: WorkerFlyClient, appName: string, sandboxId: string, body: ProvisionBody) {
        let regions = (body.region || this.vars.FLY_REGION || "iad")
            .split(",")
            .map((r) => r.trim())
            .filter(Boolean);
        if (this.profile.realMachineConfig) regions = shuffle(regions);
        else regions = regions.map((r) => REGION_ALIASES[r] ?? r);
        const name = this.profile.realMachineConfig ? `kiloclaw_${sandboxId}`.toLowerCase().replace(/[^a-z0-9_]/g, "_") : `kiloclaw_${sandboxId}`;
        let lastError: unknown = new Error("No region to create the volume in");
        for (const region of regions) {
            try {
                const volume = await fly.createVolume(appName, {
                    name,
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

    /**
     * The machine the worker asks Fly for. The current shape's keys travel encrypted in the real
     * worker (KILOCLAW_ENC_*, key in the app secret KILOCLAW_ENV_KEY); here they stay plain, because
     * the offline fixture images read the plain variables (start-openclaw.sh's fallback).
     */
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

        const metadata: Record<string, string> = { kiloclaw_user_id: rec.userId, kiloclaw_sandbox_id: rec.sandboxId };
        if (rec.openclawVersion) metadata.kiloclaw_openclaw_version = rec.openclawVersion;
        const mounts = rec.flyVolumeId ? [{ volume: rec.flyVolumeId, path: "/root" }] : [];
        const common = { image, env, guest: guestFor(rec.machineSize), mounts, metadata, auto_destroy: false, restart: { policy: "on-failure" } };
        if (!this.profile.realMachineConfig) {
            const ports = [
                { port: 443, handlers: ["tls", "http"] },
                { port: 80, handlers: ["http"] },
            ];
            return {
                name: rec.sandboxId,
                region: rec.flyRegion ?? undefined,
                config: { ...common, services: [{ protocol: "tcp", internal_port: GATEWAY_PORT, ports }] },
            };
        }
        if (rec.imageVariant) metadata.kiloclaw_image_variant = rec.imageVariant;
        const service = {
            protocol: "tcp",
            internal_port: GATEWAY_PORT,
            autostart: false,
            autostop: "off",
            ports: [{ port: 443, handlers: ["tls", "http"] }],
        };
        const checks = { controller: { type: "http", port: GATEWAY_PORT, method: "GET", path: "/_kilo/health", interval: "30s", timeout: "5s" } };
        return { name: rec.sandboxId, region: rec.flyRegion ?? undefined, config: { ...common, services: [service], checks } };
    }

    // ---- read-only routes -------------------------------------------------

    private status(userId: string): WorkerStatus {
        const rec = this.instances.get(userId);
        const p = this.profile;
        const base = rec
            ? {
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
              }
            : {
                  userId: null,
                  sandboxId: null,
                  status: null,
                  provisionedAt: null,
                  lastStartedAt: null,
                  lastStoppedAt: null,
                  envVarCount: p.zeroCountsWhenAbsent ? 0 : null,
                  secretCount: p.zeroCountsWhenAbsent ? 0 : null,
                  channelCount: p.zeroCountsWhenAbsent ? 0 : null,
                  flyAppName: null,
                  flyMachineId: null,
                  flyVolumeId: null,
                  flyRegion: null,
              };
        if (rec && p.liveCheck) this.liveCheck(rec);
        if (!p.versionInStatus) return base;
        return {
            ...base,
            machineSize: rec?.machineSize ?? null,
            openclawVersion: rec?.openclawVersion ?? null,
            imageVariant: rec?.imageVariant ?? null,
            trackedImageTag: rec?.trackedImageTag ?? null,
            // The newest worker's status carries more (its source's getStatus): the tracked digest and per-user settings.
            ...(p.debugStatusRoute
                ? {
                      trackedImageDigest: [...this.kv.values()].find((e) => e.imageTag === rec?.trackedImageTag)?.imageDigest ?? null,
                      googleConnected: false,
                      gmailNotificationsEnabled: false,
                      execSecurity: null,
                      execAsk: null,
                  }
                : {}),
        };
    }

    /** After the answer, at most once per 30 s: a `running` instance whose machine is not started becomes `stopped`. */
    private liveCheck(rec: WorkerInstanceRecord): void {
        if (rec.status !== "running" || !rec.flyMachineId) return;
        if (rec.lastLiveCheckAt !== null && Date.now() - rec.lastLiveCheckAt < LIVE_CHECK_EVERY_SECONDS * this.msPerSecond) return;
        rec.lastLiveCheckAt = Date.now();
        this.later(0, async () => {
            const machine = await this.flyClient().getMachine(rec.flyAppName, rec.flyMachineId as string);
            if (machine && this.isCurrent(rec)) this.backfillMachineSize(rec, machine);
            if (
                this.isCurrent(rec) &&
                rec.status === "running" &&
                (!machine || ["stopped", "failed", "destroyed", "suspended"].includes(machine.state))
            ) {
                rec.status = "stopped";
                rec.lastStoppedAt = Date.now();
            }
        });
    }

    private debugStatus(userId: string): Record<string, unknown> {
        const rec = this.instances.get(userId);
        return {
            ...this.status(userId),
            pendingDestroyMachineId: rec?.pendingDestroyMachineId ?? null,
            pendingDestroyVolumeId: rec?.pendingDestroyVolumeId ?? null,
            lastMetadataRecoveryAt: rec?.lastMetadataRecoveryAt ?? null,
            lastLiveCheckAt: rec?.lastLiveCheckAt ?? null,
            lastDestroyErrorMessage: rec?.lastDestroyError ?? null,
            // Which Fly delete failed last: the machine's goes first, so a pending machine means it was that one.
            lastDestroyErrorOp: rec?.lastDestroyError ? (rec.pendingDestroyMachineId ? "machine" : "volume") : null,
            alarmScheduledAt: rec?.alarmScheduledAt ?? null,
            lastStartErrorMessage: rec?.lastStartErrorMessage ?? null,
            lastStartErrorAt: rec?.lastStartErrorAt ?? null,
        };
    }

    /** The gateway controller's own answer on the machine (`GET /_kilo/gateway/status`). */
    private async gatewayStatus(userId: string): Promise<JsonReply> {
        const rec = this.instances.get(userId);
        // The current worker's route passes the Durable Object's error through with its class name.
        if (!rec || !rec.flyMachineId)
            throw new WorkerError(this.profile.name === "current" ? `GatewayControllerError: ${NOT_PROVISIONED}` : NOT_PROVISIONED);
        // The worker calls the machine's controller; when nothing answers it says so (500), it does not report a state.
        if (this.gatewayHealth === "unreachable") {
            throw new WorkerError(`GatewayControllerError: Gateway controller request failed: connect ECONNREFUSED (${rec.flyAppName}.fly.dev)`);
        }
        const healthy = rec.status === "running" && this.gatewayHealth === "healthy";
        const state = healthy ? "running" : "crashed";
        const lastExit = healthy ? null : { code: 1, signal: null, at: new Date().toISOString() };
        return { status: 200, body: { state, pid: healthy ? 42 : null, uptime: healthy ? 1 : 0, restarts: healthy ? 0 : 3, lastExit } };
    }

    private async gatewayToken(userId: string): Promise<JsonReply> {
        const secret = this.vars.GATEWAY_TOKEN_SECRET;
        if (!secret) return { status: 503, body: { error: "GATEWAY_TOKEN_SECRET is not configured" } };
        const rec = this.instances.get(userId);
        if (!rec) return { status: 404, body: { error: NOT_PROVISIONED } };
        return { status: 200, body: { gatewayToken: gatewayTokenFor(rec.sandboxId, secret) } };
    }
}

const MALFORMED = Symbol("malformed JSON");
const MALFORMED_REPLY: JsonReply = { status: 400, body: { error: "Malformed JSON body" } };

function parseJson(raw: string): unknown {
    try {
        return JSON.parse(raw);
    } catch {
        return MALFORMED;
    }
}

function newRecord(
    userId: string,
    sandboxId: string,
    flyAppName: string,
    volume: { id: string | null; region: string | null },
): WorkerInstanceRecord {
    return {
        userId,
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
        flyAppName,
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
        lastStartErrorMessage: null,
        lastStartErrorAt: null,
        lastMetadataRecoveryAt: null,
        lastLiveCheckAt: null,
        alarmScheduledAt: null,
        starting: false,
    };
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

function applyVersion(rec: WorkerInstanceRecord, version: ImageVersionEntry): void {
    rec.openclawVersion = version.openclawVersion || rec.openclawVersion;
    rec.imageVariant = version.variant;
    rec.trackedImageTag = version.imageTag;
}

function guestFor(size: MachineSize | null): { cpus: number; memory_mb: number; cpu_kind: string } {
    return size ? { cpus: size.cpus, memory_mb: size.memory_mb, cpu_kind: size.cpu_kind ?? "shared" } : { ...DEFAULT_GUEST };
}

function shuffle<T>(items: T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
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
