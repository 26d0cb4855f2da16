// The runbook's Step 2 (quick validation + "Verify components" + image sizes) for
// a local kiloclaw image, at the speed of the image itself: one long-running
// container for startup → gateway → runtime config, and the short `docker run
// --rm` checks beside it. Nothing sleeps a fixed time: `docker wait` reports an
// exit at once, the gateway passes on its first 2xx. The containers get only the
// runbook's placeholders (test-key, test-token), never a real secret.
// Every wait has a deadline: at a deadline, a failed check or an interrupt the
// containers are removed by name (`docker rm -f`, they run under an init), and
// nothing waits for a docker client that was told to stop.
import { createHash, randomBytes } from "node:crypto";
import * as http from "node:http";
import * as os from "node:os";
import { docker, DockerResult, firstFileInTar, tail } from "./docker";
import { nextSteps, ToolsInImage } from "./hints";

/** Label on every container a validation starts (a later run sweeps up after a SIGKILLed one). */
export const SMOKE_LABEL = "kiloclaw-rollout.smoke=1";
/** Which run (host:pid) owns a container. */
export const SMOKE_OWNER_KEY = "kiloclaw-rollout.smoke.owner";
/** The run's own identity (its container name prefix): cleanup and tests look for this label only. */
export const SMOKE_RUN_KEY = "kiloclaw-rollout.smoke.run";
export const GATEWAY_PORT = 18789;
export const RUNTIME_CONFIG_PATH = "/root/.openclaw/openclaw.json";
export const IMAGE_DIRECTORIES = ["/root/.openclaw", "/root/clawd"];
/** The runbook's placeholders: the only env any validation container gets. */
export const PLACEHOLDER_ENV = { KILOCODE_API_KEY: "test-key", OPENCLAW_GATEWAY_TOKEN: "test-token" };
/** How much longer everything takes when a linux/amd64 image runs emulated (Apple Silicon). */
export const EMULATION_DEADLINE_FACTOR = 3;

export const CHECK_NAMES = [
    "openclaw version",
    "node version",
    "directories",
    "openclaw doctor",
    "startup",
    "gateway",
    "runtime config",
    "image size",
] as const;
export type CheckName = (typeof CHECK_NAMES)[number];

export interface CheckResult {
    name: CheckName;
    status: "passed" | "failed" | "skipped";
    /** When the check finished, in ms after the validation started. */
    atMs: number;
    summary: string;
    /** Lines shown under the check: doctor's warnings, a failed container's log tail. */
    details: string[];
    /** On failure: the runbook's debugging step, with commands that exist in the image. */
    nextSteps: string[];
}

export interface ValidateImageOptions {
    image: string;
    /** What `openclaw --version` must print: the Dockerfile's pin. */
    expectedOpenclawVersion: string;
    /** What `node --version` must print (with or without the leading v); unchecked when absent. */
    expectedNodeVersion?: string;
    /** The image to compare sizes with; default: the newest other tag of the same repository in the engine. */
    previousImage?: string;
    /** Deadline of each short `docker run --rm` check (both deadlines are multiplied under emulation). */
    startupDeadlineSeconds?: number;
    /** Deadline of the gateway's first 2xx after `docker run`. */
    gatewayDeadlineSeconds?: number;
    /** Deadline of `openclaw doctor` (default: the short checks'; the real one takes ~4-6 s once the gateway booted);
     *  in `beside` mode counted from the gateway's answer, since until then doctor yields the CPU to the boot. */
    doctorDeadlineSeconds?: number;
    /** How `openclaw doctor` runs (DOCTOR_MODE): `beside` the boot in the gateway's container at the lowest priority,
     *  from when the entrypoint has written the config (default); `exec` there once the gateway answers; `fresh` in its
     *  own container from the start, at the lowest CPU weight. BENCHMARKS §1 measures the three. */
    doctorMode?: DoctorMode;
    /** The run's container name prefix (and SMOKE_RUN_KEY label); random by default. */
    runId?: string;
    /** Aborting stops every check and removes the containers before validateImage settles. */
    signal?: AbortSignal;
    /** Called as each check finishes (progress for a terminal). */
    onCheck?: (check: CheckResult) => void;
}

export type DoctorMode = "beside" | "exec" | "fresh";
export const DOCTOR_MODES: readonly DoctorMode[] = ["beside", "exec", "fresh"];
/** The mode when none is given: the one nearest the gateway's boot in BENCHMARKS §1 (and on the real software). */
export const DEFAULT_DOCTOR_MODE: DoctorMode = "beside";

/** A doctor run that finished: what the runtime config check needs, and (beside) the config it read. */
interface DoctorRan {
    configInvalid: string[];
    /** md5 of the config doctor read ("unknown" when the image has no md5sum); beside mode only. */
    readConfig?: string;
    summary: string;
    warnings: string[];
}

/** The line the beside doctor's shell prints before doctor starts: the checksum of the config doctor reads. */
const CONFIG_READ_MARKER = "kiloclaw-doctor-config";
/** Doctor beside the boot, in the gateway's container: at the lowest priority (renice: the boot goes first), once
 *  the entrypoint's config has stopped changing (it may write it in steps), saying which config it read, so that one
 *  the entrypoint changed afterwards is noticed. The real image and the fixtures have sh, renice and md5sum. */
const BESIDE_DOCTOR_SCRIPT = [
    "renice -n 19 -p $$ >/dev/null 2>&1",
    `if ! command -v md5sum >/dev/null 2>&1; then until [ -e "$1" ]; do sleep 0.5; done; echo "${CONFIG_READ_MARKER} unknown"; exec openclaw doctor; fi`,
    'prev=; until cur="$(md5sum <"$1" 2>/dev/null)" && [ "$cur" = "$prev" ]; do prev="$cur"; sleep 0.5; done',
    `echo "${CONFIG_READ_MARKER} \${cur%% *}"`,
    "exec openclaw doctor",
].join("\n");

/** The longest a whole validation can take with these (already multiplied) deadlines: the gateway's deadline, then
 *  doctor in its container (one short-check deadline), plus setup and cleanup. scripts/smoke-test.sh enforces the same
 *  sum (with the emulation factor, which it cannot know) as a backstop with `timeout`. */
export function overallDeadlineSeconds(startup: number, gateway: number, doctor = startup): number {
    return gateway + Math.max(startup, doctor) + OVERALL_SLACK_SECONDS;
}
/** Setup (docker info, image inspect), reading the config, and cleanup, beside the deadlines. */
export const OVERALL_SLACK_SECONDS = 30;

export interface EngineFacts {
    /** `docker info` Architecture, e.g. x86_64 or aarch64. */
    architecture: string;
    imagePlatform: string;
    emulated: boolean;
    deadlineFactor: number;
    startupDeadlineSeconds: number;
    gatewayDeadlineSeconds: number;
}

export interface ValidationReport {
    image: string;
    imageId: string;
    expectedOpenclawVersion: string;
    expectedNodeVersion?: string;
    passed: boolean;
    totalMs: number;
    checks: CheckResult[];
    engine: EngineFacts;
    imageSizeBytes: number;
    previousImage?: string;
    previousImageSizeBytes?: number;
    imageSizeChangeBytes?: number;
    gatewayUrl?: string;
    runtimeConfig?: { gatewayPort?: unknown; modelBaseUrl?: unknown };
    /** Containers of earlier, killed runs that this run removed. */
    sweptContainers: string[];
    /** Why the run stopped before every check finished (a failed check, a deadline, an interrupt); undefined when all ran. */
    stopped?: string;
    /** The run's identity: its containers' name prefix and SMOKE_RUN_KEY label. */
    runId: string;
    doctorMode: DoctorMode;
}

/** A problem with the setup rather than the image (Docker down, image not built): exit 2, not a failed check. */
export class ValidationSetupError extends Error {}

/** Docker's names for CPU architectures, reduced to the OCI ones. */
export function normalizeArchitecture(arch: string): string {
    const a = arch.trim().toLowerCase();
    if (a === "x86_64" || a === "x86-64" || a === "amd64") return "amd64";
    if (a === "aarch64" || a === "arm64" || a === "arm64/v8") return "arm64";
    return a;
}

/** Deadlines for this engine: an image for another CPU runs emulated and gets EMULATION_DEADLINE_FACTOR times longer. */
export function engineFacts(engineArch: string, imageOs: string, imageArch: string, startup: number, gateway: number): EngineFacts {
    const emulated = normalizeArchitecture(engineArch) !== normalizeArchitecture(imageArch);
    const factor = emulated ? EMULATION_DEADLINE_FACTOR : 1;
    return {
        architecture: engineArch,
        imagePlatform: `${imageOs}/${normalizeArchitecture(imageArch)}`,
        emulated,
        deadlineFactor: factor,
        startupDeadlineSeconds: startup * factor,
        gatewayDeadlineSeconds: gateway * factor,
    };
}

/** The placeholder credentials replaced by ***, for text read from inside a container. */
export function redact(text: string): string {
    return Object.values(PLACEHOLDER_ENV).reduce((t, value) => t.split(value).join("***"), text);
}

/** "v22.13.1" and "22.13.1" are the same Node version. */
export function sameNodeVersion(printed: string, expected: string): boolean {
    return printed.trim().replace(/^v/, "") === expected.trim().replace(/^v/, "");
}

/** Box drawing and step markers that `openclaw doctor` (clack prompts) frames its notes with. */
const FRAME_START = /^[\s│┃|◇◆◈●○◒◐◓◑├└┌╭╰┬┴─━]*/;
const FRAME_END = /[\s│┃|╮╯╭╰┤─━]*$/;
// eslint-disable-next-line no-control-regex -- colour codes start with ESC
const ANSI_COLOUR = /\x1b\[[0-9;]*m/g;
const ITEM_MARKER = /^(?:[⚠✖✗✘✔✓•*·-]|\d+[.)])\s/;

/** Doctor's output as whole items: the frame stripped, and a line wrapped at the terminal width (more indented than
 *  its item, no marker of its own) joined to the item it continues. */
export function doctorItems(output: string): string[] {
    const items: Array<{ indent: number; text: string }> = [];
    for (const raw of output.split(/\r?\n/)) {
        const framed = raw.replace(ANSI_COLOUR, "");
        const indent = (FRAME_START.exec(framed)?.[0] ?? "").length;
        const text = framed.replace(FRAME_START, "").replace(FRAME_END, "");
        if (text === "" || /^[─━]+$/.test(text)) {
            items.push({ indent: Infinity, text: "" }); // a blank line ends an item
            continue;
        }
        const last = items[items.length - 1];
        if (last && last.text !== "" && indent > last.indent && !ITEM_MARKER.test(text)) last.text += ` ${text}`;
        else items.push({ indent, text });
    }
    return items.map((i) => i.text).filter((t) => t !== "");
}

/** Doctor's warnings (the runbook: missing config, session dirs, gateway not running), each a whole item; "No … warnings
 *  detected." and "0 errors" are reports that there is nothing to warn about, not warnings. */
export function doctorWarnings(output: string): string[] {
    return doctorItems(output)
        .filter((l) => /warn|⚠|missing|not running|not found|no such|does not exist|not configured|invalid|\bno\b.*\bfound\b/i.test(l))
        .filter((l) => !/\b(?:no|0|zero)\b[\w\s-]*\b(?:warnings?|errors?|issues?|problems?)\b(?:\s+(?:detected|found|reported))?[.!]?$/i.test(l));
}

/** Doctor read a runtime config it could not use ("Config invalid; doctor will run with best-effort config."): it still
 *  exits 0, so this is how the runtime config check hears of it. The lines that say so. */
export function doctorConfigInvalid(output: string): string[] {
    return doctorItems(output).filter((l) => /config(?:uration)? (?:is )?invalid|invalid config/i.test(l));
}

/** What a developer checks by hand in the runtime config; throws when it is not a JSON object. */
export function readRuntimeConfig(text: string): { gatewayPort?: unknown; modelBaseUrl?: unknown } {
    const config = JSON.parse(text) as unknown;
    if (typeof config !== "object" || config === null || Array.isArray(config)) throw new Error("the top level is not a JSON object");
    const c = config as { gateway?: { port?: unknown }; models?: { providers?: Record<string, { baseUrl?: unknown }> } };
    const providers = Object.values(c.models?.providers ?? {});
    // Only these two fields leave the container: the file also holds the (placeholder) token and key.
    return { gatewayPort: c.gateway?.port, modelBaseUrl: providers.find((p) => p?.baseUrl !== undefined)?.baseUrl };
}

interface ImageFacts {
    Id: string;
    Size: number;
    Architecture: string;
    Os: string;
    RepoTags?: string[];
    Config?: { Entrypoint?: string[] | null; Cmd?: string[] | null };
}

/** "bash" or "sh" from a script's first line (`#!/bin/bash`, `#!/usr/bin/env sh`); undefined otherwise. */
export function shebangShell(script: string): "bash" | "sh" | undefined {
    const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(script);
    const interpreter = m && (m[1].endsWith("/env") ? m[2] : m[1].slice(m[1].lastIndexOf("/") + 1));
    return interpreter === "bash" || interpreter === "sh" ? interpreter : undefined;
}

/** Sockets in LISTEN state from /proc/net/tcp and /proc/net/tcp6 (read inside a container): address and port. */
export function listeningSockets(procNetTcp: string): Array<{ address: string; port: number }> {
    const found: Array<{ address: string; port: number }> = [];
    for (const line of procNetTcp.split("\n")) {
        const [, local, , state] = line.trim().split(/\s+/);
        if (state !== "0A" || !local?.includes(":")) continue;
        const [hex, port] = local.split(":");
        const address =
            hex.length === 8
                ? [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join(".")
                : /^0+$/.test(hex)
                  ? "::"
                  : hex === "00000000000000000000000001000000"
                    ? "::1"
                    : `[${hex}]`;
        found.push({ address, port: parseInt(port, 16) });
    }
    return found;
}

/** What the gateway deadline's report says about the port inside the container: dead and slow look alike from outside. */
export function describeListeners(sockets: Array<{ address: string; port: number }> | undefined, port: number): string {
    if (!sockets) return `could not tell whether anything listens on ${port} inside the container`;
    const onPort = sockets.filter((s) => s.port === port);
    const others = [...new Set(sockets.filter((s) => s.port !== port).map((s) => s.port))].sort((x, y) => x - y);
    const elsewhere = others.length > 0 ? ` (listening inside: ${others.join(", ")})` : " (nothing listens inside at all)";
    if (onPort.length === 0) return `nothing listens on ${port} inside the container${elsewhere}`;
    const loopbackOnly = onPort.every((s) => s.address.startsWith("127.") || s.address === "::1");
    if (loopbackOnly)
        return `something listens on ${port} inside the container, but on loopback only (${onPort[0].address}): the published port cannot reach it`;
    return `something listens on ${port} inside the container (${onPort[0].address}) but did not answer with a 2xx`;
}

const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
        const done = () => {
            clearTimeout(t);
            signal.removeEventListener("abort", done);
            resolve();
        };
        const t = setTimeout(done, ms);
        signal.addEventListener("abort", done, { once: true });
    });

/** GET / once; the status code, or the error text. */
function getOnce(url: string, timeoutMs: number): Promise<{ status?: number; error?: string; timedOut?: boolean }> {
    return new Promise((resolve) => {
        let timedOut = false;
        const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
            res.resume();
            resolve({ status: res.statusCode });
        });
        req.on("timeout", () => {
            timedOut = true;
            req.destroy(new Error(`no answer within ${timeoutMs} ms`));
        });
        req.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message, timedOut }));
    });
}

const pidAlive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return (e as NodeJS.ErrnoException).code === "EPERM";
    }
};

/** Removes labelled containers of earlier runs on this host whose process is gone (SIGKILL leaves them behind). */
export async function sweepLeftovers(signal?: AbortSignal): Promise<string[]> {
    const host = os.hostname();
    const list = await docker(["ps", "-a", "--filter", `label=${SMOKE_LABEL}`, "--format", `{{.ID}}\t{{.Label "${SMOKE_OWNER_KEY}"}}`], { signal });
    const stale = list.stdout
        .split("\n")
        .map((l) => l.trim().split("\t"))
        .filter(([id, owner]) => id && owner?.startsWith(`${host}:`))
        .filter(([, owner]) => {
            const pid = Number(owner.slice(host.length + 1));
            return Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid);
        });
    if (stale.length === 0) return [];
    await docker(["rm", "-f", "-v", ...stale.map(([id]) => id)]);
    return stale.map(([id, owner]) => `${id} (pid ${owner.slice(host.length + 1)})`);
}

/** Runs every check; never leaves a container behind, whatever happens (abort included). */
export async function validateImage(opts: ValidateImageOptions): Promise<ValidationReport> {
    const started = Date.now();
    const at = () => Date.now() - started;
    const { image } = opts;
    const doctorMode = opts.doctorMode ?? DEFAULT_DOCTOR_MODE;

    const abort = new AbortController();
    /** Why the run stopped early: the first failure, a deadline, or the interrupt's reason (the signal's name). */
    let stopped: string | undefined;
    const stop = (why: string) => {
        stopped ??= why;
        abort.abort();
    };
    const interruptedBy = () => (typeof opts.signal?.reason === "string" ? opts.signal.reason : "an interrupt");
    const onOuterAbort = () => stop(`interrupted (${interruptedBy()})`);
    if (opts.signal?.aborted) onOuterAbort();
    opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
    const signal = abort.signal;

    const prefix = opts.runId ?? `kiloclaw-smoke-${randomBytes(4).toString("hex")}`;
    const containers: string[] = [];
    const labels = ["--label", SMOKE_LABEL, "--label", `${SMOKE_OWNER_KEY}=${os.hostname()}:${process.pid}`, "--label", `${SMOKE_RUN_KEY}=${prefix}`];
    const env = (keys: Array<keyof typeof PLACEHOLDER_ENV>) => keys.flatMap((k) => ["-e", `${k}=${PLACEHOLDER_ENV[k]}`]);
    // --init: an init as PID 1 forwards signals and reaps, so no container outlives `docker rm -f` because its own PID 1
    // ignores signals. Never -t: doctor waits for an answer on a TTY.
    const runArgs = (suffix: string, extra: string[]) => {
        containers.push(`${prefix}-${suffix}`);
        return ["run", "--init", "--name", `${prefix}-${suffix}`, ...labels, ...extra];
    };
    /** Removes one container at once (its client, if any, is not waited for). */
    const remove = (name: string) => docker(["rm", "-f", "-v", name]);

    // The gateway's boot is the critical path: its container starts first, while the engine and the image are
    // looked at. (--pull never: an image that is not in the engine fails here instead of being pulled.)
    const gatewayContainer = `${prefix}-gateway`;
    const launchedAt = at();
    const launch = docker(
        [
            ...runArgs("gateway", [
                "-d",
                "--pull",
                "never",
                "-p",
                `127.0.0.1::${GATEWAY_PORT}`,
                ...env(["KILOCODE_API_KEY", "OPENCLAW_GATEWAY_TOKEN"]),
                image,
            ]),
        ],
        { signal },
    );
    const [inspected, info] = await Promise.all([
        docker(["image", "inspect", image], { signal }),
        docker(["info", "--format", "{{.Architecture}}"], { signal }),
    ]);
    if (info.code !== 0 || inspected.code !== 0) {
        await launch;
        await docker(["rm", "-f", "-v", ...containers]);
        await removeByLabel(prefix);
        opts.signal?.removeEventListener("abort", onOuterAbort);
        if (opts.signal?.aborted)
            throw new ValidationSetupError(`interrupted (${interruptedBy()}) before any check started; nothing is left running.`);
        if (info.code !== 0) throw new ValidationSetupError("Docker is not running: run bootstrap/start-docker.sh (or start Docker Desktop).");
        throw new ValidationSetupError(`image '${image}' is not in the local Docker engine; build it first.`);
    }
    const facts = (JSON.parse(inspected.stdout) as ImageFacts[])[0];
    const engine = engineFacts(
        info.stdout.trim(),
        facts.Os,
        facts.Architecture,
        opts.startupDeadlineSeconds ?? 60,
        opts.gatewayDeadlineSeconds ?? 90,
    );
    /** What the image runs when started: the debugging steps start from it, never from a path we assume. */
    const imageCommand = [...(facts.Config?.Entrypoint ?? []), ...(facts.Config?.Cmd ?? [])];
    // Every wait below has its own deadline; this one bounds what has none (docker cp, docker port, a stuck engine).
    const doctorDeadline = (opts.doctorDeadlineSeconds ?? opts.startupDeadlineSeconds ?? 60) * engine.deadlineFactor;
    const overall = overallDeadlineSeconds(engine.startupDeadlineSeconds, engine.gatewayDeadlineSeconds, doctorDeadline);
    const overallTimer = setTimeout(() => stop(`the whole validation's deadline (${overall}s) passed`), overall * 1000);

    const checks = new Map<CheckName, CheckResult>();
    const running = new Set<CheckName>();
    let firstFailure: CheckName | undefined;
    const finish = (name: CheckName, status: CheckResult["status"], summary: string, details: string[] = [], steps: string[] = []) => {
        if (checks.has(name)) return;
        running.delete(name);
        const check: CheckResult = { name, status, atMs: at(), summary, details, nextSteps: steps };
        checks.set(name, check);
        opts.onCheck?.(check);
        if (status === "failed" && !firstFailure) {
            firstFailure = name;
            stop(`the ${name} check failed`); // the first failure stops the rest: fail fast, clean up at once
        }
    };
    // Which commands a failed check's debugging steps may use. Looked up beside the short checks, so that a
    // container that exits early fails without waiting for one more `docker run` (not stopped by the first failure).
    let tools: Promise<ToolsInImage> | undefined;
    let toolsFound: ToolsInImage | undefined;
    const stopTools = new AbortController();
    const toolsTimer = setTimeout(() => stopTools.abort(), engine.startupDeadlineSeconds * 1000);
    const toolsInImage = () =>
        (tools ??= docker(
            [
                ...runArgs("tools", ["--rm", "--entrypoint", "sh", image]),
                "-c",
                "for c in bash sh ps curl wget cat; do command -v $c >/dev/null 2>&1 && echo $c; done",
            ],
            { signal: stopTools.signal },
        ).then((r) => (toolsFound = new Set(r.code === 0 ? r.stdout.split(/\s+/).filter(Boolean) : []))));
    /** The interpreter of the image's command when that is a script (`#!/bin/sh`), read from a container of the image. */
    let scriptShell: "bash" | "sh" | undefined;
    const hintContext = (tools: ToolsInImage) => ({
        image,
        tools,
        engine,
        expectedOpenclawVersion: opts.expectedOpenclawVersion,
        command: imageCommand,
        scriptShell,
        doctorMode,
    });
    /** Fails a check with its next steps; `details` may still be coming (a log tail), fetched beside the tools lookup. */
    const failWithSteps = async (name: CheckName, summary: string, details: string[] | Promise<string[]>, known?: Promise<ToolsInImage>) => {
        const needsTools =
            name === "startup" || name === "gateway" || name === "runtime config" || (name === "openclaw doctor" && doctorMode !== "fresh");
        const [tools, lines] = await Promise.all([known ?? (needsTools ? toolsInImage() : new Set<string>()), details]);
        finish(name, "failed", summary, lines, nextSteps(name, hintContext(tools)));
    };
    /** The shell the debugging steps of a failed start may use: the start script's own interpreter, read from the exited
     *  container (faster than waiting for the tools lookup); that lookup when the image's command is no shell script. */
    const startShell = async (container: string): Promise<ToolsInImage> => {
        const script = imageCommand[0];
        const copied = script?.startsWith("/")
            ? await docker(["cp", "-L", `${container}:${script}`, "-"], { binary: true, signal: stopTools.signal })
            : undefined;
        const file = copied?.code === 0 ? firstFileInTar(copied.bytes) : undefined;
        scriptShell = file && shebangShell(file.content.subarray(0, 200).toString("utf8"));
        if (toolsFound) return toolsFound;
        return scriptShell ? new Set([scriptShell]) : toolsInImage();
    };
    /** The last log lines of a container, stdout and stderr merged by the engine's timestamps (lines written within
     *  microseconds of each other on the two streams may still swap). */
    const logTail = async (container: string, lines = 30) => {
        const r = await docker(["logs", "--timestamps", "--tail", String(lines), container], { signal: stopTools.signal });
        const stamped = r.combined.split(/\r?\n/).filter((l) => l !== "");
        return stamped.sort().map((l) => redact(l.replace(/^\S+Z /, "")));
    };

    /** A command with the startup deadline: a short `docker run --rm`, or a `docker exec` in the gateway's container.
     *  At the deadline the check fails at once and its container is removed by name; undefined when it timed out or
     *  the run stopped. With `from`, the deadline counts from when that settles (and its name says from what). */
    const withDeadline = async (
        name: CheckName,
        command: string[],
        args: string[],
        container: string,
        deadline = engine.startupDeadlineSeconds,
        from?: { event: string; settled: Promise<unknown> },
    ) => {
        running.add(name);
        const startedAt = at();
        const timer = new AbortController();
        let t: NodeJS.Timeout | undefined;
        let done = false;
        let armedAt = startedAt;
        const arm = () => {
            armedAt = at();
            if (!done) t = setTimeout(() => timer.abort(), deadline * 1000);
        };
        if (from) void from.settled.then(arm, arm);
        else arm();
        const r = await docker(args, { signal: AbortSignal.any([signal, timer.signal]) });
        done = true;
        clearTimeout(t);
        if (timer.signal.aborted && !signal.aborted) {
            const removed = remove(container);
            const counted = from ? `, ${from.event} ${seconds(armedAt)}` : "";
            const ran = `started ${seconds(startedAt)}${counted}, stopped ${seconds(at())}`;
            const since = from ? ` from ${from.event}` : "";
            await failWithSteps(name, `\`${command.join(" ")}\` did not finish within its ${deadline}s deadline${since} (${ran})`, []);
            await removed;
            return undefined;
        }
        return r.aborted ? undefined : r;
    };
    const shortRun = (
        name: CheckName,
        suffix: string,
        command: string[],
        withEnv: Array<keyof typeof PLACEHOLDER_ENV> = [],
        extra: string[] = [],
        deadline?: number,
    ) => withDeadline(name, command, [...runArgs(suffix, ["--rm", ...extra, ...env(withEnv), image]), ...command], `${prefix}-${suffix}`, deadline);
    /** Why a short check's command failed: not in the image at all, or its exit code. */
    const exitedWith = (r: DockerResult, executable: string) =>
        /executable file not found/.test(r.stderr) ? `\`${executable}\` is not in the image` : `exit code ${r.code}`;

    const openclawVersion = async () => {
        const r = await shortRun("openclaw version", "version", ["openclaw", "--version"]);
        if (!r) return;
        const printed = r.stdout.trim();
        if (r.code !== 0)
            return failWithSteps("openclaw version", `openclaw --version failed in the image (${exitedWith(r, "openclaw")})`, tail(r.combined));
        if (printed !== opts.expectedOpenclawVersion) {
            const shown = printed.length > 200 ? `${printed.slice(0, 200)}...` : printed;
            return failWithSteps(
                "openclaw version",
                `openclaw --version printed '${shown}' but the expected version is '${opts.expectedOpenclawVersion}'`,
                [],
            );
        }
        finish("openclaw version", "passed", printed);
    };

    const nodeVersion = async () => {
        const r = await shortRun("node version", "node", ["node", "--version"]);
        if (!r) return;
        const printed = r.stdout.trim();
        if (r.code !== 0) return failWithSteps("node version", `node --version failed in the image (${exitedWith(r, "node")})`, tail(r.combined));
        if (!opts.expectedNodeVersion) return finish("node version", "passed", `${printed} (the Dockerfile pins no Node version to compare)`);
        if (!sameNodeVersion(printed, opts.expectedNodeVersion)) {
            return failWithSteps("node version", `node --version printed '${printed}' but the Dockerfile pins Node ${opts.expectedNodeVersion}`, []);
        }
        finish("node version", "passed", printed);
    };

    const directories = async () => {
        const r = await shortRun("directories", "dirs", ["ls", "-ld", ...IMAGE_DIRECTORIES]);
        if (!r) return;
        const listed = r.stdout.split("\n").map((l) => l.trim().split(/\s+/).pop());
        const missing = IMAGE_DIRECTORIES.filter((d) => !listed.includes(d));
        if (missing.length > 0 || r.code !== 0) {
            const what = missing.length > 0 ? `missing in the image: ${missing.join(", ")}` : `ls -ld failed (${exitedWith(r, "ls")})`;
            return failWithSteps("directories", what, tail(r.combined, 5));
        }
        finish("directories", "passed", IMAGE_DIRECTORIES.join(", "));
    };

    /** The gateway's first 2xx: the beside doctor's deadline counts from it. */
    let gatewayAnswered!: () => void;
    const answered = new Promise<void>((resolve) => (gatewayAnswered = resolve));
    const isRunning = async (container: string) =>
        (await docker(["inspect", "--format", "{{.State.Running}}", container], { signal: stopTools.signal })).stdout.trim() === "true";

    /** `openclaw doctor` in one of the modes. It exits 0 even on a config it cannot use; that is the runtime config
     *  check's failure. Undefined when it did not finish (or the container it ran in exited: the startup check says
     *  why); "again" when the beside mode could not start its shell, so doctor is to run once the gateway answers. */
    const doctor = async (mode: DoctorMode, note = ""): Promise<DoctorRan | "again" | undefined> => {
        const command = ["openclaw", "doctor"];
        const r =
            mode === "fresh"
                ? await shortRun("openclaw doctor", "doctor", command, ["KILOCODE_API_KEY"], ["--cpu-shares", "2"], doctorDeadline)
                : mode === "exec"
                  ? await withDeadline("openclaw doctor", command, ["exec", gatewayContainer, ...command], gatewayContainer, doctorDeadline)
                  : await withDeadline(
                        "openclaw doctor",
                        command,
                        ["exec", gatewayContainer, "sh", "-c", BESIDE_DOCTOR_SCRIPT, "sh", RUNTIME_CONFIG_PATH],
                        gatewayContainer,
                        doctorDeadline,
                        { event: "the gateway's answer", settled: answered },
                    );
        if (!r) return undefined;
        const marker = new RegExp(`^${CONFIG_READ_MARKER} (\\S+)\\n?`, "m").exec(r.stdout);
        if (mode === "beside" && !marker) return (await isRunning(gatewayContainer)) ? "again" : undefined;
        if (r.code !== 0 && mode !== "fresh" && !(await isRunning(gatewayContainer))) return undefined;
        const output = redact(marker ? r.combined.replace(marker[0], "") : r.combined);
        const where = { beside: "beside the boot in the gateway's container", exec: "in the gateway's container", fresh: "in a fresh container" }[
            mode
        ];
        if (r.code !== 0) {
            await failWithSteps("openclaw doctor", `openclaw doctor crashed ${where} (${exitedWith(r, "openclaw")})`, tail(output));
            return undefined;
        }
        const warnings = doctorWarnings(output);
        const expected = mode === "fresh" ? " (expected before the entrypoint writes the config)" : "";
        const summary = warnings.length === 0 ? `ran ${where}${note}, no warnings` : `ran ${where}${note}, ${warnings.length} warning(s)${expected}`;
        const ran = { configInvalid: doctorConfigInvalid(output), readConfig: marker?.[1], summary, warnings: warnings.slice(0, 10) };
        // Beside: it passes only once the config it read is known to be the one the gateway runs with.
        if (mode !== "beside") finish("openclaw doctor", "passed", summary, ran.warnings);
        return ran;
    };
    const freshDoctor = doctorMode === "fresh" ? () => doctor("fresh") : async () => undefined;

    let previous: { ref: string; size: number } | undefined;
    const imageSize = async () => {
        previous = await previousImage(image, facts, opts.previousImage, signal);
        if (signal.aborted) return;
        const change = previous ? ` (${formatChange(facts.Size - previous.size)} vs ${previous.ref})` : " (no previous tag to compare with)";
        finish("image size", "passed", `${formatBytes(facts.Size)}${change}`);
    };

    /** Whether anything listens on the gateway's port inside the container (read from /proc, with the image's cat). */
    const listeners = async (name: string) => {
        const r = await docker(["exec", name, "cat", "/proc/net/tcp", "/proc/net/tcp6"], { signal: stopTools.signal });
        return r.code === 0 || r.stdout.includes(" sl ") ? listeningSockets(r.stdout) : undefined;
    };

    let gatewayUrl: string | undefined;
    let runtimeConfig: ValidationReport["runtimeConfig"];
    const gateway = async () => {
        const name = gatewayContainer;
        running.add("startup");
        const run = await launch;
        launched();
        if (run.aborted) return;
        if (run.code !== 0) return failWithSteps("startup", "docker run failed", tail(run.combined));
        const besideRun = doctorMode === "beside" ? doctor("beside") : undefined;
        running.add("gateway");
        // Resolves the moment the container exits: no polling, no settle time.
        let exited: { code: string; atMs: number } | undefined;
        const waiting = docker(["wait", name], { signal }).then((r) => {
            if (!r.aborted) exited = { code: r.stdout.trim() || "?", atMs: at() };
        });
        const containerExited = () => {
            const env = Object.entries(PLACEHOLDER_ENV)
                .map(([k, v]) => `${k}=${v}`)
                .join(" ");
            const when = seconds(exited!.atMs - launchedAt);
            return failWithSteps(
                "startup",
                `the container exited with code ${exited!.code} ${when} after start (env: ${env})`,
                logTail(name),
                startShell(name),
            );
        };
        /** The container has been running since launch (a later failure is the gateway's or the config's, not the start's). */
        const startupHeld = () => {
            if (!exited) finish("startup", "passed", `container running the whole time (${seconds(at() - launchedAt)})`);
        };

        const port = await docker(["port", name, `${GATEWAY_PORT}/tcp`], { signal });
        const mapping = port.stdout.split("\n")[0]?.trim() ?? "";
        if (port.code === 0 && mapping) gatewayUrl = `http://127.0.0.1:${mapping.slice(mapping.lastIndexOf(":") + 1)}/`;

        const deadline = Date.now() + engine.gatewayDeadlineSeconds * 1000;
        let lastError = "no answer yet";
        let status = 0;
        for (;;) {
            if (signal.aborted) return;
            if (exited) return containerExited();
            if (gatewayUrl) {
                const budget = Math.max(1, Math.min(2000, deadline - Date.now()));
                const answer = await getOnce(gatewayUrl, budget);
                if (answer.status !== undefined && answer.status >= 200 && answer.status < 300) {
                    status = answer.status;
                    break;
                }
                // An attempt the deadline cut short says nothing new: the report keeps the last real error.
                const cutShort = answer.timedOut && budget < 2000 && lastError !== "no answer yet";
                if (!cutShort) lastError = answer.status !== undefined ? `HTTP ${answer.status}` : answer.error!;
            }
            if (signal.aborted) return;
            if (Date.now() >= deadline) {
                if (exited) return containerExited();
                startupHeld();
                // Dead or slow: what listens inside, and how far the log got.
                const [sockets, log] = await Promise.all([listeners(name), logTail(name, 15)]);
                return failWithSteps(
                    "gateway",
                    `no HTTP 2xx from ${gatewayUrl ?? "the published port"} (container port ${GATEWAY_PORT}) within its ` +
                        `${engine.gatewayDeadlineSeconds}s deadline; last error: ${lastError}; ${describeListeners(sockets, GATEWAY_PORT)}`,
                    ["last lines of its log:", ...log],
                );
            }
            await Promise.race([sleep(50, signal), waiting]);
        }
        finish("gateway", "passed", `HTTP ${status} on ${gatewayUrl} ${seconds(at() - launchedAt)} after docker run`);
        gatewayAnswered();
        running.add("runtime config");

        // The entrypoint wrote the runtime config before starting the gateway; `docker cp` needs no tool in the image.
        // Doctor (exec mode) runs in this container meanwhile, against that same config.
        const doctorRun = doctorMode === "exec" ? doctor("exec") : besideRun;
        const copied = await docker(["cp", "-L", `${name}:${RUNTIME_CONFIG_PATH}`, "-"], { signal, binary: true });
        if (copied.aborted) return;
        if (exited) return containerExited();
        startupHeld();
        const file = copied.code === 0 ? firstFileInTar(copied.bytes) : undefined;
        if (!file) {
            return failWithSteps("runtime config", `${RUNTIME_CONFIG_PATH} does not exist in the running container`, tail(copied.stderr, 3));
        }
        try {
            runtimeConfig = readRuntimeConfig(file.content.toString("utf8"));
        } catch (e) {
            // The file holds the (placeholder) token and key: they never leave the container, even in an error.
            const firstLine = redact(file.content.toString("utf8").split("\n")[0].slice(0, 120));
            return failWithSteps("runtime config", `${RUNTIME_CONFIG_PATH} is not valid JSON: ${redact((e as Error).message)}`, [firstLine]);
        }
        let ran = await (doctorRun ?? doctorDone);
        if (doctorMode === "beside" && ran !== undefined) {
            // Doctor beside the boot read a config the gateway no longer runs with (or could not start): once more,
            // in the booted container (warm, a few seconds).
            const sum = createHash("md5").update(file.content).digest("hex");
            if (ran === "again") ran = await doctor("exec", " (its shell could not start beside the boot)");
            else if (ran.readConfig !== sum) ran = await doctor("exec", " (the config changed after doctor had read it beside the boot)");
            else finish("openclaw doctor", "passed", ran.summary, ran.warnings);
        }
        if (!ran || ran === "again") return; // doctor failed or did not finish: its own check says why
        if (ran.configInvalid.length > 0) {
            return failWithSteps(
                "runtime config",
                `openclaw doctor says ${RUNTIME_CONFIG_PATH} is invalid (it exits 0 and runs with a best-effort config)`,
                ran.configInvalid,
            );
        }
        const port18789 = runtimeConfig.gatewayPort === GATEWAY_PORT ? "" : ` (expected ${GATEWAY_PORT})`;
        finish(
            "runtime config",
            "passed",
            `${RUNTIME_CONFIG_PATH}: gateway port ${JSON.stringify(runtimeConfig.gatewayPort)}${port18789}, ` +
                `model base URL ${JSON.stringify(runtimeConfig.modelBaseUrl)}`,
        );
    };

    // The short checks start as soon as the long-running container's `docker run -d` returned, so they do not
    // slow its start on a small machine.
    let launched!: () => void;
    const afterLaunch = new Promise<void>((resolve) => (launched = resolve));
    const short = <T>(check: () => Promise<T>) => afterLaunch.then(check);
    void afterLaunch.then(toolsInImage);
    const doctorDone = short(freshDoctor);
    const sweep = afterLaunch.then(() => sweepLeftovers(stopTools.signal)).catch(() => [] as string[]);
    try {
        await Promise.all([gateway(), short(openclawVersion), short(nodeVersion), short(directories), doctorDone, short(imageSize)]);
    } finally {
        clearTimeout(overallTimer);
        opts.signal?.removeEventListener("abort", onOuterAbort);
        abort.abort(); // stops `docker wait` and anything still running (their clients are not waited for)
        if (stopped) stopTools.abort();
        clearTimeout(toolsTimer);
        await tools; // settled: it creates nothing once the containers below are removed
        await docker(["rm", "-f", "-v", ...containers]);
        // A docker client killed mid-create may leave the engine to finish creating after the rm above: look again,
        // by this run's label.
        if (stopped) await removeByLabel(prefix);
    }
    const swept = await sweep;

    for (const name of CHECK_NAMES) {
        if (checks.has(name)) continue;
        const why = stopped ?? "the validation stopped";
        const summary = running.has(name) ? `did not finish: ${why}` : `not run: ${why}`;
        checks.set(name, { name, status: "skipped", atMs: at(), summary, details: [], nextSteps: [] });
    }
    const ordered = CHECK_NAMES.map((n) => checks.get(n)!);
    return {
        image,
        imageId: facts.Id,
        expectedOpenclawVersion: opts.expectedOpenclawVersion,
        expectedNodeVersion: opts.expectedNodeVersion,
        passed: ordered.every((c) => c.status === "passed"),
        totalMs: at(),
        checks: ordered,
        engine,
        imageSizeBytes: facts.Size,
        previousImage: previous?.ref,
        previousImageSizeBytes: previous?.size,
        imageSizeChangeBytes: previous ? facts.Size - previous.size : undefined,
        gatewayUrl,
        runtimeConfig,
        sweptContainers: swept,
        stopped,
        runId: prefix,
        doctorMode,
    };
}

/** Removes every container carrying this run's label; their ids. */
async function removeByLabel(runId: string): Promise<string[]> {
    const late = await docker(["ps", "-aq", "--filter", `label=${SMOKE_RUN_KEY}=${runId}`]);
    const ids = late.stdout.split("\n").filter((l) => l.trim() !== "");
    if (ids.length > 0) await docker(["rm", "-f", "-v", ...ids]);
    return ids;
}

/** The image to compare sizes with: the given one, else the newest other tag of the same repository (the runbook's `docker images kiloclaw`). */
async function previousImage(image: string, facts: ImageFacts, given: string | undefined, signal: AbortSignal) {
    const sizeOf = async (ref: string) => {
        const r = await docker(["image", "inspect", "--format", "{{.Size}}", ref], { signal });
        return r.code === 0 ? { ref, size: Number(r.stdout.trim()) } : undefined;
    };
    if (given) return sizeOf(given);
    const named = facts.RepoTags?.find((t) => t === image) ?? facts.RepoTags?.[0];
    if (!named) return undefined;
    const repo = named.slice(0, named.lastIndexOf(":"));
    const list = await docker(["images", repo, "--format", "{{.ID}}\t{{.Tag}}"], { signal });
    const ownId = facts.Id.replace(/^sha256:/, "");
    const other = list.stdout
        .split("\n")
        .map((l) => l.trim().split("\t"))
        .find(([id, tag]) => id && tag && tag !== "<none>" && !ownId.startsWith(id));
    return other ? sizeOf(`${repo}:${other[1]}`) : undefined;
}

export function seconds(ms: number): string {
    return `${(ms / 1000).toFixed(1)}s`;
}

/** Decimal units, as `docker images` prints them. */
export function formatBytes(bytes: number): string {
    const units = ["B", "kB", "MB", "GB"];
    let value = Math.abs(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
        value /= 1000;
        unit++;
    }
    return `${bytes < 0 ? "-" : ""}${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)}${units[unit]}`;
}

export function formatChange(bytes: number): string {
    return bytes === 0 ? "no change" : `${bytes > 0 ? "+" : ""}${formatBytes(bytes)}`;
}
