// `npm run sandbox` / `npm run sandbox:stop`: a whole KiloClaw rollout target on
// 127.0.0.1 — a registry with Fly-style auth, the Fly Machines emulator running
// machines as Docker containers, and the worker emulator — plus a kiloclaw/
// checkout (the offline fixture) for `pulumi up -s sandbox`.
import { execFileSync, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

const REPO = path.join(__dirname, "..");
const DIR = path.join(REPO, ".sandbox");
const STATE = path.join(DIR, "state.json");
const KILOCLAW = path.join(DIR, "cloud", "kiloclaw");
const REGISTRY_PORT = Number(process.env.SANDBOX_REGISTRY_PORT ?? 18797);
const FLY_PORT = Number(process.env.SANDBOX_FLY_PORT ?? 18796);
const WORKER_PORT = Number(process.env.SANDBOX_WORKER_PORT ?? 18795);
const REGISTRY_SERVER = `127.0.0.1:${REGISTRY_PORT}`;
const REGISTRY_APP = "kiloclaw-sandbox";

function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

function running(): { pid: number; flyApiUrl: string; workerUrl: string } | undefined {
    if (!fs.existsSync(STATE)) return undefined;
    const state = JSON.parse(fs.readFileSync(STATE, "utf8"));
    return alive(state.pid) ? state : undefined;
}

function scriptFile(name: string): string {
    return fs.existsSync(path.join(__dirname, name)) ? path.join(__dirname, name) : path.join(REPO, "bootstrap", name);
}

function sh(script: string, args: string[] = [], env: Record<string, string> = {}): void {
    execFileSync("bash", [scriptFile(script), ...args], { stdio: "inherit", env: { ...process.env, ...env } });
}

/** The sandbox's own kiloclaw/ checkout: the offline fixture and a .dev.vars wired to the emulators. */
function writeCheckout(token: string, internalKey: string): void {
    if (!fs.existsSync(path.join(KILOCLAW, "Dockerfile"))) {
        fs.mkdirSync(KILOCLAW, { recursive: true });
        fs.cpSync(path.join(__dirname, "fixtures", "kiloclaw"), KILOCLAW, { recursive: true });
    }
    const devVars = path.join(KILOCLAW, ".dev.vars");
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

function readToken(): { token: string; internalKey: string } {
    const devVars = path.join(KILOCLAW, ".dev.vars");
    if (fs.existsSync(devVars)) {
        const text = fs.readFileSync(devVars, "utf8");
        const get = (k: string) => new RegExp(`^${k}=(.*)$`, "m").exec(text)?.[1] ?? "";
        if (get("FLY_API_TOKEN") && get("INTERNAL_API_SECRET")) return { token: get("FLY_API_TOKEN"), internalKey: get("INTERNAL_API_SECRET") };
    }
    return { token: `sandbox-${crypto.randomBytes(18).toString("hex")}`, internalKey: crypto.randomBytes(24).toString("hex") };
}

async function start(): Promise<void> {
    const existing = running();
    if (existing) {
        console.log(`The sandbox is already running (pid ${existing.pid}); \`npm run sandbox:stop\` stops it.`);
        printUrls(existing);
        return;
    }
    fs.mkdirSync(DIR, { recursive: true });
    sh("start-docker.sh");
    const { token, internalKey } = readToken();
    writeCheckout(token, internalKey);
    sh("registry.sh", ["start"], { REGISTRY_PORT: String(REGISTRY_PORT), REGISTRY_TOKEN: token, REGISTRY_STATE_DIR: path.join(DIR, "registry") });
    const log = fs.openSync(path.join(DIR, "daemon.log"), "a");
    const daemon = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "daemon.ts")], {
        cwd: REPO,
        detached: true,
        stdio: ["ignore", log, log],
        env: {
            ...process.env,
            SANDBOX_DAEMON_CONFIG: JSON.stringify({
                stateFile: STATE,
                devVarsPath: path.join(KILOCLAW, ".dev.vars"),
                registryServer: REGISTRY_SERVER,
                flyPort: FLY_PORT,
                workerPort: WORKER_PORT,
                token,
            }),
        },
    });
    daemon.unref();
    const deadline = Date.now() + 60_000;
    while (!running()) {
        if (daemon.exitCode !== null || Date.now() > deadline) {
            throw new Error(`The sandbox daemon did not start: see ${path.join(DIR, "daemon.log")}.`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    printUrls(running()!);
}

function printUrls(state: { flyApiUrl: string; workerUrl: string }): void {
    console.log(
        [
            `registry:   http://${REGISTRY_SERVER}  (user x, password = FLY_API_TOKEN in .sandbox/cloud/kiloclaw/.dev.vars)`,
            `Fly API:    ${state.flyApiUrl}`,
            `worker:     ${state.workerUrl}`,
            `kiloclaw:   ${KILOCLAW}`,
            "",
            "Rehearse a rollout:  pulumi stack select sandbox --create && pulumi up -s sandbox",
            "(Pulumi.sandbox.yaml points every setting at these; secrets default to the sandbox .dev.vars.)",
        ].join("\n"),
    );
}

async function stop(): Promise<void> {
    const state = running();
    if (state) {
        process.kill(state.pid, "SIGTERM");
        const deadline = Date.now() + 60_000;
        while (alive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    sh("registry.sh", ["stop"], { REGISTRY_PORT: String(REGISTRY_PORT), REGISTRY_STATE_DIR: path.join(DIR, "registry") });
    fs.rmSync(STATE, { force: true });
    console.log("The sandbox is stopped (its registry data and kiloclaw/ checkout stay in .sandbox/).");
}

const verb = process.argv[2];
(verb === "start" ? start() : verb === "stop" ? stop() : Promise.reject(new Error("usage: sandbox.ts start|stop"))).catch((err) => {
    console.error(`sandbox: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
});
