// Benchmark 1: the project's image validation (scripts/smoke-test.sh: polls,
// deadlines) against the runbook's three commands with their fixed `sleep 15`
// (bench/runbook-smoke.sh), on the same fixture image; then how long each takes
// to fail when the gateway never opens.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, run, REPO_ROOT, RunningProcess, RunResult, startProcess } from "../sandbox/docker";
import { onCleanup } from "./cleanup";
import { BenchResult, Figure, median, ms, ratio, Table, timed } from "./report";

const FIXTURE_BASE = "kiloclaw-fixture-base:1";
const EXPECTED_VERSION = "2026.2.9";
/** smoke-test.sh's default gateway deadline (GATEWAY_DEADLINE_SECONDS unset). */
const DEFAULT_GATEWAY_DEADLINE_S = 90;
const SMALL_GATEWAY_DEADLINE_S = 10;

export interface SmokeOptions {
    reps: number;
}

interface RunbookRun {
    ms: number;
    code: number | null;
    steps: Record<string, number>;
}

function dockerAnswers(): boolean {
    const r = spawnSync("docker", ["info"], { stdio: "ignore" });
    return !r.error && r.status === 0;
}

function imageExists(ref: string): boolean {
    return spawnSync("docker", ["image", "inspect", ref], { stdio: "ignore" }).status === 0;
}

async function mustRun(what: string, command: string, args: string[], env?: Record<string, string>): Promise<RunResult> {
    const r = await run(command, args, { env });
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
        await stop(); // a no-op once the script has exited
    }
}

/**
 * Docker filters that find the containers of the runs we started, and only those: smoke-test.sh
 * labels its containers with owner "<hostname>:<its pid>", runbook-smoke.sh names them with RUN_ID.
 * (An `ancestor=` filter would also match other people's containers of an identical image.)
 */
const ourContainers: string[][] = [];

async function projectSmoke(image: string, extraEnv: Record<string, string> = {}): Promise<{ ms: number; result: RunResult }> {
    const { result, ms: took } = await timed(() => {
        const p = startProcess("bash", [path.join(REPO_ROOT, "scripts", "smoke-test.sh")], {
            env: { IMAGE: image, EXPECTED_OPENCLAW_VERSION: EXPECTED_VERSION, ...extraEnv },
        });
        ourContainers.push(["--filter", `label=kiloclaw-rollout.smoke.owner=${os.hostname()}:${p.child.pid}`]);
        return untilDone(p);
    });
    return { ms: took, result };
}

async function runbookSmoke(image: string): Promise<RunbookRun> {
    const port = await freePort();
    const runId = `bench-${randomBytes(4).toString("hex")}`;
    ourContainers.push(["--filter", `name=kiloclaw-test-${runId}`], ["--filter", `name=kiloclaw-gateway-${runId}`]);
    const { result, ms: took } = await timed(() =>
        untilDone(startProcess("bash", [path.join(__dirname, "runbook-smoke.sh")], { env: { IMAGE: image, HOST_PORT: String(port), RUN_ID: runId } })),
    );
    const steps: Record<string, number> = {};
    for (const m of result.stderr.matchAll(/^runbook-smoke: step (\S+) (\d+)$/gm)) steps[m[1]] = Number(m[2]);
    return { ms: took, code: result.code, steps };
}

function tail(text: string, lines = 12): string {
    return text.trim().split("\n").slice(-lines).join("\n");
}

/** Containers of our runs still present (running or not), as "name (status)". */
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
    if (!dockerAnswers()) throw new Error("Docker is not running: run `bash bootstrap/start-docker.sh`, then `npm run bench -- --only 1`.");
    const suffix = `${process.pid}-${randomBytes(3).toString("hex")}`;
    const goodImage = `kiloclaw-bench:${suffix}`;
    const noGatewayImage = `kiloclaw-bench-no-gateway:${suffix}`;
    const notes: string[] = [];

    // The fixtures start FROM an offline base image; import it only if missing, and then remove it again.
    if (!imageExists(FIXTURE_BASE)) {
        await mustRun("bootstrap/import-fixture-base.sh", "bash", [path.join(REPO_ROOT, "bootstrap", "import-fixture-base.sh")]);
        // Without -f: refused while other images (someone else's builds) still use it, which is fine.
        onCleanup(`image ${FIXTURE_BASE}`, () => run("docker", ["rmi", FIXTURE_BASE]));
        notes.push(`${FIXTURE_BASE} was missing: imported for the run and removed afterwards.`);
    }

    onCleanup(`image ${goodImage}`, () => run("docker", ["rmi", "-f", goodImage]));
    const build = await timed(() =>
        mustRun("docker build sandbox/fixtures/kiloclaw", "docker", ["build", "--platform", "linux/amd64", "-t", goodImage, path.join(REPO_ROOT, "sandbox", "fixtures", "kiloclaw")]),
    );
    onCleanup(`image ${noGatewayImage}`, () => run("docker", ["rmi", "-f", noGatewayImage]));
    await mustRun("docker build sandbox/fixtures/kiloclaw-no-gateway", "docker", [
        "build", "--platform", "linux/amd64", "-t", noGatewayImage, path.join(REPO_ROOT, "sandbox", "fixtures", "kiloclaw-no-gateway"),
    ]);

    // ---- passing image: alternate which goes first, so neither always meets a warmer engine ----
    const project: number[] = [];
    const runbook: RunbookRun[] = [];
    const repRows: string[][] = [];
    for (let i = 0; i < opts.reps; i++) {
        const order = i % 2 === 0 ? (["project", "runbook"] as const) : (["runbook", "project"] as const);
        let p = NaN;
        let rb: RunbookRun | undefined;
        for (const which of order) {
            if (which === "project") {
                const r = await projectSmoke(goodImage);
                if (r.result.code !== 0) throw new Error(`smoke-test.sh failed on the good fixture (exit ${r.result.code}):\n${tail(r.result.stderr + r.result.stdout)}`);
                p = r.ms;
            } else {
                rb = await runbookSmoke(goodImage);
                if (rb.code !== 0) throw new Error(`runbook-smoke.sh failed on the good fixture (exit ${rb.code})`);
            }
        }
        project.push(p);
        runbook.push(rb!);
        const stops = (rb!.steps["startup-stop"] ?? 0) + (rb!.steps["gateway-stop"] ?? 0);
        repRows.push([String(i + 1), ms(p), ms(rb!.ms), ms(stops), ms(rb!.ms - stops), ratio(rb!.ms / p)]);
        progress(`rep ${i + 1}/${opts.reps}: project ${ms(p)}, runbook ${ms(rb!.ms)}`);
    }
    const projectMedian = median(project);
    const runbookMedian = median(runbook.map((r) => r.ms));
    const stopWaits = runbook.map((r) => (r.steps["startup-stop"] ?? 0) + (r.steps["gateway-stop"] ?? 0));
    const runbookNoStopMedian = median(runbook.map((r, i) => r.ms - stopWaits[i]));
    repRows.push(["median", ms(projectMedian), ms(runbookMedian), ms(median(stopWaits)), ms(runbookNoStopMedian), ratio(runbookMedian / projectMedian)]);

    // ---- gateway never opens ----
    const failRows: string[][] = [];
    progress(`gateway never opens: 3 runs at once (up to ~${DEFAULT_GATEWAY_DEADLINE_S + 5} s)...`);
    // All three at once: each is bound by its deadline or fixed sleeps (polls every 0.5 s), not by CPU.
    const [failDefault, failSmall, failRunbook] = await Promise.all([
        projectSmoke(noGatewayImage),
        projectSmoke(noGatewayImage, { GATEWAY_DEADLINE_SECONDS: String(SMALL_GATEWAY_DEADLINE_S) }),
        runbookSmoke(noGatewayImage),
    ]);
    for (const [label, r] of [
        [`smoke-test.sh, GATEWAY_DEADLINE_SECONDS unset (default ${DEFAULT_GATEWAY_DEADLINE_S})`, failDefault],
        [`smoke-test.sh, GATEWAY_DEADLINE_SECONDS=${SMALL_GATEWAY_DEADLINE_S}`, failSmall],
    ] as const) {
        if (r.result.code !== 1) notes.push(`Unexpected: ${label} exited ${r.result.code} on the no-gateway fixture (expected 1).`);
        failRows.push([label, ms(r.ms), String(r.result.code)]);
    }
    failRows.push(["runbook-smoke.sh (fixed sleeps; fails at `curl -f`)", ms(failRunbook.ms), String(failRunbook.code)]);
    if (failRunbook.code === 0) notes.push("Unexpected: the runbook commands passed on the no-gateway fixture.");

    const left = await leftoverContainers();
    if (left.length > 0) notes.push(`Containers left behind: ${left.join(", ")}.`);

    const figures: Figure[] = [
        { name: "project validation, median", value: ms(projectMedian), meaning: `\`bash scripts/smoke-test.sh\` on the fixture image, ${opts.reps} run(s): version, startup (3 s settle), gateway by polling` },
        { name: "runbook commands, median", value: ms(runbookMedian), meaning: "bench/runbook-smoke.sh: the runbook's 3 tests with two fixed `sleep 15` and `docker stop`" },
        { name: "ratio runbook / project", value: ratio(runbookMedian / projectMedian), meaning: "how many times longer the runbook's quick validation takes on the same image" },
        { name: "runbook without its `docker stop` waits", value: ms(runbookNoStopMedian), meaning: "runbook median minus the two `docker stop` calls (the fixture's PID 1 ignores SIGTERM: 10 s each)" },
        { name: "ratio (runbook − stop waits) / project", value: ratio(runbookNoStopMedian / projectMedian), meaning: "the ratio from the fixed sleeps alone" },
        { name: "fail time, gateway never opens (default deadline)", value: ms(failDefault.ms), meaning: `smoke-test.sh on kiloclaw-no-gateway with GATEWAY_DEADLINE_SECONDS unset (${DEFAULT_GATEWAY_DEADLINE_S} s) → exit ${failDefault.result.code}` },
        { name: `fail time, gateway never opens (deadline ${SMALL_GATEWAY_DEADLINE_S} s)`, value: ms(failSmall.ms), meaning: `the same with GATEWAY_DEADLINE_SECONDS=${SMALL_GATEWAY_DEADLINE_S} → exit ${failSmall.result.code}` },
        { name: "runbook fail time, gateway never opens", value: ms(failRunbook.ms), meaning: `runbook commands on the same image: \`curl -f\` fails after the fixed sleeps → exit ${failRunbook.code}` },
        { name: "bench image build", value: ms(build.ms), meaning: "`docker build --platform linux/amd64` of sandbox/fixtures/kiloclaw (layer cache may be warm)" },
        { name: "containers left behind", value: String(left.length), meaning: "containers carrying our runs' names or owner labels still present afterwards (should be 0)" },
    ];
    const tables: Table[] = [
        { title: "Passing image, each repetition", header: ["rep", "project", "runbook", "runbook stop waits", "runbook − stops", "runbook/project"], rows: repRows },
        { title: "Gateway never opens (sandbox/fixtures/kiloclaw-no-gateway)", header: ["validation", "time to fail", "exit"], rows: failRows },
    ];
    notes.push(
        "The runbook's test 1 also runs `docker build`; both validations here start from the one prebuilt bench image, so neither includes a build.",
        "The project's smoke test removes containers with `docker rm -f` (no stop wait); the runbook's `docker stop` waits 10 s for a PID 1 that ignores SIGTERM, as the fixture's busybox httpd does.",
        "The three no-gateway runs ran concurrently (each waits on a deadline or a fixed sleep, not on CPU).",
        `With the default deadline the failure costs ~${DEFAULT_GATEWAY_DEADLINE_S} s by design (a real gateway needs ~15 s); lower GATEWAY_DEADLINE_SECONDS for a fast image.`,
    );
    return { id: 1, title: "Smoke tests: project validation vs runbook commands", figures, tables, notes };
}
