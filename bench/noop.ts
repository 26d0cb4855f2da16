// Benchmark 4: a second run over unchanged inputs is a no-op. Each provider
// creates its resource once against the emulators; then diff (olds = outputs,
// news = the same inputs) and read run for all three, and we count what the
// emulators saw during that second phase: no POST/PUT/DELETE may appear.
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider } from "../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider } from "../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider } from "../dynamic-providers/workerInstanceProvider";
import { RequestLogEntry } from "../sandbox/emulators/server";
import {
    closeStage,
    instanceInputs as stageInstanceInputs,
    startStage,
    versionInputs as stageVersionInputs,
    warmInputs as stageWarmInputs,
} from "../sandbox/stage";
import { onCleanup, withCleanup } from "./cleanup";
import { BenchResult, Figure, ms, timed } from "./report";

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

type Provider = pulumi.dynamic.ResourceProvider;

interface ProviderCase {
    name: string;
    provider: Provider;
    inputs: Record<string, unknown>;
}

interface PhaseTwo {
    name: string;
    diffChanges: string;
    read: string;
    diffAfterRead: string;
    mutating: number;
    total: number;
    byMethod: string;
    ms: number;
}

function countByMethod(entries: RequestLogEntry[]): string {
    const counts = new Map<string, number>();
    for (const e of entries) counts.set(e.method, (counts.get(e.method) ?? 0) + 1);
    return counts.size === 0 ? "none" : [...counts].map(([m, n]) => `${m} ${n}`).join(", ");
}

export async function noopBenchmark(): Promise<BenchResult> {
    return withCleanup(async () => {
        // Fast emulator time: phase one only has to get the resources created. The worker re-reads
        // .dev.vars per request, standing in for the `pnpm start` restart after the tag changes.
        const stage = await startStage({ fly: { msPerSecond: 10 }, worker: { reloadDevVarsOnRequest: true } });
        onCleanup("emulators and temp dir", () => closeStage(stage));
        const { fly, worker, devVarsPath } = stage;
        const warmInputs = stageWarmInputs(stage, { owner: "kiloclaw-rollout.bench", timeoutSeconds: 60 });
        const versionInputs = stageVersionInputs(stage);
        const instanceInputs = stageInstanceInputs(stage, { timeoutSeconds: 60, pollMs: 50 });
        const cases: ProviderCase[] = [
            { name: "WarmMachine", provider: warmMachineProvider, inputs: { ...warmInputs } },
            { name: "WorkerImageVersion", provider: workerImageVersionProvider, inputs: { ...versionInputs } },
            { name: "WorkerInstance", provider: workerInstanceProvider, inputs: { ...instanceInputs } },
        ];

        // Phase one: create each resource once (in rollout order).
        const created = new Map<string, { id: string; outs: Record<string, unknown> }>();
        const phaseOne = await timed(async () => {
            for (const c of cases) {
                const r = await c.provider.create(c.inputs);
                created.set(c.name, { id: r.id, outs: r.outs as Record<string, unknown> });
            }
        });
        const phaseOneRequests = fly.requests.length + worker.requests.length;
        const devVarsBefore = { text: fs.readFileSync(devVarsPath, "utf8"), mtime: fs.statSync(devVarsPath).mtimeMs };

        // Phase two: the second run's diff and read, per provider, with its own slice of the request logs.
        const rows: PhaseTwo[] = [];
        for (const c of cases) {
            const { id, outs } = created.get(c.name)!;
            const flyMark = fly.requests.length;
            const workerMark = worker.requests.length;
            const t = await timed(async () => {
                const diff = await c.provider.diff!(id, outs, c.inputs);
                let read = "no read method (state kept as is)";
                let diffAfterRead = "n/a";
                if (c.provider.read) {
                    const r = await c.provider.read(id, outs);
                    read = r.id === id ? "found, same id" : `id "${r.id}"`;
                    const again = await c.provider.diff!(id, r.props ?? {}, c.inputs);
                    diffAfterRead = `changes=${again.changes}`;
                }
                return { diff, read, diffAfterRead };
            });
            const seen = [...fly.requests.slice(flyMark), ...worker.requests.slice(workerMark)];
            rows.push({
                name: c.name,
                diffChanges: `changes=${t.result.diff.changes}${t.result.diff.replaces?.length ? ` replaces=${t.result.diff.replaces.join(",")}` : ""}`,
                read: t.result.read,
                diffAfterRead: t.result.diffAfterRead,
                mutating: seen.filter((e) => MUTATING.has(e.method)).length,
                total: seen.length,
                byMethod: countByMethod(seen),
                ms: t.ms,
            });
        }
        const devVarsUnchanged =
            fs.readFileSync(devVarsPath, "utf8") === devVarsBefore.text && fs.statSync(devVarsPath).mtimeMs === devVarsBefore.mtime;
        const mutating = rows.reduce((n, r) => n + r.mutating, 0);
        const total = rows.reduce((n, r) => n + r.total, 0);
        const anyChanges = rows.some((r) => r.diffChanges.startsWith("changes=true") || r.diffAfterRead === "changes=true");

        const figures: Figure[] = [
            {
                name: "mutating requests in the second run",
                value: String(mutating),
                meaning: "POST/PUT/PATCH/DELETE seen by the Fly and worker emulators during diff + read of all three providers (should be 0)",
            },
            { name: "requests in the second run, all methods", value: String(total), meaning: "every request during that phase (reads are GETs)" },
            {
                name: "diffs reporting changes",
                value: anyChanges ? "some (see table)" : "none",
                meaning: "diff(olds = outputs, news = same inputs), and again after read (a refresh then a preview)",
            },
            {
                name: ".dev.vars untouched",
                value: devVarsUnchanged ? "yes" : "NO",
                meaning: "same bytes and mtime before and after the second run (WorkerImageVersion reads it)",
            },
            {
                name: "requests to create the three resources",
                value: String(phaseOneRequests),
                meaning: `phase one, for contrast (Fly emulator at msPerSecond 10; took ${ms(phaseOne.ms)})`,
            },
        ];
        return {
            id: 4,
            title: "No-op: a second run over unchanged inputs",
            figures,
            tables: [
                {
                    title: "Second run, per provider",
                    header: ["provider", "diff", "read", "diff after read", "mutating", "requests", "by method", "time"],
                    rows: rows.map((r) => [
                        r.name,
                        r.diffChanges,
                        r.read,
                        r.diffAfterRead,
                        String(r.mutating),
                        String(r.total),
                        r.byMethod,
                        ms(r.ms),
                    ]),
                },
            ],
            notes: [
                "Pulumi calls diff on every `pulumi up`/`preview`, and read only on `pulumi refresh` (or `up --refresh`); both are counted here.",
                "WorkerImageVersion reads .dev.vars from disk, so its read makes no request; WorkerInstance reads GET /api/platform/status.",
            ],
        };
    });
}
