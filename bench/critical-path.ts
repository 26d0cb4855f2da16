// Benchmark 7: a pin bump's `pulumi up` against its critical path, beside the validation (the default)
// and in the runbook's strict order. The step graph is rollout.ts's own (bench/rollout-graph.ts reads it
// from the program under mocks); the steps are stand-ins with delays modelled on the real figures, run by
// the real engine as dynamic resources (build mode needs the docker and command plugins, which cannot be
// installed here). Each step's start and end come from the engine's events (Automation API onEvent).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { EngineEvent, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { engineEnv, findPulumi } from "../sandbox/workspace";
import { onCleanup } from "./cleanup";
import { BenchResult, ms, ratio, timed } from "./report";
import type { Step } from "./rollout-graph";

/** The Fly emulator's accelerated clock for Fly's own waits (sandbox/emulators/fly.ts msPerSecond). */
const FLY_MS_PER_SECOND = 250;

/** Modelled step times of a pin bump, ms of wall time, and where each figure comes from. */
function modelledSteps(pushSeconds: number): Record<string, { ms: number; source: string }> {
    return {
        build: { ms: 10_000, source: "a rebuild of the openclaw layer on a warm cache (modelled: 10 s)" },
        validation: { ms: 20_000, source: "the gateway's boot, 20 s (the real image: 20-60 s); the other checks run beside it" },
        push: { ms: pushSeconds * 1000, source: `a push of ${pushSeconds} s (changed layers)` },
        "local-images": { ms: 0, source: "records the tag's local images (no work on create)" },
        warm: { ms: 60 * FLY_MS_PER_SECOND, source: `Fly's first pull, 60 s at the emulator's clock (${FLY_MS_PER_SECOND} ms per second)` },
        "worker-image": { ms: 1000, source: "writes .dev.vars and waits for the worker to serve the tag (modelled: 1 s)" },
        instance: { ms: 20 * FLY_MS_PER_SECOND, source: `destroy + provision on the warmed image, the gateway's 20 s boot at the emulator's clock` },
    };
}

/** Waits `ms`, on create and on update (a pin bump changes the tag: every step runs again). */
const stepProvider: pulumi.dynamic.ResourceProvider = {
    async create(inputs) {
        await new Promise((resolve) => setTimeout(resolve, inputs.ms));
        return { id: inputs.step, outs: inputs };
    },
    async diff(_id, olds, news) {
        return { changes: olds.tag !== news.tag || olds.ms !== news.ms };
    },
    async update(_id, _olds, news) {
        await new Promise((resolve) => setTimeout(resolve, news.ms));
        return { outs: news };
    },
};

class ModelStep extends pulumi.dynamic.Resource {
    constructor(name: string, props: { step: string; tag: string; ms: number }, opts?: pulumi.CustomResourceOptions) {
        super(stepProvider, name, props, opts);
    }
}

function graphOf(mode: "beside" | "strict"): Step[] {
    const r = spawnSync("node", ["-r", "ts-node/register/transpile-only", path.join(__dirname, "rollout-graph.ts"), mode], {
        cwd: path.join(__dirname, ".."),
        encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`bench/rollout-graph.ts ${mode} failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").pop()!) as Step[];
}

/** The longest chain of steps that must run one after another, weighted by each step's measured time. */
function criticalPath(graph: Step[], took: Record<string, number>): { ms: number; chain: string[] } {
    const best: Record<string, { ms: number; chain: string[] }> = {};
    // The graph comes in the runbook's order: every step's predecessors come before it.
    for (const s of graph) {
        const before = s.after.map((a) => best[a]).reduce((m, b) => (b && b.ms > m.ms ? b : m), { ms: 0, chain: [] as string[] });
        best[s.name] = { ms: before.ms + (took[s.name] ?? 0), chain: [...before.chain, s.name] };
    }
    return Object.values(best).reduce((m, b) => (b.ms > m.ms ? b : m));
}

interface ModeRun {
    mode: string;
    graph: Step[];
    /** From the call to the engine's summary event (the update is done). */
    wallMs: number;
    /** The whole Automation API call: it then reads the stack's outputs and history with more CLI commands. */
    apiMs: number;
    took: Record<string, number>;
    startAt: Record<string, number>;
    critical: { ms: number; chain: string[] };
    spanMs: number;
}

export async function criticalPathBenchmark(opts: { pushSeconds: number }): Promise<BenchResult> {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-bench-critical-"));
    onCleanup(`temp dir ${work}`, () => fs.rmSync(work, { recursive: true, force: true }));
    fs.mkdirSync(path.join(work, "state"));
    fs.writeFileSync(path.join(work, "passphrase"), "bench-critical-path\n");
    const projectDir = path.join(work, "project");
    fs.mkdirSync(projectDir);
    // The dynamic-provider host resolves @pulumi/pulumi from here.
    fs.symlinkSync(path.join(__dirname, "..", "node_modules"), path.join(projectDir, "node_modules"));
    const model = modelledSteps(opts.pushSeconds);

    let current: { graph: Step[]; tag: string; timed: boolean } = { graph: [], tag: "", timed: false };
    const program = async () => {
        const made: Record<string, pulumi.Resource> = {};
        for (const s of current.graph) {
            made[s.name] = new ModelStep(
                s.name,
                { step: s.name, tag: current.tag, ms: current.timed ? model[s.name].ms : 0 },
                { dependsOn: s.after.map((a) => made[a]) },
            );
        }
    };
    const ws = await LocalWorkspace.create({
        workDir: projectDir,
        program,
        pulumiCommand: await findPulumi(),
        envVars: engineEnv(work),
        secretsProvider: "passphrase",
        projectSettings: { name: "kiloclaw-critical-path", runtime: { name: "nodejs" } },
    });
    const stack = await Stack.createOrSelect("bench", ws);
    onCleanup("bench critical-path stack", async () => {
        await stack.destroy().catch(() => undefined);
    });

    const runs: ModeRun[] = [];
    for (const mode of ["beside", "strict"] as const) {
        const graph = graphOf(mode);
        // Converge on the old pin (no delays), then bump it.
        current = { graph, tag: `${mode}-old`, timed: false };
        await stack.up();
        current = { graph, tag: `${mode}-new`, timed: true };
        const startAt: Record<string, number> = {};
        const endAt: Record<string, number> = {};
        const stepName = (urn: string) => urn.split("::").pop() ?? urn;
        let summaryAt = NaN;
        const onEvent = (e: EngineEvent) => {
            const now = performance.now();
            if (e.summaryEvent) summaryAt = now;
            const pre = e.resourcePreEvent?.metadata;
            if (pre?.type === "pulumi-nodejs:dynamic:Resource") startAt[stepName(pre.urn)] ??= now;
            const out = e.resOutputsEvent?.metadata;
            if (out?.type === "pulumi-nodejs:dynamic:Resource") endAt[stepName(out.urn)] = now;
        };
        const t0 = performance.now();
        const up = await timed(() => stack.up({ onEvent }));
        const took: Record<string, number> = {};
        for (const s of graph) took[s.name] = (endAt[s.name] ?? NaN) - (startAt[s.name] ?? NaN);
        const relStart: Record<string, number> = {};
        for (const s of graph) relStart[s.name] = startAt[s.name] - t0;
        const span = Math.max(...graph.map((s) => endAt[s.name])) - Math.min(...graph.map((s) => startAt[s.name]));
        runs.push({
            mode,
            graph,
            wallMs: summaryAt - t0,
            apiMs: up.ms,
            took,
            startAt: relStart,
            critical: criticalPath(graph, took),
            spanMs: span,
        });
    }

    const [beside, strict] = runs;
    const label = (r: ModeRun) => (r.mode === "beside" ? "beside the validation (default)" : "strict order (kiloclaw:strictOrder true)");
    const figures = runs.flatMap((r) => [
        {
            name: `pin bump, ${label(r)}: \`pulumi up\` wall time`,
            value: ms(r.wallMs),
            meaning: `from the call to the engine's summary event: the program's and plugins' start (${ms(Math.min(...Object.values(r.startAt)))} to the first step), the steps' span ${ms(r.spanMs)}, then the update's end; the Automation API call took ${ms(r.apiMs)} (it reads outputs and history afterwards)`,
        },
        {
            name: `critical path, ${label(r)}`,
            value: ms(r.critical.ms),
            meaning: `${r.critical.chain.join(" → ")}, each step as the engine's events timed it`,
        },
        {
            name: `ratio wall / critical path, ${label(r)}`,
            value: ratio(r.wallMs / r.critical.ms),
            meaning:
                `the steps' span / critical path: ${ratio(r.spanMs / r.critical.ms)}; ` +
                (r.mode === "beside"
                    ? `goal ≤ 1.1×: ${r.wallMs / r.critical.ms <= 1.1 ? "met" : "not met"}`
                    : "the runbook's sequence: its critical path is every step"),
        },
    ]);
    figures.push({
        name: "beside vs strict, wall time",
        value: ratio(beside.wallMs / strict.wallMs),
        meaning: `${ms(strict.wallMs - beside.wallMs)} less per pin bump with these figures`,
    });
    const rows = beside.graph.map((s) => [
        s.name,
        ms(model[s.name].ms),
        `${ms(beside.startAt[s.name])} + ${ms(beside.took[s.name])}`,
        `${ms(strict.startAt[s.name])} + ${ms(strict.took[s.name])}`,
        beside.graph.find((x) => x.name === s.name)!.after.join(", ") || "—",
        strict.graph.find((x) => x.name === s.name)!.after.join(", ") || "—",
    ]);
    return {
        id: 7,
        title: "A pin bump's rollout against its critical path",
        figures,
        tables: [
            {
                title: "Each step: modelled time, then start (after `up` was called) + measured time, and what it waits for",
                header: ["step", "modelled", "beside: start + took", "strict: start + took", "beside: after", "strict: after"],
                rows,
            },
        ],
        notes: [
            "The graph is rollout.ts's (build mode, bench/rollout-graph.ts runs the program under mocks with kiloclaw:strictOrder false and true); the steps are stand-in dynamic resources that wait their modelled time, run by the real engine. Build mode itself needs the docker and command plugins, which cannot be installed here: the build, the validation and the push are modelled, not run.",
            ...beside.graph.map((s) => `${s.name}: ${model[s.name].source}.`),
            "Critical path: the longest chain of steps that wait for each other, each weighted by its time from the engine's resource-pre event to its outputs event; the wall time adds the program's start, the plugins' start and the engine's scheduling between steps.",
            "One run per mode, each after converging the stack on the old pin with no delays; the stack is destroyed afterwards.",
        ],
    };
}
