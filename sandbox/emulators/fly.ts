// An in-process emulator of the Fly Machines API (see shared/reference/fly-machines-api.md).
// Machines move through Fly's states on timers (or, in docker mode, follow real
// containers), so clients meet the same 408s, 412s and 404s they would on Fly.
import { createHash, randomBytes } from "node:crypto";
import { DockerMachines, DockerModeOptions } from "./docker-machines";
import { Emulator, IncomingJson, JsonReply } from "./server";

export type MachineState =
    | "created"
    | "creating"
    | "starting"
    | "started"
    | "stopping"
    | "stopped"
    | "suspending"
    | "suspended"
    | "failed"
    | "restarting"
    | "updating"
    | "replacing"
    | "destroying"
    | "destroyed"
    | "replaced"
    | "launch_failed";

export interface FlyEmulatorOptions {
    /** Accepted API token. `fm1*`/`fm2*` tokens must come as `FlyV1 <token>`, others as `Bearer <token>`. No auth check when absent. */
    token?: string;
    /** Real milliseconds per contract second (wait timeouts). Default 1000. */
    msPerSecond?: number;
    /** Largest accepted wait `timeout` in seconds. Default 60. */
    waitCapSeconds?: number;
    /** How long a machine stays `replacing` while its image is pulled for the first time on this "host". Default 0. */
    firstPullDelayMs?: number;
    /** First pulls (emulated mode) last until `releasePulls()`: a test drives the pull's end instead of racing a timer. */
    holdPulls?: boolean;
    /** `starting` → `started` once the image is present. Default 20. */
    startDelayMs?: number;
    /** `stopping` → `stopped`. Default 20. */
    stopDelayMs?: number;
    /** `destroying` → `destroyed`. Default 20. */
    destroyDelayMs?: number;
    /** Reply to a successful machine DELETE: "200" `{"ok":true}` (default), "202" `{"ok":true}`, "204" empty. */
    deleteMode?: "200" | "202" | "204";
    /** Status of a refused non-force DELETE of a running machine (sources say 409 or 412). Default 412. */
    refuseDeleteStatus?: 409 | 412;
    /** Unknown apps spring into existence on machine/volume calls (default true). Otherwise 404 `app not found`. */
    autoCreateApps?: boolean;
    /** Region for machines created without one. Default "iad". */
    defaultRegion?: string;
    /** Images that count as already pulled on this host. */
    prepulledImages?: string[];
    /** Images whose process exits (code 1) while the machine is `starting` (emulated mode; docker mode runs the real image). */
    crashingImages?: string[];
    /** Run machines as real containers. */
    docker?: DockerModeOptions;
    /** Fixed port to listen on (default: a free one). */
    port?: number;
}

export interface ImageRef {
    registry: string;
    repository: string;
    tag: string;
    digest: string;
    labels: Record<string, string>;
}

export interface MachineEvent {
    type: string;
    status: string;
    source: string;
    timestamp: number;
    request?: unknown;
}

/** The Machine object as the API returns it. */
export interface FlyMachine {
    id: string;
    name: string;
    state: MachineState;
    region: string;
    instance_id: string;
    private_ip: string;
    image_ref: ImageRef;
    config: MachineConfig;
    events: MachineEvent[];
    checks: unknown[];
    host_status: string;
    created_at: string;
    updated_at: string;
}

export interface MachineConfig {
    image: string;
    env?: Record<string, string>;
    metadata?: Record<string, string>;
    services?: Array<{ internal_port?: number }>;
    [key: string]: unknown;
}

export interface FlyVolume {
    id: string;
    name: string;
    region: string;
    size_gb: number;
    state: string;
    zone: string;
    encrypted: boolean;
    attached_machine_id: string | null;
    created_at: string;
}

interface AppRecord {
    name: string;
    orgSlug: string;
    id: string;
    createdAt: string;
}

interface MachineRecord {
    app: string;
    machine: FlyMachine;
    /** Bumped on every state-changing command or forced state: stale timers compare and give up. */
    generation: number;
    /** Set by setMachineState: timers and containers leave the state alone. */
    frozen: boolean;
    hostPort?: number;
    stopWatching?: () => void;
    /** A destroy is removing the machine (its container, in docker mode). */
    removing?: boolean;
}

const WAIT_STATES = new Set<string>(["started", "stopped", "destroyed", "suspended", "settled"]);
const SETTLED = new Set<MachineState>(["created", "started", "stopped", "suspended", "failed", "destroyed", "replaced"]);
const RUNNING = new Set<MachineState>(["started", "starting", "replacing", "restarting", "updating"]);
const DEFAULT_INTERNAL_PORT = 18789;

export class FlyEmulator extends Emulator {
    private readonly apps_ = new Map<string, AppRecord>();
    private readonly machines_ = new Map<string, MachineRecord>();
    private readonly volumes_ = new Map<string, { app: string; volume: FlyVolume }>();
    private readonly pulled = new Set<string>();
    private readonly pulls = new Map<string, Promise<string | undefined>>();
    private readonly digests = new Map<string, string>();
    /** Destroys still removing their machine (its container, in docker mode). */
    private readonly removals = new Set<Promise<void>>();
    private readonly waiters = new Set<() => void>();
    /** Timers of pending waits and delays (they resolve early on close, unlike the base class's `later`). */
    private readonly waitTimers = new Set<NodeJS.Timeout>();
    private readonly dockerHost?: DockerMachines;
    /** Resolves the held pulls (holdPulls). */
    private releaseHeldPulls?: () => void;
    private readonly heldPulls: Promise<void> = new Promise((resolve) => (this.releaseHeldPulls = resolve));
    /** Names of apps deleted through `DELETE /v1/apps/{app}` (the runbook forbids it). */
    readonly deletedApps: string[] = [];

    private constructor(private readonly opts: FlyEmulatorOptions) {
        super();
        if (opts.docker) this.dockerHost = new DockerMachines(opts.docker);
        for (const image of opts.prepulledImages ?? []) this.pulled.add(image);
    }

    static async start(opts: FlyEmulatorOptions = {}): Promise<FlyEmulator> {
        const emulator = new FlyEmulator(opts);
        await emulator.server.listen(opts.port ?? 0);
        return emulator;
    }

    protected async onClose(): Promise<void> {
        for (const t of this.waitTimers) clearTimeout(t);
        this.waitTimers.clear();
        this.notify();
        for (const rec of this.machines_.values()) rec.stopWatching?.();
        await this.dockerHost?.removeAll();
    }

    // ---- inspection and control for tests ----

    /** Existing (not deleted) app names. */
    get apps(): string[] {
        return [...this.apps_.keys()];
    }

    /** Images this "host" has finished pulling. */
    get pulledImages(): string[] {
        return [...this.pulled];
    }

    /** Copies of every machine (destroyed ones included), optionally of one app. */
    machines(app?: string): FlyMachine[] {
        return [...this.machines_.values()].filter((r) => !app || r.app === app).map((r) => clone(r.machine));
    }

    machine(app: string, id: string): FlyMachine | undefined {
        const rec = this.machines_.get(id);
        return rec && rec.app === app ? clone(rec.machine) : undefined;
    }

    volumes(app?: string): FlyVolume[] {
        return [...this.volumes_.values()].filter((v) => !app || v.app === app).map((v) => clone(v.volume));
    }

    createApp(name: string, orgSlug = "personal"): void {
        if (!this.apps_.has(name)) this.apps_.set(name, { name, orgSlug, id: randomHex(12), createdAt: new Date().toISOString() });
    }

    /** Forces a state and freezes the machine there (e.g. `replacing` forever) until the next API command. */
    setMachineState(app: string, id: string, state: MachineState): void {
        const rec = this.machines_.get(id);
        if (!rec || rec.app !== app) throw new Error(`no machine ${id} in app ${app}`);
        rec.generation += 1;
        rec.frozen = true;
        this.setState(rec, state, "test");
    }

    /** The host port the container's internal port is published on (docker mode, once started). */
    hostPort(app: string, id: string): number | undefined {
        const rec = this.machines_.get(id);
        return rec && rec.app === app ? rec.hostPort : undefined;
    }

    // ---- HTTP ----

    protected async handle(req: IncomingJson): Promise<JsonReply> {
        const reply = await this.route(req);
        return { ...reply, headers: { ...(reply.headers ?? {}), "fly-request-id": `${ulid()}-${this.opts.defaultRegion ?? "iad"}` } };
    }

    private async route(req: IncomingJson): Promise<JsonReply> {
        const denied = this.authenticate(req.headers.authorization);
        if (denied) return denied;
        const { method, path, query } = req;
        const seg = path.split("/").filter(Boolean).map(decodeURIComponent);
        if (seg[0] !== "v1") return err(404, "not found");

        if (seg[1] === "apps" && seg.length === 2) {
            if (method === "POST") return this.createAppRoute(req.body);
            if (method === "GET") return ok({ total_apps: this.apps_.size, apps: [...this.apps_.values()].map(appJson) });
        }
        if (seg[1] !== "apps" || seg.length < 3) return err(404, "not found");
        const app = seg[2];
        const rest = seg.slice(3);

        if (rest.length === 0) {
            if (method === "GET") {
                const rec = this.apps_.get(app);
                return rec
                    ? ok({ ...appJson(rec), machine_count: this.liveMachines(app).length, volume_count: this.volumes(app).length })
                    : err(404, "app not found");
            }
            if (method === "DELETE") {
                if (!this.apps_.has(app)) return err(404, "app not found");
                this.apps_.delete(app);
                this.deletedApps.push(app);
                for (const rec of this.machines_.values()) if (rec.app === app && rec.machine.state !== "destroyed") this.destroyNow(rec);
                return { status: 202 };
            }
            return err(405, "method not allowed");
        }

        if (!this.apps_.has(app)) {
            if (this.opts.autoCreateApps === false) return err(404, "app not found");
            this.createApp(app);
        }

        switch (rest[0]) {
            case "machines":
                return this.machinesRoute(method, app, rest.slice(1), query, req.body);
            case "volumes":
                return this.volumesRoute(method, app, rest.slice(1), req.body);
            case "ips":
            case "ip_assignments":
            case "secrets":
                // Accepted and ignored: the worker calls these while provisioning.
                return ok(method === "GET" ? [] : {});
            default:
                return err(404, "not found");
        }
    }

    private authenticate(header: string | undefined): JsonReply | undefined {
        const token = this.opts.token;
        if (token === undefined) return undefined;
        const invalid = err(401, "Authenticate: token validation error");
        if (!header) return invalid;
        const match = /^(\S+)\s+(.+)$/.exec(header.trim());
        if (!match) return invalid;
        const scheme = match[1].toLowerCase();
        const sent = match[2].trim();
        const isMacaroon = (t: string) => /^fm[12]/.test(t);
        if (scheme === "bearer") {
            if (isMacaroon(sent)) return err(401, "verify: invalid token: no tokens found in header");
            return !isMacaroon(token) && sent === token ? undefined : invalid;
        }
        if (scheme === "flyv1") {
            if (!isMacaroon(token)) return invalid;
            const parts = sent.split(",").map((s) => s.trim());
            return sent === token || parts.includes(token) ? undefined : invalid;
        }
        return invalid;
    }

    private createAppRoute(body: unknown): JsonReply {
        const b = asObject(body);
        const name = typeof b?.app_name === "string" ? b.app_name : "";
        if (!name) return err(400, "invalid_argument: app_name is required");
        if (this.apps_.has(name)) return err(422, "Validation failed: Name has already been taken");
        this.createApp(name, typeof b?.org_slug === "string" ? b.org_slug : "personal");
        return { status: 201, body: appJson(this.apps_.get(name)!) };
    }

    private async machinesRoute(method: string, app: string, rest: string[], query: Record<string, string>, body: unknown): Promise<JsonReply> {
        if (rest.length === 0) {
            if (method === "POST") return this.createMachine(app, body);
            if (method === "GET") return ok(this.listMachines(app, query));
            return err(405, "method not allowed");
        }
        const rec = this.machines_.get(rest[0]);
        const gone = !rec || rec.app !== app;
        const action = rest[1];

        if (action === "wait" && method === "GET") {
            if (gone) return err(404, "machine not found");
            return this.waitRoute(rec, query);
        }
        if (gone || rec.machine.state === "destroyed") return err(404, "machine not found");

        if (rest.length === 1) {
            if (method === "GET") return ok(clone(rec.machine));
            if (method === "POST") return this.updateMachine(rec, body);
            if (method === "DELETE") return this.deleteMachine(rec, query);
            return err(405, "method not allowed");
        }
        if (method === "POST" && action === "stop") return this.stopMachine(rec, body);
        if (method === "POST" && action === "start") return this.startMachine(rec);
        return err(404, "not found");
    }

    // ---- machines ----

    private createMachine(app: string, body: unknown): JsonReply {
        const b = asObject(body);
        const config = asObject(b?.config);
        if (!config || typeof config.image !== "string" || config.image === "") {
            return err(400, "invalid_argument: config.image is required");
        }
        const now = new Date().toISOString();
        const id = randomHex(7);
        const machineConfig = { guest: { cpu_kind: "shared", cpus: 1, memory_mb: 256 }, ...clone(config) } as unknown as MachineConfig;
        const machine: FlyMachine = {
            id,
            name: typeof b?.name === "string" && b.name ? b.name : `emu-${randomHex(3)}`,
            state: "created",
            region: typeof b?.region === "string" && b.region ? b.region : (this.opts.defaultRegion ?? "iad"),
            instance_id: ulid(),
            private_ip: `fdaa:0:1:a7b:${randomHex(2)}:${randomHex(2)}:${randomHex(2)}:2`,
            image_ref: parseImageRef(machineConfig.image, this.digests.get(machineConfig.image)),
            config: machineConfig,
            events: [],
            checks: [],
            host_status: "ok",
            created_at: now,
            updated_at: now,
        };
        const rec: MachineRecord = { app, machine, generation: 0, frozen: false };
        this.machines_.set(id, rec);
        this.addEvent(rec, "launch", "created", "user");
        const snapshot = clone(machine);
        if (b?.skip_launch !== true) void this.launch(rec, rec.generation);
        return ok(snapshot);
    }

    /** Pull (first time only), then start: `replacing` → `starting` → `started`. */
    private async launch(rec: MachineRecord, generation: number): Promise<void> {
        const current = () => !this.closed && rec.generation === generation;
        const image = rec.machine.config.image;
        try {
            if (!this.pulled.has(image)) {
                this.setState(rec, "replacing", "flyd");
                const digest = await this.pullOnce(image);
                if (!current()) return;
                rec.machine.image_ref = parseImageRef(image, digest);
            }
            this.setState(rec, "starting", "flyd");
            if (this.dockerHost) {
                await this.dockerHost.remove(rec.machine.id);
                if (!current()) return;
                await this.dockerHost.run(rec.machine.id, rec.app, image, rec.machine.config.env ?? {}, internalPort(rec.machine.config));
                await this.followContainer(rec, generation);
            } else {
                await this.delay(this.opts.startDelayMs ?? 20);
                if (!current()) return;
                if (this.opts.crashingImages?.includes(image)) this.containerExited(rec, 1);
                else this.setState(rec, "started", "flyd");
            }
        } catch (e) {
            if (!current()) return;
            this.addEvent(rec, "launch", "failed", "flyd", { error: e instanceof Error ? e.message : String(e) });
            this.setState(rec, "failed", "flyd", false);
        }
    }

    /**
     * Docker mode: `started` once the container runs and, when the config declares a service
     * (the worker's machines do), once that port answers HTTP; exit → `stopped` (code 0) or `failed`.
     * A machine without services (`fly machine run` without --port, like a warm-up) has nothing to probe.
     */
    private async followContainer(rec: MachineRecord, generation: number): Promise<void> {
        const host = this.dockerHost!;
        const current = () => !this.closed && rec.generation === generation;
        const port = internalPort(rec.machine.config);
        const probe = rec.machine.config.services?.length ? port : undefined;
        const ready = await host.waitReady(rec.machine.id, port, () => !current(), probe !== undefined);
        if (!current()) return;
        if (ready.outcome === "exited") {
            this.containerExited(rec, ready.exitCode ?? -1);
            return;
        }
        rec.hostPort = ready.port;
        this.setState(rec, "started", "flyd");
        rec.stopWatching?.();
        rec.stopWatching = host.watchExit(rec.machine.id, (code) => {
            if (current() && !rec.frozen) this.containerExited(rec, code);
        });
    }

    /** The process exited: `stopped`/`failed`, or, with auto_destroy and restart "no", destroyed (Fly removes such a machine). */
    private containerExited(rec: MachineRecord, exitCode: number): void {
        this.addEvent(rec, "exit", "stopped", "flyd", { exit_event: { exit_code: exitCode } });
        const config = rec.machine.config as MachineConfig & { auto_destroy?: boolean; restart?: { policy?: string } };
        if (config.auto_destroy === true && (config.restart?.policy ?? "no") === "no") {
            this.destroyNow(rec, "flyd");
            return;
        }
        this.setState(rec, exitCode === 0 ? "stopped" : "failed", "flyd", false);
    }

    /** Test control (holdPulls): every held first pull finishes now, and later ones do not wait. */
    releasePulls(): void {
        this.releaseHeldPulls?.();
    }

    /** Test control: the machine's process exits with `exitCode` now (a crash after start). */
    exitProcess(app: string, id: string, exitCode = 1): void {
        const rec = this.machines_.get(id);
        if (!rec || rec.app !== app) throw new Error(`no machine ${id} in app ${app}`);
        rec.generation += 1;
        this.containerExited(rec, exitCode);
    }

    /** One pull per image at a time; machines created meanwhile share it. */
    private pullOnce(image: string): Promise<string | undefined> {
        let pull = this.pulls.get(image);
        if (!pull) {
            pull = (async () => {
                let digest: string | undefined;
                if (this.dockerHost) digest = (await this.dockerHost.pull(image)).digest;
                else if (this.opts.holdPulls) await Promise.race([this.heldPulls, this.delay(2 ** 31 - 1)]);
                else await this.delay(this.opts.firstPullDelayMs ?? 0);
                digest ??= `sha256:${createHash("sha256").update(image).digest("hex")}`;
                this.digests.set(image, digest);
                this.pulled.add(image);
                return digest;
            })();
            this.pulls.set(image, pull);
            pull.then(
                () => this.pulls.delete(image),
                () => this.pulls.delete(image),
            );
        }
        return pull;
    }

    private listMachines(app: string, query: Record<string, string>): FlyMachine[] {
        const includeDeleted = query.include_deleted === "true" || query.include_deleted === "1";
        const metadata = Object.entries(query)
            .filter(([k]) => k.startsWith("metadata."))
            .map(([k, v]) => [k.slice("metadata.".length), v] as const);
        return [...this.machines_.values()]
            .filter((r) => r.app === app)
            .map((r) => r.machine)
            .filter((m) => includeDeleted || m.state !== "destroyed")
            .filter((m) => !query.region || m.region === query.region)
            .filter((m) => metadata.every(([k, v]) => m.config.metadata?.[k] === v))
            .map(clone);
    }

    private liveMachines(app: string): FlyMachine[] {
        return this.listMachines(app, {});
    }

    private async waitRoute(rec: MachineRecord, query: Record<string, string>): Promise<JsonReply> {
        const state = query.state ?? "started";
        if (!WAIT_STATES.has(state)) return err(400, `invalid_argument: invalid state "${state}"`);
        const cap = this.opts.waitCapSeconds ?? 60;
        const timeout = query.timeout === undefined ? cap : Number(query.timeout.replace(/s$/, ""));
        if (!Number.isFinite(timeout) || timeout < 1 || timeout > cap) {
            return err(400, `invalid_argument: timeout must be between 1 and ${cap} seconds, got ${query.timeout}`);
        }
        // A machine that is already gone: 404 means "done" for destroyed waits.
        if (rec.machine.state === "destroyed" && state === "destroyed") return err(404, "machine not found");
        // As measured on Fly: once the machine is destroyed, a wait for any other state answers 408 at
        // once, every time, so a client that loops on 408 without a pause is a busy loop.
        const reached = (s: MachineState) => (state === "settled" ? SETTLED.has(s) : s === state);
        await this.waitUntil(() => reached(rec.machine.state) || rec.machine.state === "destroyed", timeout * (this.opts.msPerSecond ?? 1000));
        if (this.closed) return err(503, "unavailable: emulator closed");
        if (reached(rec.machine.state)) return ok({ ok: true });
        return err(408, `deadline_exceeded: machine failed to reach desired state, ${state}, currently ${rec.machine.state}`);
    }

    private stopMachine(rec: MachineRecord, body: unknown): JsonReply {
        const s = rec.machine.state;
        if (s === "stopped" || s === "stopping" || s === "created" || s === "failed") return ok({ ok: true });
        if (s === "destroying") return err(412, "failed_precondition: machine is being destroyed");
        const generation = this.command(rec);
        this.setState(rec, "stopping", "user");
        void (async () => {
            if (this.dockerHost) {
                rec.stopWatching?.();
                // Fly's stop body: {signal?, timeout?} with timeout in seconds or as "10s".
                const timeout = Number(String(asObject(body)?.timeout ?? 10).replace(/s$/, ""));
                await this.dockerHost.stop(rec.machine.id, Number.isFinite(timeout) ? Math.ceil(timeout) : 10);
            } else {
                await this.delay(this.opts.stopDelayMs ?? 20);
            }
            if (!this.closed && rec.generation === generation) this.setState(rec, "stopped", "user");
        })();
        return ok({ ok: true });
    }

    private startMachine(rec: MachineRecord): JsonReply {
        const previous = rec.machine.state;
        if (previous === "replacing") return err(412, "failed_precondition: machine getting replaced, refusing to start");
        if (previous === "destroying") return err(412, "failed_precondition: machine is being destroyed, refusing to start");
        if (previous === "started" || previous === "starting") return ok({ previous_state: previous, migrated: false, new_host: "" });
        const generation = this.command(rec);
        if (!this.dockerHost || previous === "created" || !this.pulled.has(rec.machine.config.image)) {
            void this.launch(rec, generation);
        } else {
            this.setState(rec, "starting", "user");
            void (async () => {
                try {
                    await this.dockerHost!.start(rec.machine.id);
                    await this.followContainer(rec, generation);
                } catch {
                    await this.launch(rec, generation); // container gone: run a fresh one
                }
            })();
        }
        return ok({ previous_state: previous, migrated: false, new_host: "" });
    }

    /** `POST /machines/{id}`: new config, new instance_id, relaunch. */
    private updateMachine(rec: MachineRecord, body: unknown): JsonReply {
        const config = asObject(asObject(body)?.config);
        if (!config || typeof config.image !== "string" || config.image === "") {
            return err(400, "invalid_argument: config.image is required");
        }
        if (rec.machine.state === "replacing") return err(412, "failed_precondition: machine getting replaced, refusing to update");
        const generation = this.command(rec);
        rec.machine.config = { guest: rec.machine.config.guest, ...clone(config) } as unknown as MachineConfig;
        rec.machine.image_ref = parseImageRef(config.image, this.digests.get(config.image));
        rec.machine.instance_id = ulid();
        this.addEvent(rec, "update", "replacing", "user");
        rec.stopWatching?.();
        void this.launch(rec, generation);
        return ok(clone(rec.machine));
    }

    private deleteMachine(rec: MachineRecord, query: Record<string, string>): JsonReply {
        const force = query.force === "true" || query.kill === "true";
        if (!force && RUNNING.has(rec.machine.state)) {
            return err(this.opts.refuseDeleteStatus ?? 412, "failed_precondition: unable to destroy machine, not currently stopped or suspended");
        }
        if (rec.machine.state !== "destroying" || rec.removing === false) this.destroyNow(rec, "user", this.opts.destroyDelayMs ?? 20);
        const mode = this.opts.deleteMode ?? "200";
        return mode === "204" ? { status: 204 } : { status: Number(mode), body: { ok: true } };
    }

    /**
     * `destroying`, then `destroyed` once the machine is really gone: in docker mode only after its container
     * is removed (a client that saw `destroyed` may remove the image next). A container that would not go
     * leaves the machine `destroying`; the next DELETE tries again.
     */
    private destroyNow(rec: MachineRecord, source = "user", emulatedDelayMs = 0): void {
        const generation = this.command(rec);
        rec.stopWatching?.();
        if (!this.dockerHost && emulatedDelayMs === 0) {
            this.setState(rec, "destroyed", source);
            return;
        }
        this.setState(rec, "destroying", source);
        rec.removing = true;
        const removal = (async () => {
            let gone = true;
            if (this.dockerHost) gone = await this.dockerHost.remove(rec.machine.id);
            else await this.delay(emulatedDelayMs);
            rec.removing = false;
            if (gone && !this.closed && rec.generation === generation) this.setState(rec, "destroyed", source);
        })();
        this.removals.add(removal);
        void removal.finally(() => this.removals.delete(removal));
    }

    /** Resolves once every destroy begun so far has removed its machine (a test counts containers after this). */
    async settled(): Promise<void> {
        while (this.removals.size > 0) await Promise.allSettled([...this.removals]);
    }

    // ---- volumes ----

    private volumesRoute(method: string, app: string, rest: string[], body: unknown): JsonReply {
        if (rest.length === 0) {
            if (method === "GET") return ok(this.volumes(app).filter((v) => v.state !== "destroyed"));
            if (method !== "POST") return err(405, "method not allowed");
            const b = asObject(body);
            if (!b || typeof b.name !== "string" || !b.name) return err(400, "invalid_argument: name is required");
            const volume: FlyVolume = {
                id: `vol_${randomHex(8)}`,
                name: b.name,
                region: typeof b.region === "string" && b.region ? b.region : (this.opts.defaultRegion ?? "iad"),
                size_gb: typeof b.size_gb === "number" ? b.size_gb : 1,
                state: "created",
                zone: randomHex(2),
                encrypted: b.encrypted !== false,
                attached_machine_id: null,
                created_at: new Date().toISOString(),
            };
            this.volumes_.set(volume.id, { app, volume });
            return ok(clone(volume));
        }
        const entry = this.volumes_.get(rest[0]);
        if (!entry || entry.app !== app || entry.volume.state === "destroyed") return err(404, "volume not found");
        if (method === "GET") return ok(clone(entry.volume));
        if (method === "DELETE") {
            entry.volume.state = "destroyed";
            return ok(clone(entry.volume));
        }
        return err(405, "method not allowed");
    }

    // ---- state plumbing ----

    /** A user command supersedes whatever was in flight (and unfreezes a forced state). */
    private command(rec: MachineRecord): number {
        rec.generation += 1;
        rec.frozen = false;
        return rec.generation;
    }

    private setState(rec: MachineRecord, state: MachineState, source: string, withEvent = true): void {
        rec.machine.state = state;
        rec.machine.updated_at = new Date().toISOString();
        if (withEvent) this.addEvent(rec, eventType(state), state, source);
        this.notify();
    }

    private addEvent(rec: MachineRecord, type: string, status: string, source: string, request?: unknown): void {
        const event: MachineEvent = { type, status, source, timestamp: Date.now() };
        if (request !== undefined) event.request = request;
        rec.machine.events.unshift(event);
    }

    private notify(): void {
        for (const w of [...this.waiters]) w();
    }

    /** Resolves true as soon as `predicate` holds (checked on every state change), false after `timeoutMs`. */
    private waitUntil(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
        if (predicate()) return Promise.resolve(true);
        return new Promise((resolve) => {
            const finish = (value: boolean) => {
                this.waiters.delete(check);
                clearTimeout(timer);
                this.waitTimers.delete(timer);
                resolve(value);
            };
            const check = () => {
                if (this.closed) finish(false);
                else if (predicate()) finish(true);
            };
            const timer = setTimeout(() => finish(predicate()), timeoutMs);
            this.waitTimers.add(timer);
            this.waiters.add(check);
        });
    }

    /** A sleep that close() cuts short. */
    private delay(ms: number): Promise<void> {
        if (this.closed) return Promise.resolve();
        return new Promise((resolve) => {
            const timer = setTimeout(() => {
                this.waitTimers.delete(timer);
                this.waiters.delete(onClose);
                resolve();
            }, ms);
            const onClose = () => {
                if (!this.closed) return;
                clearTimeout(timer);
                this.waitTimers.delete(timer);
                this.waiters.delete(onClose);
                resolve();
            };
            this.waitTimers.add(timer);
            this.waiters.add(onClose);
        });
    }
}

// ---- helpers ----

function ok(body: unknown): JsonReply {
    return { status: 200, body };
}

function err(status: number, message: string): JsonReply {
    return { status, body: { error: message } };
}

function asObject(v: unknown): Record<string, unknown> | undefined {
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function clone<T>(v: T): T {
    return JSON.parse(JSON.stringify(v)) as T;
}

function appJson(a: AppRecord): Record<string, unknown> {
    return { id: a.id, name: a.name, organization: { name: a.orgSlug, slug: a.orgSlug }, status: "deployed", created_at: a.createdAt };
}

function randomHex(bytes: number): string {
    return randomBytes(bytes).toString("hex");
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A ULID: 10 chars of millisecond time, 16 random, Crockford base32. */
export function ulid(now = Date.now()): string {
    let time = "";
    for (let i = 0, t = now; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
    const rand = [...randomBytes(16)].map((b) => CROCKFORD[b % 32]).join("");
    return time + rand;
}

function internalPort(config: MachineConfig): number {
    return config.services?.find((s) => typeof s.internal_port === "number")?.internal_port ?? DEFAULT_INTERNAL_PORT;
}

function eventType(state: MachineState): string {
    switch (state) {
        case "started":
        case "starting":
            return "start";
        case "stopping":
        case "stopped":
            return "stop";
        case "destroying":
        case "destroyed":
            return "destroy";
        case "replacing":
            return "update";
        default:
            return state;
    }
}

/** Splits `[registry/]repository[:tag][@digest]` the way docker does. */
export function parseImageRef(image: string, digest?: string): ImageRef {
    let rest = image;
    let refDigest = "";
    const at = rest.indexOf("@");
    if (at >= 0) {
        refDigest = rest.slice(at + 1);
        rest = rest.slice(0, at);
    }
    let registry = "docker.io";
    const slash = rest.indexOf("/");
    if (slash >= 0) {
        const first = rest.slice(0, slash);
        if (first.includes(".") || first.includes(":") || first === "localhost") {
            registry = first;
            rest = rest.slice(slash + 1);
        }
    }
    let tag = "latest";
    const colon = rest.lastIndexOf(":");
    if (colon >= 0) {
        tag = rest.slice(colon + 1);
        rest = rest.slice(0, colon);
    }
    if (registry === "docker.io" && !rest.includes("/")) rest = `library/${rest}`;
    return { registry, repository: rest, tag, digest: refDigest || digest || "", labels: {} };
}
