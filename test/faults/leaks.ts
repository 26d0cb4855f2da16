// What a rollout may leave behind, and the suite's ledger of faults.
// Every check is scoped to what one fault's run created (its emulators, apps,
// images, registry and scratch dir), so suites running beside it on the same
// Docker engine can neither hide a leak nor cause one.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EMULATOR_LABEL } from "../../sandbox/emulators/docker-machines";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { SMOKE_LABEL } from "../../sandbox/docker";

/** Something a run created and did not remove. */
export interface Leak {
    kind: "fly-machine" | "fly-volume" | "worker-instance" | "container" | "registry-login" | "temp-docker-config" | "process";
    what: string;
}

/** What one run may have created. */
export interface LeakScope {
    /** Machines must be destroying/destroyed, volumes destroyed. */
    flies?: FlyEmulator[];
    /** The worker must hold no instance for these users. */
    workers?: Array<{ worker: WorkerEmulator; userIds: string[] }>;
    /** Look for containers (Fly-emulator containers of the flies' apps, smoke containers of `images`). */
    docker?: boolean;
    /** Images whose smoke-test containers must be gone. */
    images?: string[];
    /** Registries (host:port) that must have no login in the user's docker config. */
    registries?: string[];
    /** Private TMPDIR / scratch dirs that must hold no docker config, env file or smoke work dir. */
    scratchDirs?: string[];
    /** Processes that must have exited. */
    pids?: number[];
}

const LIVE_OK = new Set(["destroying", "destroyed"]);
/** Names of the short-lived dirs our scripts and the Docker-mode emulator create (and must remove). */
const TEMP_DIR_PATTERN = /^(kiloclaw-docker-config\.|fly-emu-docker-config-|fly-emu-env-|kiloclaw-smoke\.)/;

function dockerLines(args: string[]): string[] {
    const r = spawnSync("docker", args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`docker ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean);
}

/** The user's docker config file (where `docker login` writes without a private DOCKER_CONFIG). */
export function userDockerConfigPath(): string {
    return path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), ".docker"), "config.json");
}

export function registryLogins(): string[] {
    const file = userDockerConfigPath();
    if (!fs.existsSync(file)) return [];
    const config = JSON.parse(fs.readFileSync(file, "utf8")) as { auths?: Record<string, unknown>; credHelpers?: Record<string, unknown> };
    return [...Object.keys(config.auths ?? {}), ...Object.keys(config.credHelpers ?? {})];
}

function isAlive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

/** Everything in `scope` that is still there. Call it before closing the emulators (close() removes containers itself). */
export async function findLeaks(scope: LeakScope): Promise<Leak[]> {
    const leaks: Leak[] = [];
    const apps = new Set<string>();
    for (const fly of scope.flies ?? []) {
        for (const m of fly.machines()) {
            if (!LIVE_OK.has(m.state)) leaks.push({ kind: "fly-machine", what: `${m.id} (${m.name}) is ${m.state}` });
        }
        for (const v of fly.volumes()) {
            if (v.state !== "destroyed") leaks.push({ kind: "fly-volume", what: `${v.id} (${v.name}) is ${v.state}` });
        }
        for (const app of fly.apps) apps.add(app);
    }
    for (const { worker, userIds } of scope.workers ?? []) {
        for (const userId of userIds) {
            const rec = worker.instance(userId);
            if (rec) leaks.push({ kind: "worker-instance", what: `${userId} is ${rec.status}` });
        }
    }
    if (scope.docker) {
        for (const line of dockerLines([
            "ps",
            "-a",
            "--filter",
            `label=${EMULATOR_LABEL}=1`,
            "--format",
            `{{.Names}}\t{{.Label "${EMULATOR_LABEL}.app"}}`,
        ])) {
            const [name, app] = line.split("\t");
            if (apps.has(app)) leaks.push({ kind: "container", what: `${name} (Fly emulator, app ${app})` });
        }
        const images = new Set(scope.images ?? []);
        for (const line of dockerLines(["ps", "-a", "--filter", `label=${SMOKE_LABEL}`, "--format", "{{.Names}}\t{{.Image}}"])) {
            const [name, image] = line.split("\t");
            if (images.has(image)) leaks.push({ kind: "container", what: `${name} (smoke test of ${image})` });
        }
    }
    const logins = registryLogins();
    for (const registry of scope.registries ?? []) {
        if (logins.some((l) => l.includes(registry))) leaks.push({ kind: "registry-login", what: `${registry} in ${userDockerConfigPath()}` });
    }
    for (const dir of scope.scratchDirs ?? []) {
        if (!fs.existsSync(dir)) continue;
        for (const entry of fs.readdirSync(dir)) {
            if (TEMP_DIR_PATTERN.test(entry)) leaks.push({ kind: "temp-docker-config", what: path.join(dir, entry) });
        }
    }
    for (const pid of scope.pids ?? []) if (isAlive(pid)) leaks.push({ kind: "process", what: `pid ${pid} still runs` });
    return leaks;
}

export function describeLeaks(leaks: Leak[]): string {
    return leaks.map((l) => `${l.kind}: ${l.what}`).join("; ");
}

// ---- the ledger ------------------------------------------------------------

export type Outcome = "completed" | "stopped-with-message" | "warned-with-message" | "FAILED";

export interface LedgerRow {
    fault: string;
    outcome: Outcome;
    leaked: number;
}

/** One row per injected fault, in the order they ran. */
export const ledger: LedgerRow[] = [];

/** The outcome so far and the leaks found so far of one fault; `fault()` turns it into a ledger row. */
export class FaultRun {
    outcome: Outcome = "FAILED";
    readonly leaks: Leak[] = [];

    /**
     * Records what `scope` still holds once the run (or a follow-up run) is over. A machine that is
     * `destroying` may still be removing its container: leaks get `settleMs` to go before they count.
     */
    async checkLeaks(scope: LeakScope, settleMs = 10_000): Promise<Leak[]> {
        const deadline = Date.now() + settleMs;
        let found = await findLeaks(scope);
        while (found.length > 0 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 200));
            found = await findLeaks(scope);
        }
        this.leaks.push(...found);
        return found;
    }
}

/**
 * Runs one fault: `body` drives the rollout, sets `run.outcome` once it has checked the message,
 * and calls `run.checkLeaks`. The row lands in the ledger whatever happens; any leak fails the test.
 */
export async function fault(name: string, body: (run: FaultRun) => Promise<void>): Promise<void> {
    const run = new FaultRun();
    try {
        await body(run);
    } catch (err) {
        run.outcome = "FAILED";
        throw err;
    } finally {
        ledger.push({ fault: name, outcome: run.outcome, leaked: run.leaks.length });
    }
    if (run.leaks.length > 0) throw new Error(`${name}: the run left ${describeLeaks(run.leaks)}`);
}

export function ledgerTable(rows: LedgerRow[] = ledger): string {
    const width = Math.max(5, ...rows.map((r) => r.fault.length));
    const line = (a: string, b: string, c: string) => `${a.padEnd(width)}  ${b.padEnd(20)}  ${c}`;
    const survived = rows.filter((r) => r.outcome !== "FAILED" && r.leaked === 0).length;
    const leaked = rows.reduce((n, r) => n + r.leaked, 0);
    return [
        line("fault", "outcome", "leaked"),
        line("-".repeat(width), "-".repeat(20), "------"),
        ...rows.map((r) => line(r.fault, r.outcome, String(r.leaked))),
        `faults injected: ${rows.length}, survived: ${survived}, resources leaked: ${leaked}`,
    ].join("\n");
}

// One root-level hook for the whole run (whichever fault file loads this module first registers it).
if (typeof after === "function") {
    after(function closingTable() {
        if (ledger.length === 0) return;
        console.log(`\n${ledgerTable()}\n`);
        const leaked = ledger.reduce((n, r) => n + r.leaked, 0);
        if (leaked > 0) throw new Error(`the fault suite leaked ${leaked} resource(s): see the table above`);
    });
}
