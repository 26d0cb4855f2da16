// Benchmark 1: the image validation against its floor and against the runbook, on
// a real-shaped fixture: the newest shape (controller as CMD) with the cost model
// layer (sandbox/fixtures/cost-model): the gateway's boot and `openclaw doctor` are
// CPU work in the real software's proportions, with the cache both fill (real
// openclaw 2026.2.9, 2 cores: boot 28 s, a fresh doctor 29 s, ~25 s of each is the
// plugin transpile cache they share; doctor after the boot 4 s; here scaled ×1/4),
// so a CPU load beside the run slows them as it slows the real ones. The three doctor
// modes (beside the boot, exec once the gateway answers, a fresh container) are
// timed, idle and with a CPU load beside them, with the validation's own CPU seconds.
//   floor   — `docker run -d` of the image, then GET / until the first 2xx: nothing
//             can validate the gateway faster;
//   project — `bash scripts/smoke-test.sh`, all of Step 2 (goal: ≤ floor + 1 s);
//   runbook — bench/runbook-smoke.sh, the runbook's three blocks with their fixed
//             sleeps, with its outcome next to whether its gateway check really got a 2xx.
// Then the time each failure variant of the fixture takes to fail.
import { ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { buildFixture, FIXTURE_SHAPES, FixtureVariant, freePort, run, REPO_ROOT, RunningProcess, RunResult, startProcess } from "../sandbox/docker";
import { DEFAULT_DOCTOR_MODE, DOCTOR_MODES, DoctorMode, SMOKE_RUN_KEY } from "../validation/validate";
import { onCleanup } from "./cleanup";
import { BenchResult, Figure, median, ms, ratio, Table, timed } from "./report";

const FIXTURE_BASE = "kiloclaw-fixture-base:2";
const EXPECTED_VERSION = "2026.2.9";
const EXPECTED_NODE = "22.13.1";
/** The failure variants' gateway boot (a sleep, Feb-26 shape). */
const BOOT_SECONDS = 18;
/** The real-shaped fixture's costs in CPU seconds, the real software's ×1/4: the transpile cache boot and doctor share
 *  (~25 s), the rest of the boot once it is filled (3.3 s), doctor after the boot (4.1 s). */
const COST = { cacheCpuSeconds: 6, bootCpuSeconds: 1, doctorCpuSeconds: 1 };
/** Gateway deadline for the no-gateway variant (the default 90 s would only measure the deadline). */
const NO_GATEWAY_DEADLINE_S = 30;
const FLOOR_LABEL = "kiloclaw-rollout.bench-floor";

export interface SmokeOptions {
    reps: number;
}

interface RunbookRun {
    ms: number;
    code: number | null;
    steps: Record<string, { ms: number; code: number }>;
    leftRunning: string[];
}

/** Containers of the runs we started, and only those (smoke-test.sh: owner label "<host>:<pid>"; runbook: RUN_ID names; floor: label). */
const ourContainers: string[][] = [];

async function mustRun(what: string, command: string, args: string[]): Promise<RunResult> {
    const r = await run(command, args);
    if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code ?? r.signal}):\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
    return r;
}

/** Waits for a script; if the bench is interrupted meanwhile, SIGTERM lets the script remove its containers. */
async function untilDone(p: RunningProcess): Promise<RunResult> {
    const stop = onCleanup(`script pid ${p.child.pid}`, () => {
        if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
    });
    try {
        return await p.done;
    } finally {
        await stop();
    }
}

function getStatus(url: string): Promise<number | undefined> {
    return new Promise((resolve) => {
        const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
            res.resume();
            resolve(res.statusCode);
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(undefined));
    });
}

/** The floor: from `docker run -d` to the first 2xx on GET / (polled every 50 ms), container removed afterwards (not timed). */
async function floor(image: string): Promise<number> {
    const id = `bench-floor-${randomBytes(4).toString("hex")}`;
    ourContainers.push(["--filter", `label=${FLOOR_LABEL}=${id}`]);
    const start = performance.now();
    try {
        const args = [
            "run",
            "-d",
            "--label",
            `${FLOOR_LABEL}=${id}`,
            "-p",
            "127.0.0.1::18789",
            "-e",
            "KILOCODE_API_KEY=test-key",
            "-e",
            "OPENCLAW_GATEWAY_TOKEN=test-token",
            image,
        ];
        const container = (await mustRun("docker run (floor)", "docker", args)).stdout.trim();
        const mapping = (await mustRun("docker port", "docker", ["port", container, "18789/tcp"])).stdout.split("\n")[0].trim();
        const url = `http://127.0.0.1:${mapping.slice(mapping.lastIndexOf(":") + 1)}/`;
        for (;;) {
            const status = await getStatus(url);
            if (status !== undefined && status >= 200 && status < 300) return performance.now() - start;
            if (performance.now() - start > 300_000) throw new Error(`the floor run got no 2xx from ${url} within 300 s`);
            await new Promise((r) => setTimeout(r, 50));
        }
    } finally {
        await run("docker", ["rm", "-f", "-v", ...(await containerIds(["--filter", `label=${FLOOR_LABEL}=${id}`]))]);
    }
}

async function containerIds(filter: string[]): Promise<string[]> {
    const r = await run("docker", ["ps", "-aq", ...filter]);
    return r.stdout.split("\n").filter((l) => l.trim() !== "");
}

async function projectSmoke(
    image: string,
    extraEnv: Record<string, string> = {},
    pins = { openclaw: EXPECTED_VERSION, node: EXPECTED_NODE },
): Promise<{ ms: number; cpuMs: number; result: RunResult }> {
    const runId = `kiloclaw-smoke-bench-${randomBytes(4).toString("hex")}`;
    ourContainers.push(["--filter", `label=${SMOKE_RUN_KEY}=${runId}`]);
    const { result, ms: took } = await timed(() => {
        // `times`: the CPU the validation and its docker clients used (children of this bash), not the containers'.
        const p = startProcess("bash", ["-c", 'bash "$0"; rc=$?; times >&2; exit $rc', path.join(REPO_ROOT, "scripts", "smoke-test.sh")], {
            env: { IMAGE: image, EXPECTED_OPENCLAW_VERSION: pins.openclaw, EXPECTED_NODE_VERSION: pins.node, SMOKE_RUN_ID: runId, ...extraEnv },
        });
        return untilDone(p);
    });
    const times = [...result.stderr.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)].pop();
    const cpuMs = times ? (Number(times[1]) * 60 + Number(times[2]) + Number(times[3]) * 60 + Number(times[4])) * 1000 : NaN;
    return { ms: took, cpuMs, result };
}

/** One busy process per core at normal priority (the "CPU load beside it"); stopped by pid. */
function startCpuLoad(): () => Promise<void> {
    const busy: ChildProcess[] = os.cpus().map(() => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
    const stop = async () => {
        for (const p of busy) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    };
    const undo = onCleanup("CPU load", stop);
    return undo;
}

async function runbookSmoke(image: string): Promise<RunbookRun> {
    const port = await freePort();
    const runId = `bench-${randomBytes(4).toString("hex")}`;
    ourContainers.push(["--filter", `name=kiloclaw-test-${runId}`], ["--filter", `name=kiloclaw-gateway-${runId}`]);
    const { result, ms: took } = await timed(() =>
        untilDone(
            startProcess("bash", [path.join(__dirname, "runbook-smoke.sh")], { env: { IMAGE: image, HOST_PORT: String(port), RUN_ID: runId } }),
        ),
    );
    const steps: RunbookRun["steps"] = {};
    for (const m of result.stderr.matchAll(/^runbook-smoke: step (\S+) (\d+) (\d+)$/gm)) steps[m[1]] = { ms: Number(m[2]), code: Number(m[3]) };
    const leftRunning = [...result.stderr.matchAll(/^runbook-smoke: left-running (\S+)$/gm)].map((m) => m[1]);
    return { ms: took, code: result.code, steps, leftRunning };
}

/** "FAILED: gateway (after …)" → "gateway". */
function failedChecks(stdout: string): string {
    return /^FAILED: (.+?) \(after/m.exec(stdout)?.[1] ?? "none";
}

async function leftoverContainers(): Promise<string[]> {
    const left: string[] = [];
    for (const filter of ourContainers) {
        const r = await run("docker", ["ps", "-a", ...filter, "--format", "{{.Names}} ({{.Status}})"]);
        left.push(...r.stdout.split("\n").filter((l) => l.trim() !== ""));
    }
    return left;
}

function progress(text: string): void {
    console.log(`  ${text}`);
}

export async function smokeBenchmark(opts: SmokeOptions): Promise<BenchResult> {
    ourContainers.length = 0;
    if ((await run("docker", ["info"])).code !== 0)
        throw new Error("Docker is not running: run `bash bootstrap/start-docker.sh`, then `npm run bench -- --only 1`.");
    const suffix = `${process.pid}-${randomBytes(3).toString("hex")}`;
    const image = (variant: string) => `kiloclaw-bench-${variant}:${suffix}`;
    const notes: string[] = [];
    const load = os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(", ");

    // The fixture starts FROM an offline base image; import it only if missing, and then remove it again.
    if ((await run("docker", ["image", "inspect", FIXTURE_BASE])).code !== 0) {
        await mustRun("bootstrap/import-fixture-base.sh", "bash", [path.join(REPO_ROOT, "bootstrap", "import-fixture-base.sh")]);
        onCleanup(`image ${FIXTURE_BASE}`, () => run("docker", ["rmi", FIXTURE_BASE]));
        notes.push(`${FIXTURE_BASE} was missing: imported for the run and removed afterwards.`);
    }
    const variants: FixtureVariant[] = ["good", "exits", "no-gateway", "wrong-version", "no-clawd", "doctor-crashes", "bad-config"];
    const real = image("real-shaped");
    const hangs = image("doctor-hangs");
    const newest = FIXTURE_SHAPES.newest;
    const build = await timed(async () => {
        for (const v of variants) {
            onCleanup(`image ${image(v)}`, () => run("docker", ["rmi", "-f", image(v)]));
            await buildFixture(image(v), v, { bootSeconds: BOOT_SECONDS });
        }
        for (const [tag, doctor] of [
            [real, "ok"],
            [hangs, "hangs"],
        ] as const) {
            onCleanup(`image ${tag}`, () => run("docker", ["rmi", "-f", tag]));
            await buildFixture(tag, "good", { shape: "newest", doctor, cost: COST });
        }
    });
    const pins = { openclaw: newest.openclaw, node: newest.node };

    // ---- the real-shaped fixture: floor, project (every doctor mode), runbook; idle, then with a CPU load beside ----
    type Kind = "floor" | DoctorMode | "runbook";
    const rows: string[][] = [];
    const noRuns = () => ({ floor: [], beside: [], exec: [], fresh: [], runbook: [], cpu: { beside: [], exec: [], fresh: [] } });
    const results: Record<"idle" | "loaded", Record<Kind, number[]> & { cpu: Record<DoctorMode, number[]> }> = { idle: noRuns(), loaded: noRuns() };
    const runbooks: RunbookRun[] = [];
    const failedRuns: string[] = [];
    for (const condition of ["idle", "loaded"] as const) {
        const kinds: Kind[] = ["floor", ...DOCTOR_MODES, ...(condition === "idle" ? (["runbook"] as const) : [])];
        const stopLoad = condition === "loaded" ? startCpuLoad() : undefined;
        try {
            for (let i = 0; i < opts.reps; i++) {
                const row: Partial<Record<Kind, number>> = {};
                const cpu: Partial<Record<DoctorMode, number>> = {};
                for (let k = 0; k < kinds.length; k++) {
                    const which = kinds[(k + i) % kinds.length];
                    if (which === "floor") row.floor = await floor(real);
                    else if (which === "runbook") {
                        const rb = await runbookSmoke(real);
                        runbooks.push(rb);
                        row.runbook = rb.ms;
                    } else {
                        const r = await projectSmoke(real, { DOCTOR_MODE: which }, pins);
                        // The default mode must pass; a fresh doctor starved by the load is a result, not an error.
                        if (r.result.code !== 0 && which === DEFAULT_DOCTOR_MODE)
                            throw new Error(
                                `smoke-test.sh failed on the real-shaped fixture (exit ${r.result.code}):\n${r.result.stdout}\n${r.result.stderr}`,
                            );
                        if (r.result.code !== 0)
                            failedRuns.push(
                                `${condition} rep ${i + 1}, doctor ${which}: ${failedChecks(r.result.stdout)} failed (exit ${r.result.code}) after ${ms(r.ms)}`,
                            );
                        row[which] = r.ms;
                        cpu[which] = r.cpuMs;
                    }
                }
                for (const kind of kinds) results[condition][kind].push(row[kind]!);
                for (const mode of DOCTOR_MODES) results[condition].cpu[mode].push(cpu[mode]!);
                rows.push([
                    condition,
                    String(i + 1),
                    ms(row.floor!),
                    ...DOCTOR_MODES.map((mode) => `${ms(row[mode]!)} (+${ms(row[mode]! - row.floor!)})`),
                    DOCTOR_MODES.map((mode) => ms(cpu[mode]!)).join(" / "),
                    row.runbook === undefined ? "" : ms(row.runbook),
                ]);
                progress(`${condition} rep ${i + 1}/${opts.reps}: ${rows[rows.length - 1].slice(2).join(" | ")}`);
            }
        } finally {
            await stopLoad?.();
        }
    }
    const med = (c: "idle" | "loaded", k: Kind) => median(results[c][k]);
    const over = (c: "idle" | "loaded", k: DoctorMode) => median(results[c][k].map((p, i) => p - results[c].floor[i]));

    // ---- failure variants: how long each takes to fail, and which check says so ----
    progress(`failure variants (no-gateway waits its ${NO_GATEWAY_DEADLINE_S} s deadline)...`);
    const failRows: string[][] = [];
    let exitToFailure = NaN;
    const failing = variants.filter((v) => v !== "good");
    for (const v of failing) {
        const env: Record<string, string> = v === "no-gateway" ? { GATEWAY_DEADLINE_SECONDS: String(NO_GATEWAY_DEADLINE_S) } : {};
        const r = await projectSmoke(image(v), env);
        if (r.result.code !== 1) notes.push(`Unexpected: smoke-test.sh exited ${r.result.code} on the ${v} variant (expected 1).`);
        // The report's startup line: "✘ startup  2.3s  the container exited with code 1 1.4s after start" (the container starts at ~0 s).
        const exit = /✘ startup\s+([\d.]+)s\s+the container exited with code \d+ ([\d.]+)s after start/.exec(r.result.stdout);
        if (v === "exits" && exit) exitToFailure = (Number(exit[1]) - Number(exit[2])) * 1000;
        failRows.push([
            v,
            failedChecks(r.result.stdout),
            ms(r.ms),
            String(r.result.code),
            v === "no-gateway" ? `GATEWAY_DEADLINE_SECONDS=${NO_GATEWAY_DEADLINE_S}` : "",
        ]);
    }
    {
        const r = await projectSmoke(hangs, { STARTUP_DEADLINE_SECONDS: "10" }, pins);
        if (r.result.code !== 1) notes.push(`Unexpected: smoke-test.sh exited ${r.result.code} on a hanging doctor (expected 1).`);
        failRows.push([
            "doctor hangs, ignores SIGTERM (real-shaped)",
            failedChecks(r.result.stdout),
            ms(r.ms),
            String(r.result.code),
            "STARTUP_DEADLINE_SECONDS=10",
        ]);
    }

    const left = await leftoverContainers();
    if (left.length > 0) notes.push(`Containers left behind: ${left.join(", ")}.`);
    const runbookPassed = runbooks.filter((r) => r.code === 0).length;
    const runbookGateway = runbooks.filter((r) => r.steps["gateway-check"]?.code === 0).length;
    const goal = over("idle", DEFAULT_DOCTOR_MODE) <= 1000 ? "met" : "NOT met";
    for (const f of failedRuns) notes.push(`Failed run (counted with its time to fail): ${f}.`);

    const figures: Figure[] = [
        {
            name: "floor, idle, median",
            value: ms(med("idle", "floor")),
            meaning: `\`docker run -d\` → first 2xx on GET / (real-shaped fixture: boot = ${COST.cacheCpuSeconds + COST.bootCpuSeconds} CPU s), ${opts.reps} run(s)`,
        },
        {
            name: `project (doctor ${DEFAULT_DOCTOR_MODE}, the default), idle, median`,
            value: ms(med("idle", DEFAULT_DOCTOR_MODE)),
            meaning: "`bash scripts/smoke-test.sh`: all 8 checks, process start to exit (containers removed)",
        },
        { name: "project − floor, idle, median", value: ms(over("idle", DEFAULT_DOCTOR_MODE)), meaning: `goal ≤ 1 s: ${goal}` },
        {
            name: "ratio project / floor, idle",
            value: ratio(med("idle", DEFAULT_DOCTOR_MODE) / med("idle", "floor")),
            meaning: "how close the validation is to the image's own boot",
        },
        {
            name: "project (DOCTOR_MODE=exec) − floor, idle",
            value: ms(over("idle", "exec")),
            meaning: `doctor in the gateway's container once it answers: the floor plus a warm doctor (${COST.doctorCpuSeconds} CPU s)`,
        },
        {
            name: "project (DOCTOR_MODE=fresh) − floor, idle",
            value: ms(over("idle", "fresh")),
            meaning: `doctor in its own container from the start, lowest CPU weight: its cold cost (${COST.cacheCpuSeconds + COST.doctorCpuSeconds} CPU s) is longer than the boot`,
        },
        {
            name: "floor, with a CPU load, median",
            value: ms(med("loaded", "floor")),
            meaning: `${os.cpus().length} busy processes at normal priority beside the run`,
        },
        {
            name: `project (${DEFAULT_DOCTOR_MODE}) − floor, with a CPU load`,
            value: ms(over("loaded", DEFAULT_DOCTOR_MODE)),
            meaning: "doctor at the lowest priority beside the boot: it gets what the boot and the load leave",
        },
        {
            name: "project (exec) − floor, with a CPU load",
            value: ms(over("loaded", "exec")),
            meaning: "doctor runs after the boot: it never competes with it",
        },
        {
            name: "project (fresh) − floor, with a CPU load",
            value: ms(over("loaded", "fresh")),
            meaning: "the cold doctor competes with the boot and the load",
        },
        {
            name: `validation CPU, idle, median (${DOCTOR_MODES.join(" / ")})`,
            value: DOCTOR_MODES.map((mode) => ms(median(results.idle.cpu[mode]))).join(" / "),
            meaning: "user+sys of the validation process and its docker clients (`times`); the containers' own CPU is not included",
        },
        {
            name: "runbook commands, median",
            value: ms(median(runbooks.map((r) => r.ms))),
            meaning: "bench/runbook-smoke.sh: the runbook's 3 blocks as pasted (two fixed `sleep 15`), idle",
        },
        {
            name: "runbook outcome vs its gateway check",
            value: `${runbookPassed}/${runbooks.length} passed, ${runbookGateway}/${runbooks.length} got a 2xx`,
            meaning: "the runbook's curl runs 15 s after `docker run`",
        },
        ...failRows.map(([v, check, took, code]) => ({ name: `fail time, ${v}`, value: took, meaning: `fails the ${check} check → exit ${code}` })),
        {
            name: "exits: from the exit to the failed check",
            value: ms(exitToFailure),
            meaning: "from the report (0.1 s resolution): `docker wait` returns, then the log tail and the start script's shell are read",
        },
        {
            name: "bench image builds",
            value: ms(build.ms),
            meaning: `${variants.length} Feb-26 variants + 2 real-shaped (newest shape + cost model layer)`,
        },
        {
            name: "containers left behind",
            value: String(left.length),
            meaning: "containers of our runs (run labels / names) still present afterwards (should be 0)",
        },
    ];
    const tables: Table[] = [
        {
            title: "Real-shaped fixture, each repetition (project: time (+ over the floor))",
            header: [
                "condition",
                "rep",
                "floor",
                ...DOCTOR_MODES.map((mode) => `project, doctor ${mode}`),
                `CPU ${DOCTOR_MODES.join(" / ")}`,
                "runbook",
            ],
            rows,
        },
        { title: "Failure variants: time to fail", header: ["variant", "failed check", "time to fail", "exit", "setting"], rows: failRows },
    ];
    notes.push(
        `Load average at the start of this benchmark: ${load} (the machine is shared; figures under load are noisy).`,
        `Modelled, not measured on the real image: the boot and doctor as CPU work (sandbox/fixtures/cost-model: a cache both fill, ` +
            `${COST.cacheCpuSeconds} s, whoever reaches a part first pays for it; then the boot's own ${COST.bootCpuSeconds} s and doctor's ` +
            `${COST.doctorCpuSeconds} s), the real openclaw 2026.2.9's measured costs ×1/4. Real: Docker, the containers, the validation, the floor.`,
        "The floor polls every 50 ms and does not include removing its container; the project's time includes starting node, every check, and removing every container.",
        "The runbook's outcome is the status of its last block as pasted into a terminal; a chain that fails at `curl -f` leaves its container running (the bench removes it afterwards).",
        `The no-gateway variant fails at its deadline by design (${NO_GATEWAY_DEADLINE_S} s here, 90 s by default).`,
    );
    return {
        id: 1,
        title: "Image validation: floor, project (every doctor mode) and runbook on a real-shaped fixture, idle and loaded",
        figures,
        tables,
        notes,
    };
}
