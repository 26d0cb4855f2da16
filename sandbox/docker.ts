// Helpers for tests that drive the real Docker engine and our shell scripts.
// Docker must be running (bootstrap/start-docker.sh); when it is not, tests fail
// loudly instead of skipping, so a broken CI setup can never pass as "green".
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(__dirname, "..");
export const SCRIPTS_DIR = path.join(REPO_ROOT, "scripts");
export const BOOTSTRAP_DIR = path.join(REPO_ROOT, "bootstrap");
export const SANDBOX_DIR = path.join(REPO_ROOT, "sandbox");
export const FIXTURES_DIR = path.join(REPO_ROOT, "sandbox", "fixtures");
/** Labels the image validation (smoke-test.sh) puts on every container it starts, and on those of one run. */
export { SMOKE_LABEL, SMOKE_RUN_KEY } from "../validation/validate";

export interface RunResult {
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
}

export interface RunOptions {
    /** Added to (and overriding) this process's environment. */
    env?: Record<string, string | undefined>;
    /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
    input?: string;
    cwd?: string;
}

export interface RunningProcess {
    child: ChildProcess;
    /** Everything printed so far (grows while the process runs). */
    output: { stdout: string; stderr: string };
    done: Promise<RunResult>;
}

/** Starts a process and collects its output; `done` settles when it exits. */
export function startProcess(command: string, args: string[], opts: RunOptions = {}): RunningProcess {
    const child = spawn(command, args, {
        cwd: opts.cwd ?? REPO_ROOT,
        env: { ...process.env, ...opts.env },
        stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    const output = { stdout: "", stderr: "" };
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output.stdout += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk));
    if (opts.input !== undefined) {
        child.stdin!.end(opts.input);
    }
    const done = new Promise<RunResult>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", (code, signal) => resolve({ code, signal, ...output }));
    });
    return { child, output, done };
}

export function run(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return startProcess(command, args, opts).done;
}

/** Runs scripts/<name> with bash, the way the Pulumi components do. */
/** A project shell script by file name: the rollout's (scripts/), the machine bootstrap's or the sandbox's. */
export function scriptPath(name: string): string {
    const dir = [SCRIPTS_DIR, BOOTSTRAP_DIR, SANDBOX_DIR].find((d) => fs.existsSync(path.join(d, name)));
    if (!dir) throw new Error(`no script ${name} in scripts/, bootstrap/ or sandbox/`);
    return path.join(dir, name);
}

export function runScript(name: string, args: string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    return run("bash", [scriptPath(name), ...args], opts);
}

export function startScript(name: string, args: string[] = [], opts: RunOptions = {}): RunningProcess {
    return startProcess("bash", [scriptPath(name), ...args], opts);
}

/** Throws (never skips) when no Docker engine answers. */
export function assertDockerRunning(): void {
    const info = spawnSync("docker", ["info"], { stdio: "ignore" });
    if (info.error || info.status !== 0) {
        throw new Error("Docker is not running: run bootstrap/start-docker.sh");
    }
}

async function mustSucceed(what: string, result: Promise<RunResult>): Promise<RunResult> {
    const r = await result;
    if (r.code !== 0) {
        throw new Error(`${what} failed (exit ${r.code ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
    }
    return r;
}

/** Builds a fixture directory the way KiloclawImage does (linux/amd64), with optional build args. */
export async function dockerBuild(contextDir: string, tag: string, buildArgs: Record<string, string> = {}): Promise<void> {
    const args = Object.entries(buildArgs).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
    await mustSucceed(`docker build ${contextDir}`, run("docker", ["build", "--platform", "linux/amd64", ...args, "-t", tag, contextDir]));
}

/** The fixture image's variants: one Dockerfile per shape, each fault a build arg. */
export type FixtureVariant = "good" | "exits" | "no-gateway" | "wrong-version" | "no-clawd" | "doctor-crashes" | "bad-config";

/** The shapes of the real image: `feb26` (sandbox/fixtures/kiloclaw: start-openclaw.sh as CMD, openclaw 2026.2.9, Node
 *  22.13.1) and `newest` (sandbox/fixtures/kiloclaw-newest, 2026-03-27: the controller as CMD, no start script,
 *  container/TOOLS.md, openclaw 2026.3.13, Node 22.22.1). */
export type FixtureShape = "feb26" | "newest";
export const FIXTURE_SHAPES: Record<FixtureShape, { dir: string; openclaw: string; node: string }> = {
    feb26: { dir: path.join(FIXTURES_DIR, "kiloclaw"), openclaw: "2026.2.9", node: "22.13.1" },
    newest: { dir: path.join(FIXTURES_DIR, "kiloclaw-newest"), openclaw: "2026.3.13", node: "22.22.1" },
};

export interface FixtureOptions {
    /** The gateway boots after this many seconds (the Dockerfile's default when unset). */
    bootSeconds?: number;
    shape?: FixtureShape;
    /** How `openclaw doctor` behaves (sandbox/fixtures/cost-model, layered on the shape): hangs ignoring SIGTERM, says
     *  "Config invalid" and exits 0, or (config-changes) the entrypoint rewrites the config once doctor has read it. */
    doctor?: "ok" | "hangs" | "config-invalid" | "config-changes";
    /** What the boot and doctor cost in CPU seconds (the cost model): the cache both fill (whoever gets to a part of it
     *  first pays), then the rest of the boot and of doctor. */
    cost?: { cacheCpuSeconds: number; bootCpuSeconds: number; doctorCpuSeconds: number };
}

/** Builds a fixture shape as `variant`; with `doctor` or `cost`, the cost model layer goes on top (same tag). */
export async function buildFixture(tag: string, variant: FixtureVariant = "good", opts: FixtureOptions = {}): Promise<void> {
    const buildArgs: Record<string, string> = { FIXTURE_FAULT: variant === "good" ? "" : variant };
    if (opts.bootSeconds !== undefined) buildArgs.GATEWAY_BOOT_SECONDS = String(opts.bootSeconds);
    await dockerBuild(FIXTURE_SHAPES[opts.shape ?? "feb26"].dir, tag, buildArgs);
    if (opts.doctor === undefined && opts.cost === undefined) return;
    await dockerBuild(path.join(FIXTURES_DIR, "cost-model"), tag, {
        FIXTURE_IMAGE: tag,
        DOCTOR: opts.doctor ?? "ok",
        CACHE_CPU_SECONDS: String(opts.cost?.cacheCpuSeconds ?? 0),
        BOOT_CPU_SECONDS: String(opts.cost?.bootCpuSeconds ?? 0),
        DOCTOR_CPU_SECONDS: String(opts.cost?.doctorCpuSeconds ?? 0),
    });
}

/** Removes images by reference; missing ones are fine. */
export async function removeImages(refs: string[]): Promise<void> {
    if (refs.length > 0) {
        await run("docker", ["rmi", "-f", ...refs]);
    }
}

/** Names of containers (running or not) carrying a label, optionally only from some images. */
export async function containersWithLabel(label: string, images?: string[]): Promise<string[]> {
    const r = await mustSucceed("docker ps", run("docker", ["ps", "-a", "--filter", `label=${label}`, "--format", "{{.Names}}\t{{.Image}}"]));
    return r.stdout
        .split("\n")
        .filter((line) => line.trim() !== "")
        .map((line) => line.split("\t"))
        .filter(([, image]) => images === undefined || images.includes(image))
        .map(([name]) => name);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const port = (server.address() as net.AddressInfo).port;
            server.close(() => resolve(port));
        });
    });
}

export interface LocalRegistry {
    port: number;
    /** host:port, what `docker login` and image references use. */
    server: string;
    /** Password of user `x`. */
    token: string;
    stateDir: string;
    /** GET/HEAD on the registry API with basic auth. */
    request(pathAndQuery: string, init?: { method?: string; headers?: Record<string, string> }): Promise<Response>;
    stop(): Promise<void>;
}

/** Starts sandbox/registry.sh on a free port, random token, temporary state dir. */
export async function startRegistry(): Promise<LocalRegistry> {
    const port = await freePort();
    const token = randomBytes(18).toString("base64url");
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-registry-"));
    const env = { REGISTRY_PORT: String(port), REGISTRY_TOKEN: token, REGISTRY_STATE_DIR: stateDir };
    await mustSucceed("sandbox/registry.sh start", runScript("registry.sh", ["start"], { env }));
    const authorization = "Basic " + Buffer.from(`x:${token}`).toString("base64");
    return {
        port,
        server: `127.0.0.1:${port}`,
        token,
        stateDir,
        request: (pathAndQuery, init = {}) =>
            fetch(`http://127.0.0.1:${port}${pathAndQuery}`, {
                method: init.method ?? "GET",
                headers: { authorization, ...init.headers },
            }),
        async stop() {
            await runScript("registry.sh", ["stop"], { env });
            fs.rmSync(stateDir, { recursive: true, force: true });
        },
    };
}
