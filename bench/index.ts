// `npm run bench`: the benchmarks for "Faults, secrets and speed". They print
// figures, not verdicts (only sanity checks fail a run), clean up everything
// they create, and write the figures to BENCHMARKS.md at the repo root.
//
//   npm run bench                      all four, then BENCHMARKS.md
//   npm run bench -- --only 2          one of them (comma list ok); no BENCHMARKS.md unless --write
//   npm run bench -- --only 6 --write  replaces only those sections of BENCHMARKS.md
//   npm run bench -- --reps 5          repetitions for the timed comparisons (default 3)
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { cleanupAll, installSignalCleanup } from "./cleanup";
import { contextHashBenchmark } from "./context-hash";
import { criticalPathBenchmark } from "./critical-path";
import { flyWaitBenchmark } from "./fly-wait";
import { noopBenchmark } from "./noop";
import { previewBenchmark } from "./preview";
import { readinessBenchmark } from "./readiness";
import { BenchResult, markdownTable, ms, printResult, resultMarkdown } from "./report";
import { smokeBenchmark } from "./smoke";

const REPO_ROOT = path.resolve(__dirname, "..");

interface Args {
    only?: number[];
    reps: number;
    write: boolean;
}

const BENCHMARKS: Array<{ id: number; title: string; run: (a: Args) => Promise<BenchResult> }> = [
    { id: 1, title: "Image validation: floor, project and runbook on a gateway that boots", run: (a) => smokeBenchmark({ reps: a.reps }) },
    { id: 2, title: "Build-context hashing", run: (a) => contextHashBenchmark({ reps: Math.max(a.reps, 5) }) },
    { id: 3, title: "Readiness: delay and requests", run: () => readinessBenchmark() },
    { id: 4, title: "No-op second run", run: () => noopBenchmark() },
    { id: 5, title: "Fly wait: calls when Fly answers at once", run: () => flyWaitBenchmark() },
    { id: 6, title: "No-op preview vs an empty program", run: (a) => previewBenchmark({ reps: a.reps }) },
    { id: 7, title: "A pin bump's rollout against its critical path", run: () => criticalPathBenchmark({ pushSeconds: 15 }) },
];

function usage(message?: string): never {
    if (message) console.error(`bench: ${message}`);
    console.error("usage: npm run bench -- [--only <n>[,<n>...]] [--reps <n>] [--write]");
    process.exit(2);
}

function parseArgs(argv: string[]): Args {
    const args: Args = { reps: 3, write: true };
    let onlyGiven = false;
    let writeGiven = false;
    for (let i = 0; i < argv.length; i++) {
        const [flag, inline] = argv[i].split("=", 2);
        const value = () => inline ?? argv[++i] ?? usage(`${flag} needs a value`);
        if (flag === "--only") {
            onlyGiven = true;
            args.only = value()
                .split(",")
                .map((s) => Number(s.trim()));
            if (args.only.some((n) => !BENCHMARKS.some((b) => b.id === n))) usage(`--only takes ${BENCHMARKS.map((b) => b.id).join(", ")}`);
        } else if (flag === "--reps") {
            args.reps = Number(value());
            if (!Number.isInteger(args.reps) || args.reps < 1) usage("--reps must be a positive whole number");
        } else if (flag === "--write") {
            writeGiven = true;
        } else if (flag === "--help" || flag === "-h") {
            usage();
        } else {
            usage(`unknown argument ${argv[i]}`);
        }
    }
    // A partial run would overwrite the full figures: only on request.
    args.write = !onlyGiven || writeGiven;
    return args;
}

function commandOutput(cmd: string, args: string[]): string {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : `unavailable (${cmd} ${args.join(" ")} failed)`;
}

function machineFacts(): Array<[string, string]> {
    const dirty = commandOutput("git", ["-C", REPO_ROOT, "status", "--porcelain"]);
    return [
        ["nproc", commandOutput("nproc", [])],
        ["CPU", os.cpus()[0]?.model ?? "unknown"],
        ["memory", `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`],
        ["node", process.version],
        ["docker", commandOutput("docker", ["version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}"])],
        ["OS", `${os.type()} ${os.release()} (${os.arch()})`],
        // Other work on the machine (a test suite on the same Docker engine) shows up as noise.
        [
            "load average at start",
            os
                .loadavg()
                .map((l) => l.toFixed(2))
                .join(", "),
        ],
        ["commit", `${commandOutput("git", ["-C", REPO_ROOT, "rev-parse", "--short", "HEAD"])}${dirty ? " + uncommitted changes" : ""}`],
    ];
}

function writeMarkdown(
    results: BenchResult[],
    failures: Array<{ id: number; title: string; error: string }>,
    facts: Array<[string, string]>,
    started: Date,
    argv: string[],
    partial: boolean,
): string {
    const command = `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`;
    const parts = [
        "# Benchmarks",
        `Figures from \`${command}\` (bench/index.ts), run ${started.toISOString()}. Benchmarks, not tests: they measure and print; rerun to refresh this file (it is overwritten).`,
        markdownTable(["machine", ""], facts),
        ...results.map(resultMarkdown),
    ];
    for (const f of failures) parts.push(`## ${f.id}. ${f.title}\n\nDid not complete: ${f.error.split("\n")[0]}`);
    const file = path.join(REPO_ROOT, "BENCHMARKS.md");
    if (partial && fs.existsSync(file)) {
        // Only the sections measured now change; each says how and when it was measured.
        const sections = fs
            .readFileSync(file, "utf8")
            .trimEnd()
            .split(/\n(?=## \d+\. )/);
        const stamp = `Measured by \`${command}\` at ${started.toISOString()}, commit ${facts.find(([k]) => k === "commit")?.[1]}, load average at start ${facts.find(([k]) => k.startsWith("load"))?.[1]}.`;
        for (const r of results) {
            const md = resultMarkdown(r).replace(/\n\n/, `\n\n${stamp}\n\n`);
            const at = sections.findIndex((sec) => sec.startsWith(`## ${r.id}. `));
            if (at >= 0) sections[at] = md;
            else sections.push(md);
        }
        fs.writeFileSync(file, sections.join("\n\n") + "\n");
        return file;
    }
    fs.writeFileSync(file, parts.join("\n\n") + "\n");
    return file;
}

async function main(): Promise<void> {
    const argv = process.argv.slice(2);
    const args = parseArgs(argv);
    installSignalCleanup();
    const started = new Date();
    const facts = machineFacts();
    console.log(`bench: ${started.toISOString()}; ${facts.map(([k, v]) => `${k}: ${v}`).join("; ")}`);

    const selected = BENCHMARKS.filter((b) => !args.only || args.only.includes(b.id));
    const results: BenchResult[] = [];
    const failures: Array<{ id: number; title: string; error: string }> = [];
    for (const b of selected) {
        console.log(`\nbench: running ${b.id}. ${b.title}...`);
        const t0 = performance.now();
        try {
            const r = await b.run(args);
            r.elapsedMs = performance.now() - t0;
            results.push(r);
            printResult(r);
        } catch (err) {
            const error = err instanceof Error ? err.message : String(err);
            failures.push({ id: b.id, title: b.title, error });
            console.error(`\n=== ${b.id}. ${b.title}: FAILED after ${ms(performance.now() - t0)}\n${error}`);
        } finally {
            await cleanupAll();
        }
    }

    if (args.write) {
        const file = writeMarkdown(results, failures, facts, started, argv, args.only !== undefined);
        console.log(`\nbench: wrote ${path.relative(process.cwd(), file) || file}`);
    } else {
        console.log("\nbench: --only given, BENCHMARKS.md left as it is (add --write to overwrite it)");
    }
    if (failures.length > 0) process.exitCode = 1;
}

main().catch(async (err) => {
    console.error(err);
    await cleanupAll();
    process.exit(1);
});
