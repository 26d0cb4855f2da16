// Docker mode of the Fly emulator: each Fly machine is a real local container.
// Everything goes through the docker CLI with argument arrays (no shell), and
// no secret ever appears in argv: the registry password goes on stdin, machine
// env values go through a private --env-file that is deleted right after `docker run`.
import { spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

export interface RegistryAuth {
    server: string;
    username: string;
    password: string;
}

export interface DockerModeOptions {
    /** Credentials for `docker pull`; used through a throwaway DOCKER_CONFIG, never left behind. */
    registryAuth?: RegistryAuth;
    /** `docker run --network <network>`. */
    network?: string;
    /** Path probed on the mapped port to decide the machine is `started` (default "/"). */
    readyPath?: string;
    /** How often readiness is polled (default 200 ms). */
    pollMs?: number;
    /**
     * "always" (default): `docker pull` on a machine's first use of an image, like a Fly host.
     * "missing": use an image that is already local (e.g. just built) and pull only when absent.
     */
    pull?: "always" | "missing";
    /** Parent of the short-lived private dirs (login config, env file). Default os.tmpdir(). */
    scratchDir?: string;
    /**
     * Whose containers these are (a sandbox's instance id, a test run's id): every container carries it as
     * the INSTANCE_LABEL, so a restart sweeps only its own orphans and a test counts only its own.
     */
    instance?: string;
}

/** Every container the emulator creates carries this label. */
export const EMULATOR_LABEL = "kiloclaw-rollout.fly-emulator";
/** The emulator instance (DockerModeOptions.instance) a container belongs to. */
export const INSTANCE_LABEL = `${EMULATOR_LABEL}.instance`;

export interface DockerResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** Runs `docker <args>`; resolves with the exit code instead of throwing. */
export function docker(args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number } = {}): Promise<DockerResult> {
    return new Promise((resolve) => {
        const child = spawn("docker", args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        let timer: NodeJS.Timeout | undefined;
        if (opts.timeoutMs) timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", (err) => {
            if (timer) clearTimeout(timer);
            resolve({ code: -1, stdout, stderr: stderr + String(err) });
        });
        child.on("close", (code) => {
            if (timer) clearTimeout(timer);
            resolve({ code: code ?? -1, stdout, stderr });
        });
        // A child that exits without reading its stdin (or is killed) makes the write fail with EPIPE:
        // the exit code tells what happened, and an unhandled stream error would kill the whole emulator.
        child.stdin.on("error", () => undefined);
        child.stdin.end(opts.stdin ?? "");
    });
}

/** Throws a readable error when the docker CLI or daemon is not usable. */
export async function assertDockerRunning(): Promise<void> {
    const r = await docker(["info", "--format", "{{.ServerVersion}}"], { timeoutMs: 20_000 });
    if (r.code !== 0 || r.stdout.trim() === "") {
        throw new Error(
            "Docker is not running (docker info failed: " +
                (r.stderr.trim().split("\n").pop() ?? "no output") +
                "). Start it with bootstrap/start-docker.sh.",
        );
    }
}

export interface ContainerState {
    exists: boolean;
    running: boolean;
    exitCode: number;
}

/** Drives containers for the emulator; knows nothing about Fly states. */
export class DockerMachines {
    private readonly containers = new Set<string>();
    private readonly watchers = new Set<import("node:child_process").ChildProcess>();
    /** run()s not yet returned, by container name: remove() and removeAll() wait for them, so a destroy or close() cannot
     *  race a container into existence. */
    private readonly runsInFlight = new Map<string, Promise<void>>();
    /** Images this "host" pulled that were not in the engine before: removed by removeAll(). */
    private readonly pulledHere = new Set<string>();

    constructor(private readonly opts: DockerModeOptions = {}) {}

    private get scratchDir(): string {
        return this.opts.scratchDir ?? os.tmpdir();
    }

    /** Short-lived private dirs are named by the instance too: `fly-emu-[<instance>-]…`. */
    private get scratchPrefix(): string {
        return `fly-emu-${this.opts.instance ? `${this.opts.instance}-` : ""}`;
    }

    static containerName(machineId: string): string {
        return `fly-emu-${machineId}`;
    }

    /** Pulls `image`, logging in first (in a private DOCKER_CONFIG) when auth is configured. */
    async pull(image: string): Promise<{ digest?: string }> {
        const auth = this.opts.registryAuth;
        const local = this.opts.pull === "missing" && (await docker(["image", "inspect", image])).code === 0;
        let configDir: string | undefined;
        const env: NodeJS.ProcessEnv = { ...process.env };
        try {
            if (local) return { digest: await repoDigest(image) };
            if ((await docker(["image", "inspect", image])).code !== 0) this.pulledHere.add(image);
            if (auth) {
                configDir = await fs.mkdtemp(path.join(this.scratchDir, `${this.scratchPrefix}docker-config-`));
                env.DOCKER_CONFIG = configDir;
                const login = await docker(["login", auth.server, "--username", auth.username, "--password-stdin"], {
                    env,
                    stdin: auth.password,
                    timeoutMs: 60_000,
                });
                if (login.code !== 0) throw new Error(`docker login ${auth.server} failed: ${lastLine(login.stderr)}`);
            }
            const pulled = await docker(["pull", image], { env, timeoutMs: 15 * 60_000 });
            if (pulled.code !== 0) throw new Error(`docker pull ${image} failed: ${lastLine(pulled.stderr)}`);
        } finally {
            // The login lives only in this directory: removing it is the logout.
            if (configDir) await fs.rm(configDir, { recursive: true, force: true });
        }
        return { digest: await repoDigest(image) };
    }

    /** `docker run -d` the machine's container; env values go through a private env file. */
    run(machineId: string, app: string, image: string, env: Record<string, string>, internalPort: number): Promise<void> {
        const name = DockerMachines.containerName(machineId);
        const running = this.runContainer(name, app, image, env, internalPort);
        this.runsInFlight.set(name, running);
        return running.finally(() => {
            if (this.runsInFlight.get(name) === running) this.runsInFlight.delete(name);
        });
    }

    private async runContainer(name: string, app: string, image: string, env: Record<string, string>, internalPort: number): Promise<void> {
        const dir = await fs.mkdtemp(path.join(this.scratchDir, `${this.scratchPrefix}env-`));
        const envFile = path.join(dir, "env");
        try {
            const lines = Object.entries(env).map(([k, v]) => {
                if (/[\r\n]/.test(v)) throw new Error(`env ${k} contains a newline; docker env files cannot carry it`);
                return `${k}=${v}`;
            });
            await fs.writeFile(envFile, lines.join("\n") + "\n", { mode: 0o600 });
            const args = [
                "run",
                "-d",
                "--pull",
                "never",
                "--name",
                name,
                "--label",
                `${EMULATOR_LABEL}=1`,
                "--label",
                `${EMULATOR_LABEL}.app=${app}`,
                ...(this.opts.instance ? ["--label", `${INSTANCE_LABEL}=${this.opts.instance}`] : []),
                "-p",
                `127.0.0.1::${internalPort}`,
                "--env-file",
                envFile,
            ];
            if (this.opts.network) args.push("--network", this.opts.network);
            args.push(image);
            this.containers.add(name);
            const r = await docker(args, { timeoutMs: 120_000 });
            if (r.code !== 0) throw new Error(`docker run ${image} failed: ${lastLine(r.stderr)}`);
        } finally {
            await fs.rm(dir, { recursive: true, force: true });
        }
    }

    async hostPort(machineId: string, internalPort: number): Promise<number | undefined> {
        const r = await docker(["port", DockerMachines.containerName(machineId), `${internalPort}/tcp`]);
        const m = /:(\d+)\s*$/m.exec(r.stdout.split("\n")[0] ?? "");
        return r.code === 0 && m ? Number(m[1]) : undefined;
    }

    async state(machineId: string): Promise<ContainerState> {
        const r = await docker(["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", DockerMachines.containerName(machineId)]);
        if (r.code !== 0) return { exists: false, running: false, exitCode: -1 };
        const [running, code] = r.stdout.trim().split(" ");
        return { exists: true, running: running === "true", exitCode: Number(code) };
    }

    /**
     * Polls until the container answers HTTP on its mapped port ("ready"; without `probeHttp`,
     * running is enough), or stops running ("exited"), or `cancelled()` turns true ("cancelled").
     */
    async waitReady(
        machineId: string,
        internalPort: number,
        cancelled: () => boolean,
        probeHttp = true,
    ): Promise<{ outcome: "ready" | "exited" | "cancelled"; port?: number; exitCode?: number }> {
        const pollMs = this.opts.pollMs ?? 200;
        for (;;) {
            if (cancelled()) return { outcome: "cancelled" };
            const st = await this.state(machineId);
            if (!st.running) return { outcome: "exited", exitCode: st.exitCode };
            const port = await this.hostPort(machineId, internalPort);
            if (!probeHttp) return { outcome: "ready", port };
            if (port && (await answersHttp(port, this.opts.readyPath ?? "/"))) return { outcome: "ready", port };
            await new Promise((r) => setTimeout(r, pollMs));
        }
    }

    /** Calls `onExit` once when the container stops (via `docker wait`). Returns a canceller. */
    watchExit(machineId: string, onExit: (exitCode: number) => void): () => void {
        const child = spawn("docker", ["wait", DockerMachines.containerName(machineId)], { stdio: ["ignore", "pipe", "ignore"] });
        this.watchers.add(child);
        let out = "";
        let cancelled = false;
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.on("close", () => {
            this.watchers.delete(child);
            const code = Number(out.trim());
            if (!cancelled && out.trim() !== "" && Number.isFinite(code)) onExit(code);
        });
        child.on("error", () => this.watchers.delete(child));
        return () => {
            cancelled = true;
            child.kill();
        };
    }

    async stop(machineId: string, timeoutSeconds: number): Promise<void> {
        await docker(["stop", "-t", String(timeoutSeconds), DockerMachines.containerName(machineId)], { timeoutMs: (timeoutSeconds + 30) * 1000 });
    }

    async start(machineId: string): Promise<void> {
        const r = await docker(["start", DockerMachines.containerName(machineId)], { timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(`docker start failed: ${lastLine(r.stderr)}`);
    }

    /** Removes the machine's container; true once it is gone (a busy engine gets a few tries). */
    async remove(machineId: string): Promise<boolean> {
        const name = DockerMachines.containerName(machineId);
        // A destroy during the machine's create: its container is removed once `docker run` has made it.
        await this.runsInFlight.get(name)?.catch(() => undefined);
        for (let attempt = 0; attempt < 5; attempt++) {
            const rm = await docker(["rm", "-f", name], { timeoutMs: 60_000 });
            if (rm.code === 0 || /no such container/i.test(rm.stderr) || !(await this.state(machineId)).exists) {
                this.containers.delete(name);
                return true;
            }
            await new Promise((r) => setTimeout(r, 500));
        }
        return false;
    }

    /** Removes every container this instance created, stops its `docker wait` watchers, and removes the images it pulled. */
    async removeAll(): Promise<void> {
        await Promise.allSettled([...this.runsInFlight.values()]);
        for (const w of this.watchers) w.kill();
        this.watchers.clear();
        const names = [...this.containers];
        this.containers.clear();
        if (names.length > 0) await docker(["rm", "-f", ...names], { timeoutMs: 120_000 });
        // Like a Fly host's pulls, these were this emulator's own: another engine user's copy was never counted.
        const images = [...this.pulledHere];
        this.pulledHere.clear();
        if (images.length > 0) await docker(["rmi", ...images], { timeoutMs: 120_000 });
    }

    /**
     * Removes containers left by an earlier, crashed run of the same instance (DockerModeOptions.instance);
     * without an instance, nothing: another emulator's containers are not this one's to remove.
     */
    static async removeStrayContainers(instance: string): Promise<number> {
        if (!instance) return 0;
        const r = await docker(["ps", "-aq", "--filter", `label=${INSTANCE_LABEL}=${instance}`]);
        const ids = r.stdout
            .split("\n")
            .map((s) => s.trim())
            .filter(Boolean);
        if (ids.length > 0) await docker(["rm", "-f", ...ids], { timeoutMs: 120_000 });
        return ids.length;
    }
}

/** The registry digest docker recorded for `image` (none for images that were only built). */
async function repoDigest(image: string): Promise<string | undefined> {
    const inspect = await docker(["image", "inspect", "--format", "{{json .RepoDigests}}", image]);
    try {
        const digests = JSON.parse(inspect.stdout.trim() || "[]") as string[];
        return digests.map((d) => d.split("@")[1]).find(Boolean);
    } catch {
        return undefined;
    }
}

function lastLine(text: string): string {
    return text.trim().split("\n").pop() ?? "";
}

/** True when something answers HTTP (any status) on 127.0.0.1:port. */
function answersHttp(port: number, urlPath: string): Promise<boolean> {
    return new Promise((resolve) => {
        const req = http.get({ host: "127.0.0.1", port, path: urlPath, timeout: 2000 }, (res) => {
            res.resume();
            resolve(true);
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(false));
    });
}
