// `npm run sandbox` / `npm run sandbox:stop`: a whole KiloClaw rollout target on
// 127.0.0.1 — a registry with Fly-style auth, the Fly Machines emulator running
// machines as Docker containers, and the worker emulator — plus a kiloclaw/
// checkout (the offline fixture). `npm run rehearse` (rehearse.ts) calls
// startSandbox/stopSandbox too.
import { execFileSync, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { scriptPath } from "./docker";
import { materializeCheckout } from "./fixtures/checkout";

const REPO = path.join(__dirname, "..");
export const REGISTRY_APP = "kiloclaw-sandbox";

/** Where a sandbox keeps its state: .sandbox/ in the repository, or SANDBOX_DIR (tests use a temp dir). */
export function sandboxDir(): string {
    return path.resolve(process.env.SANDBOX_DIR ?? path.join(REPO, ".sandbox"));
}

interface Ports {
    registry: number;
    fly: number;
    worker: number;
}

/** host:port of this sandbox's registry. */
export function sandboxRegistryServer(): string {
    return `127.0.0.1:${ports().registry}`;
}

function ports(): Ports {
    return {
        registry: Number(process.env.SANDBOX_REGISTRY_PORT ?? 18797),
        fly: Number(process.env.SANDBOX_FLY_PORT ?? 18796),
        worker: Number(process.env.SANDBOX_WORKER_PORT ?? 18795),
    };
}

/** A running sandbox, as its daemon recorded it in <sandboxDir>/state.json. */
export interface SandboxState {
    pid: number;
    flyApiUrl: string;
    workerUrl: string;
    /** host:port of the registry (user x, password = FLY_API_TOKEN in .dev.vars). */
    registryServer: string;
    registryApp: string;
    /** The sandbox's kiloclaw/ checkout (Dockerfile, .dev.vars). */
    kiloclawDir: string;
    /** The sandbox's instance id (sandboxInstance()): in its stack's identity and on its machine containers. */
    instance: string;
}

const kiloclawDir = () => path.join(sandboxDir(), "cloud", "kiloclaw");
const stateFile = () => path.join(sandboxDir(), "state.json");
const registryStateDir = () => path.join(sandboxDir(), "registry");

/**
 * This sandbox's instance id, made once per sandbox directory: two clones run stacks of the same name
 * (kiloclaw-rollout.sandbox), so their images, contexts and machine containers carry this as well.
 */
export function sandboxInstance(): string {
    const file = path.join(sandboxDir(), "instance-id");
    const existing = fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : "";
    if (/^[a-z0-9]{1,32}$/.test(existing)) return existing;
    const id = crypto.randomBytes(5).toString("hex");
    fs.mkdirSync(sandboxDir(), { recursive: true });
    fs.writeFileSync(file, `${id}\n`);
    return id;
}

function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

/** The sandbox that runs from sandboxDir(), if any. */
export function runningSandbox(): SandboxState | undefined {
    if (!fs.existsSync(stateFile())) return undefined;
    const state = JSON.parse(fs.readFileSync(stateFile(), "utf8")) as SandboxState;
    // A sandbox started by an older version recorded only pid and URLs.
    const defaults = { registryServer: `127.0.0.1:${ports().registry}`, registryApp: REGISTRY_APP, kiloclawDir: kiloclawDir(), instance: "" };
    return alive(state.pid) ? { ...defaults, ...state } : undefined;
}

/** Whether something answers HTTP (any status) at `url` within a few seconds. */
async function answers(url: string): Promise<boolean> {
    try {
        await fetch(url, { signal: AbortSignal.timeout(5000) });
        return true;
    } catch {
        return false;
    }
}

/** The services of a running sandbox that do not answer (empty when all do): its pid alone says little. */
export async function silentServices(state: SandboxState): Promise<string[]> {
    const checks: Array<[string, string]> = [
        ["Fly API", state.flyApiUrl],
        ["worker", state.workerUrl],
        ["registry", `http://${state.registryServer}/v2/`],
    ];
    const results = await Promise.all(checks.map(async ([name, url]) => ((await answers(url)) ? undefined : `${name} (${url})`)));
    return results.filter((r): r is string => r !== undefined);
}

/** The sandbox that runs from sandboxDir() with every service answering; a half-dead one is stopped (and restarted by startSandbox). */
async function healthySandbox(): Promise<SandboxState | undefined> {
    const state = runningSandbox();
    if (!state) return undefined;
    const silent = await silentServices(state);
    if (silent.length === 0) return state;
    console.error(`sandbox: pid ${state.pid} runs but ${silent.join(", ")} does not answer: restarting the sandbox.`);
    await stopSandbox();
    return undefined;
}

function sh(script: string, args: string[] = [], env: Record<string, string> = {}): void {
    execFileSync("bash", [scriptPath(script), ...args], { stdio: "inherit", env: { ...process.env, ...env } });
}

/** The sandbox's own kiloclaw/ checkout: the offline fixture and a .dev.vars wired to the emulators. */
function writeCheckout(token: string, internalKey: string): void {
    const dir = kiloclawDir();
    if (!fs.existsSync(path.join(dir, "Dockerfile"))) materializeCheckout(dir);
    const devVars = path.join(dir, ".dev.vars");
    if (!fs.existsSync(devVars)) {
        fs.writeFileSync(
            devVars,
            [
                "# Written by `npm run sandbox`: the local worker emulator reads it like wrangler dev.",
                `INTERNAL_API_SECRET=${internalKey}`,
                `GATEWAY_TOKEN_SECRET=${crypto.randomBytes(16).toString("hex")}`,
                `FLY_API_TOKEN=${token}`,
                "WORKER_ENV=development",
                `FLY_REGISTRY_APP=${REGISTRY_APP}`,
                `FLY_APP_NAME=${REGISTRY_APP}`,
                "FLY_REGION=iad",
                "",
            ].join("\n"),
            { mode: 0o600 },
        );
    }
}

/** The sandbox's Fly token (also the registry password) and worker key: from its .dev.vars, or new ones. */
export function sandboxSecrets(): { token: string; internalKey: string } {
    const devVars = path.join(kiloclawDir(), ".dev.vars");
    if (fs.existsSync(devVars)) {
        const text = fs.readFileSync(devVars, "utf8");
        const get = (k: string) => new RegExp(`^${k}=(.*)$`, "m").exec(text)?.[1] ?? "";
        if (get("FLY_API_TOKEN") && get("INTERNAL_API_SECRET")) return { token: get("FLY_API_TOKEN"), internalKey: get("INTERNAL_API_SECRET") };
    }
    return { token: `sandbox-${crypto.randomBytes(18).toString("hex")}`, internalKey: crypto.randomBytes(24).toString("hex") };
}

function registryEnv(): Record<string, string> {
    return { REGISTRY_PORT: String(ports().registry), REGISTRY_STATE_DIR: registryStateDir() };
}

/** Starts Docker (if needed), the registry and the emulators; idempotent. */
export async function startSandbox(): Promise<SandboxState> {
    const existing = await healthySandbox();
    if (existing) return existing;
    const { registry, fly, worker } = ports();
    fs.mkdirSync(sandboxDir(), { recursive: true });
    sh("start-docker.sh");
    const { token, internalKey } = sandboxSecrets();
    writeCheckout(token, internalKey);
    sh("registry.sh", ["start"], { ...registryEnv(), REGISTRY_TOKEN: token });
    const log = fs.openSync(path.join(sandboxDir(), "daemon.log"), "a");
    const daemon = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "daemon.ts")], {
        cwd: REPO,
        detached: true,
        stdio: ["ignore", log, log],
        env: {
            ...process.env,
            SANDBOX_DAEMON_CONFIG: JSON.stringify({
                stateFile: stateFile(),
                devVarsPath: path.join(kiloclawDir(), ".dev.vars"),
                registryServer: `127.0.0.1:${registry}`,
                registryApp: REGISTRY_APP,
                kiloclawDir: kiloclawDir(),
                flyPort: fly,
                workerPort: worker,
                token,
                instance: sandboxInstance(),
            }),
        },
    });
    fs.closeSync(log);
    daemon.unref();
    const deadline = Date.now() + 60_000;
    for (;;) {
        const state = runningSandbox();
        if (state) return state;
        if (daemon.exitCode !== null || Date.now() > deadline) {
            throw new Error(`The sandbox daemon did not start: see ${path.join(sandboxDir(), "daemon.log")}.`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
}

/** Stops the emulators (removing their containers) and the registry; .sandbox/ data stays. */
export async function stopSandbox(): Promise<void> {
    const state = runningSandbox();
    if (state) {
        process.kill(state.pid, "SIGTERM");
        const deadline = Date.now() + 60_000;
        while (alive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        // A daemon that cannot stop cleanly is killed: the next start sweeps the containers it left.
        if (alive(state.pid)) process.kill(state.pid, "SIGKILL");
    }
    sh("registry.sh", ["stop"], registryEnv());
    fs.rmSync(stateFile(), { force: true });
}

export function describeSandbox(state: SandboxState): string {
    return [
        `registry:   http://${state.registryServer}  (user x, password = FLY_API_TOKEN in ${path.join(state.kiloclawDir, ".dev.vars")})`,
        `Fly API:    ${state.flyApiUrl}`,
        `worker:     ${state.workerUrl}`,
        `kiloclaw:   ${state.kiloclawDir}`,
        `instance:   ${state.instance} (on its images, contexts and machine containers)`,
    ].join("\n");
}

async function main(verb: string | undefined): Promise<void> {
    if (verb === "start") {
        const wasRunning = await healthySandbox();
        const state = await startSandbox();
        if (wasRunning) console.log(`The sandbox is already running (pid ${state.pid}); \`npm run sandbox:stop\` stops it.`);
        console.log(`${describeSandbox(state)}\n\nRehearse a rollout on it:  npm run rehearse`);
    } else if (verb === "stop") {
        await stopSandbox();
        console.log(`The sandbox is stopped (its registry data and kiloclaw/ checkout stay in ${sandboxDir()}).`);
    } else {
        throw new Error("usage: sandbox/cli.ts start|stop");
    }
}

if (require.main === module) {
    main(process.argv[2]).catch((err) => {
        console.error(`sandbox: ${err instanceof Error ? err.message : err}`);
        process.exit(1);
    });
}
