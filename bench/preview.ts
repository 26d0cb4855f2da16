// Benchmark 6: what a converged `pulumi preview` costs over an empty program, under the same CLI in
// the same run, in CPU seconds (user + sys of the CLI and every process it waits for) beside wall time.
// The rollout runs in prebuilt mode against the sandbox (registry, Fly and worker emulators) after one
// `up`, once per way of loading its TypeScript; the empty program is a JavaScript file that declares
// nothing (the engine's floor). All go through the Automation API with a local backend, as a developer's
// preview does, alternating run by run.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, ProjectRuntimeInfo, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { buildFixture, removeImages, runScript, startRegistry } from "../sandbox/docker";
import { materializeCheckout } from "../sandbox/fixtures/checkout";
import { startSandboxServices } from "../sandbox/services";
import { engineEnv, findPulumi, openRehearsalStack, PROGRAM_RUNTIME } from "../sandbox/workspace";
import { onCleanup } from "./cleanup";
import { BenchResult, median, ms, timed } from "./report";

const APP = "kiloclaw-bench-preview";

/** The ways of running the program's TypeScript that are compared (the first is Pulumi.yaml's). */
function loaders(): Array<{ name: string; runtime: ProjectRuntimeInfo }> {
    const list: Array<{ name: string; runtime: ProjectRuntimeInfo }> = [
        { name: "scripts/ts-register.js (Pulumi.yaml)", runtime: PROGRAM_RUNTIME },
        { name: "ts-node, transpile only (before)", runtime: { name: "nodejs", options: { typescript: true } } },
    ];
    // Measured when installed by hand (`npm install --no-save @swc-node/register @swc/core`); not a dependency.
    try {
        require.resolve("@swc-node/register");
        list.push({
            name: "@swc-node/register",
            runtime: { name: "nodejs", options: { typescript: false, nodeargs: "--require @swc-node/register" } },
        });
    } catch {
        // not installed
    }
    return list;
}

/** GNU time: when present, each node process the CLI starts is timed on its own (the per-process split). */
const GNU_TIME = "/usr/bin/time";

/**
 * A `pulumi` that runs the real one and appends, after each `preview`, the user and sys CPU seconds of
 * every process it waited for (bash's `times`: the CLI, language host, node, plugins) to `log`. With GNU
 * time, the CLI finds a `node` first on its PATH that runs the real one under it and appends
 * "user sys command line" to `nodeLog` (GNU time ignores the SIGINT the engine stops plugins with).
 */
function cpuAccountedPulumi(dir: string, real: string, log: string, nodeLog: string): string {
    const bin = path.join(dir, "bin");
    const nodeBin = path.join(dir, "node-bin");
    const split = fs.existsSync(GNU_TIME);
    fs.mkdirSync(bin, { recursive: true });
    if (split) {
        fs.mkdirSync(nodeBin, { recursive: true });
        fs.writeFileSync(
            path.join(nodeBin, "node"),
            [
                "#!/usr/bin/env bash",
                `exec ${GNU_TIME} -a -o ${JSON.stringify(nodeLog)} -f "%U %S %C" ${JSON.stringify(process.execPath)} "$@"`,
                "",
            ].join("\n"),
            { mode: 0o755 },
        );
    }
    fs.writeFileSync(
        path.join(bin, "pulumi"),
        [
            "#!/usr/bin/env bash",
            `${split ? `PATH=${JSON.stringify(nodeBin)}:"$PATH" ` : ""}${JSON.stringify(real)} "$@"`,
            "rc=$?",
            `if [[ " $* " == *" preview "* ]]; then times > ${JSON.stringify(log + ".times")}; tail -1 ${JSON.stringify(log + ".times")} >> ${JSON.stringify(log)}; fi`,
            "exit $rc",
            "",
        ].join("\n"),
        { mode: 0o755 },
    );
    return dir;
}

/** Where a preview's CPU went: node running the program, the dynamic-provider host, other node starts, the rest (CLI, language host, shim). */
interface Split {
    program: number;
    providerHost: number;
    otherNode: number;
    rest: number;
}

/** The node processes of one preview from `nodeLog` (then emptied), attributed by command line; ms. */
function nodeSplit(nodeLog: string, totalMs: number): Split | undefined {
    if (!fs.existsSync(nodeLog)) return undefined;
    const split: Split = { program: 0, providerHost: 0, otherNode: 0, rest: totalMs };
    for (const line of fs.readFileSync(nodeLog, "utf8").split("\n")) {
        const m = /^(\d+\.\d+) (\d+\.\d+) (.*)$/.exec(line);
        if (!m) continue; // "Command terminated by signal 2": the provider host, stopped by the engine
        const cpu = (Number(m[1]) + Number(m[2])) * 1000;
        // The shim's `node -e "require.resolve('@pulumi/pulumi/cmd/dynamic-provider')"` is an other node start.
        const role = m[3].includes("/cmd/run ") ? "program" : m[3].includes("/cmd/dynamic-provider/index.js") ? "providerHost" : "otherNode";
        split[role] += cpu;
        split.rest -= cpu;
    }
    fs.writeFileSync(nodeLog, "");
    return split;
}

/** "0m1.234s 0m0.567s" (bash `times`, children's line) → ms of user + sys. */
function timesMs(line: string): number {
    const secs = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
    return (secs[0] + secs[1]) * 1000;
}

/** The dynamic providers as the state holds them: their text's size and what loading all of them costs a fresh node. */
async function providerTexts(stack: Stack): Promise<{ bytes: number; count: number; loadCpuMs: number; undiciLoaded: boolean }> {
    const state = await stack.exportStack();
    const texts = (state.deployment.resources ?? [])
        .filter((r: { type: string }) => r.type.startsWith("pulumi-nodejs:dynamic/"))
        .map((r: { inputs: { __provider: string } }) => r.inputs.__provider);
    const file = path.join(os.tmpdir(), `kiloclaw-bench-texts-${process.pid}.json`);
    fs.writeFileSync(file, JSON.stringify(texts));
    try {
        const script =
            `const texts = require(${JSON.stringify(file)}); require("@pulumi/pulumi"); const load = require("require-from-string");` +
            "const t = process.cpuUsage(); texts.forEach((x, i) => load(x, 'p' + i + '.js').handler()); const u = process.cpuUsage(t);" +
            "console.log(JSON.stringify({ cpu: (u.user + u.system) / 1000, undici: Object.keys(require.cache).some((f) => f.includes('/node_modules/undici/')) }));";
        const r = spawnSync("node", ["-e", script], { cwd: path.join(__dirname, ".."), encoding: "utf8" });
        const out = JSON.parse(r.stdout) as { cpu: number; undici: boolean };
        return { bytes: texts.reduce((n: number, t: string) => n + t.length, 0), count: texts.length, loadCpuMs: out.cpu, undiciLoaded: out.undici };
    } finally {
        fs.rmSync(file, { force: true });
    }
}

export async function previewBenchmark(opts: { reps: number }): Promise<BenchResult> {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-bench-preview-"));
    onCleanup(`temp dir ${work}`, () => fs.rmSync(work, { recursive: true, force: true }));
    const realPulumi = await findPulumi();
    const real = path.isAbsolute(realPulumi.command)
        ? realPulumi.command
        : spawnSync("bash", ["-c", `command -v ${realPulumi.command}`], { encoding: "utf8" }).stdout.trim();
    const cpuLog = path.join(work, "cpu.log");
    const nodeLog = path.join(work, "node.log");
    const pulumi = await PulumiCommand.get({ root: cpuAccountedPulumi(path.join(work, "cli"), real, cpuLog, nodeLog), skipVersionCheck: true });
    /** The last preview's CPU (ms) and, with GNU time, its per-process split. */
    const lastCpu = () => {
        const cpu = timesMs(fs.readFileSync(cpuLog, "utf8").trim().split("\n").pop() ?? "");
        return { cpu, split: nodeSplit(nodeLog, cpu) };
    };
    fs.writeFileSync(path.join(work, "passphrase"), "bench-preview\n");

    // Two reference programs in plain JavaScript, same CLI and backend kind: the empty program (the engine's
    // floor) and one that declares a single dynamic resource with a one-line provider (what any program with a
    // dynamic provider pays: @pulumi/pulumi and its closure serializer loaded, the provider host started).
    const reference = async (name: string, program: string) => {
        const dir = path.join(work, name);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "index.js"), program);
        fs.symlinkSync(path.join(__dirname, "..", "node_modules"), path.join(dir, "node_modules"));
        fs.mkdirSync(path.join(work, `${name}-state`));
        const ws = await LocalWorkspace.create({
            workDir: dir,
            pulumiCommand: pulumi,
            envVars: { ...engineEnv(work), PULUMI_BACKEND_URL: `file://${path.join(work, `${name}-state`)}` },
            secretsProvider: "passphrase",
            projectSettings: { name, runtime: { name: "nodejs", options: { typescript: false } } },
        });
        return Stack.createOrSelect("bench", ws);
    };
    const empty = await reference("empty", "module.exports = {};\n");
    const oneDynamic = await reference(
        "one-dynamic",
        [
            'const pulumi = require("@pulumi/pulumi");',
            'const provider = { async create(inputs) { return { id: "one", outs: inputs }; } };',
            'new pulumi.dynamic.Resource(provider, "one", { value: "x" });',
            "",
        ].join("\n"),
    );
    onCleanup("bench one-dynamic stack", async () => {
        await oneDynamic.destroy().catch(() => undefined);
    });
    // Both converged: every preview measured is a no-op.
    await empty.up();
    await oneDynamic.up();

    // The rollout, converged once in prebuilt mode.
    const registry = await startRegistry();
    onCleanup("bench registry", () => registry.stop());
    const local = "kiloclaw-bench-preview:build";
    const ref = `${registry.server}/${APP}:dev-benchpreview1`;
    onCleanup("bench images", () => removeImages([local, ref]));
    await buildFixture(local);
    const push = await runScript("push-image.sh", [], {
        env: { SOURCE_IMAGE: local, TARGET_IMAGE: ref, REGISTRY_SERVER: registry.server },
        input: registry.token,
    });
    if (push.code !== 0) throw new Error(`push-image.sh failed: ${push.stderr}`);
    const checkout = materializeCheckout(path.join(work, "cloud", "kiloclaw"));
    fs.writeFileSync(
        path.join(checkout, ".dev.vars"),
        [
            "INTERNAL_API_SECRET=bench-internal",
            "GATEWAY_TOKEN_SECRET=bench-gw",
            `FLY_API_TOKEN=${registry.token}`,
            `FLY_REGISTRY_APP=${APP}`,
            "",
        ].join("\n"),
    );
    const services = await startSandboxServices({
        registryServer: registry.server,
        token: registry.token,
        devVarsPath: path.join(checkout, ".dev.vars"),
    });
    onCleanup("bench sandbox services", () => services.close());
    const stack = await openRehearsalStack({ dir: path.join(work, "engine"), stackName: "bench", pulumi });
    stack.workspace.envVars.XDG_CACHE_HOME = path.join(work, "cache");
    await stack.setAllConfig({
        "kiloclaw:kiloclawDir": { value: checkout },
        "kiloclaw:userId": { value: "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c11" },
        "kiloclaw:imageRef": { value: ref },
        "kiloclaw:workerUrl": { value: services.worker.url },
        "kiloclaw:flyApiUrl": { value: services.fly.url },
        "kiloclaw:registryServer": { value: registry.server },
        "kiloclaw:warm": { value: "false" },
        "kiloclaw:flyApiToken": { value: registry.token, secret: true },
    });
    onCleanup("bench stack", async () => {
        await stack.destroy().catch(() => undefined);
    });
    await stack.up();

    const texts = await providerTexts(stack);

    // One untimed preview each (module, plugin and transpile caches warm), then alternating timed runs.
    const candidates = loaders();
    const settings = await stack.workspace.projectSettings();
    // Another loader's emit may differ from the provider text in the state (an update of __provider shows); the
    // preview's work is the same. Pulumi.yaml's loader (the first) must show no change at all.
    type Run = { wall: number; cpu: number; split?: Split };
    const previewWith = async (runtime: ProjectRuntimeInfo): Promise<Run> => {
        await stack.workspace.saveProjectSettings({ ...settings, runtime });
        const t = await timed(() => stack.preview({ expectNoChanges: runtime === PROGRAM_RUNTIME }));
        return { wall: t.ms, ...lastCpu() };
    };
    const previewOf = async (s: Stack): Promise<Run> => {
        const t = await timed(() => s.preview({ expectNoChanges: true }));
        return { wall: t.ms, ...lastCpu() };
    };
    const loadStart = os.loadavg();
    await previewOf(empty);
    await previewOf(oneDynamic);
    for (const c of candidates) await previewWith(c.runtime);
    const emptyRuns: Run[] = [];
    const oneDynamicRuns: Run[] = [];
    const runs: Run[][] = candidates.map(() => []);
    const rows: string[][] = [];
    const pair = (x: { wall: number; cpu: number }) => `${ms(x.cpu)} / ${ms(x.wall)}`;
    for (let i = 0; i < opts.reps; i++) {
        emptyRuns.push(await previewOf(empty));
        oneDynamicRuns.push(await previewOf(oneDynamic));
        const row = [String(i + 1), pair(emptyRuns[i]), pair(oneDynamicRuns[i])];
        for (const [k, c] of candidates.entries()) {
            runs[k].push(await previewWith(c.runtime));
            row.push(pair(runs[k][i]));
        }
        rows.push(row);
    }
    await stack.workspace.saveProjectSettings(settings);
    const loadEnd = os.loadavg();
    const med = (xs: Run[]) => ({ wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)) });
    const floor = med(emptyRuns);
    const dynFloor = med(oneDynamicRuns);
    rows.push(["median", pair(floor), pair(dynFloor), ...runs.map((r) => pair(med(r)))]);
    const figures = [
        {
            name: "empty JavaScript program, `pulumi preview`, median",
            value: `${ms(floor.cpu)} CPU / ${ms(floor.wall)} wall`,
            meaning: `${opts.reps} run(s); the engine's floor: same CLI and backend kind, no resources (converged)`,
        },
        {
            name: "one dynamic resource (JavaScript, one-line provider), no-op preview, median",
            value: `${ms(dynFloor.cpu)} CPU / ${ms(dynFloor.wall)} wall`,
            meaning: `over the empty program: ${ms(dynFloor.cpu - floor.cpu)} CPU, ${ms(dynFloor.wall - floor.wall)} wall: what having a dynamic provider at all costs`,
        },
    ];
    for (const [k, c] of candidates.entries()) {
        const m = med(runs[k]);
        const overCpu = median(runs[k].map((r, i) => r.cpu - emptyRuns[i].cpu));
        figures.push({
            name: `no-op rollout preview, ${c.name}, median`,
            value: `${ms(m.cpu)} CPU / ${ms(m.wall)} wall`,
            meaning: `over the empty program: ${ms(m.cpu - floor.cpu)} CPU (median of the per-run differences ${ms(overCpu)}), ${ms(m.wall - floor.wall)} wall; over one dynamic resource: ${ms(m.cpu - dynFloor.cpu)} CPU${
                k === 0 ? "; goal ≤ 1.0 CPU-second over the empty program: " + (m.cpu - floor.cpu <= 1000 ? "met" : "not met") : ""
            }`,
        });
    }
    figures.push({
        name: "dynamic providers in the state",
        value: `${texts.count} texts, ${(texts.bytes / 1024).toFixed(0)} KiB`,
        meaning: `evaluating all of them in a fresh node (after @pulumi/pulumi, as the provider host does): ${ms(texts.loadCpuMs)} CPU; undici loaded: ${texts.undiciLoaded ? "yes" : "no"}`,
    });
    const tables = [
        {
            title: "Each repetition (CPU / wall)",
            header: ["rep", "empty program", "one dynamic resource", ...candidates.map((c) => c.name)],
            rows,
        },
    ];
    // Per process: medians of each part's CPU over the runs (GNU time only).
    const programs: Array<[string, Run[]]> = [
        ["empty program", emptyRuns],
        ["one dynamic resource", oneDynamicRuns],
        ...candidates.map((c, k): [string, Run[]] => [c.name, runs[k]]),
    ];
    if (emptyRuns.every((r) => r.split)) {
        const part = (xs: Run[], key: keyof Split) => ms(median(xs.map((x) => x.split?.[key] ?? NaN)));
        tables.push({
            title: "Where the CPU goes, per process (median CPU)",
            header: ["program", "node running the program", "dynamic-provider host (node)", "other node starts", "CLI, language host, shim", "total"],
            rows: programs.map(([name, xs]) => [
                name,
                part(xs, "program"),
                part(xs, "providerHost"),
                part(xs, "otherNode"),
                part(xs, "rest"),
                ms(med(xs).cpu),
            ]),
        });
    }
    return {
        id: 6,
        title: "No-op preview vs an empty program",
        figures,
        tables,
        notes: [
            "CPU: user + sys of `pulumi preview` and every process it waited for (the language host, node running the program, the dynamic-provider host, plugins), from bash's `times` in a wrapper around the CLI; wall: the Automation API call.",
            "Alternating runs (empty, one dynamic resource, then each loader) after one untimed warm-up preview each; the stacks are destroyed and every temp dir, image and service removed afterwards.",
            "Per process (with GNU time at /usr/bin/time): the CLI finds a `node` first on its PATH that runs the real one under GNU time; each node process is attributed by its command line (@pulumi/pulumi/cmd/run: the program; cmd/dynamic-provider: the provider host started by the pulumi-resource-pulumi-nodejs shim; other: `node --version` and the shim's `node -e require.resolve(...)`); the rest of the total is the CLI, the language host and the shim (Go and sh).",
            "Pulumi.yaml's loader previews with --expect-no-changes; the others preview without it: an emit that differs from the provider texts the state holds (swc's) proposes an update of those texts (same diffs otherwise).",
            `Load average during the runs: ${loadStart.map((l) => l.toFixed(1)).join(", ")} at the start, ${loadEnd.map((l) => l.toFixed(1)).join(", ")} at the end (2 cores, shared): CPU seconds are the figure to compare; wall time follows the load.`,
            "scripts/ts-register.js transpiles with the project's TypeScript (tsc's emit) and keeps the JavaScript by content; a run whose files are all cached does not load TypeScript for that.",
            "The one-dynamic-resource program is what the engine and SDK charge any program with a dynamic provider, not the rollout's code: `require(\"@pulumi/pulumi\")` (the empty program's runner does not) loads its runtime index, which loads the closure serializer (TypeScript, to parse each captured function) and @npmcli/arborist (for computeCodePaths, which dynamic providers never use); the provider host (`node @pulumi/pulumi/cmd/dynamic-provider`, started by the pulumi-resource-pulumi-nodejs shim after one more `node -e`) loads the same runtime index, though it only evaluates the provider texts.",
        ],
    };
}
