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

/**
 * A `pulumi` that runs the real one and appends, after each `preview`, the user and sys CPU seconds of
 * every process it waited for (bash's `times`: the CLI, language host, node, plugins) to `log`.
 */
function cpuAccountedPulumi(dir: string, real: string, log: string): string {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(
        path.join(bin, "pulumi"),
        [
            "#!/usr/bin/env bash",
            `${JSON.stringify(real)} "$@"`,
            "rc=$?",
            `if [[ " $* " == *" preview "* ]]; then times > ${JSON.stringify(log + ".times")}; tail -1 ${JSON.stringify(log + ".times")} >> ${JSON.stringify(log)}; fi`,
            "exit $rc",
            "",
        ].join("\n"),
        { mode: 0o755 },
    );
    return dir;
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
    const pulumi = await PulumiCommand.get({ root: cpuAccountedPulumi(path.join(work, "cli"), real, cpuLog), skipVersionCheck: true });
    const lastCpuMs = () => timesMs(fs.readFileSync(cpuLog, "utf8").trim().split("\n").pop() ?? "");

    // The empty program: same CLI, same backend kind, no resources, plain JavaScript.
    const emptyDir = path.join(work, "empty");
    fs.mkdirSync(emptyDir);
    fs.writeFileSync(path.join(emptyDir, "index.js"), "module.exports = {};\n");
    fs.symlinkSync(path.join(__dirname, "..", "node_modules"), path.join(emptyDir, "node_modules"));
    fs.mkdirSync(path.join(work, "empty-state"));
    fs.writeFileSync(path.join(work, "passphrase"), "bench-preview\n");
    const emptyWs = await LocalWorkspace.create({
        workDir: emptyDir,
        pulumiCommand: pulumi,
        envVars: { ...engineEnv(work), PULUMI_BACKEND_URL: `file://${path.join(work, "empty-state")}` },
        secretsProvider: "passphrase",
        projectSettings: { name: "empty", runtime: { name: "nodejs", options: { typescript: false } } },
    });
    const empty = await Stack.createOrSelect("bench", emptyWs);

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
    const previewWith = async (runtime: ProjectRuntimeInfo) => {
        await stack.workspace.saveProjectSettings({ ...settings, runtime });
        const t = await timed(() => stack.preview({ expectNoChanges: runtime === PROGRAM_RUNTIME }));
        return { wall: t.ms, cpu: lastCpuMs() };
    };
    const loadStart = os.loadavg();
    await empty.preview();
    for (const c of candidates) await previewWith(c.runtime);
    const emptyRuns: Array<{ wall: number; cpu: number }> = [];
    const runs: Array<Array<{ wall: number; cpu: number }>> = candidates.map(() => []);
    const rows: string[][] = [];
    const pair = (x: { wall: number; cpu: number }) => `${ms(x.cpu)} / ${ms(x.wall)}`;
    for (let i = 0; i < opts.reps; i++) {
        const e = await timed(() => empty.preview());
        emptyRuns.push({ wall: e.ms, cpu: lastCpuMs() });
        const row = [String(i + 1), pair(emptyRuns[i])];
        for (const [k, c] of candidates.entries()) {
            runs[k].push(await previewWith(c.runtime));
            row.push(pair(runs[k][i]));
        }
        rows.push(row);
    }
    await stack.workspace.saveProjectSettings(settings);
    const loadEnd = os.loadavg();
    const med = (xs: Array<{ wall: number; cpu: number }>) => ({ wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)) });
    const floor = med(emptyRuns);
    rows.push(["median", pair(floor), ...runs.map((r) => pair(med(r)))]);
    const figures = [
        {
            name: "empty JavaScript program, `pulumi preview`, median",
            value: `${ms(floor.cpu)} CPU / ${ms(floor.wall)} wall`,
            meaning: `${opts.reps} run(s); the engine's floor: same CLI and backend kind, no resources`,
        },
    ];
    for (const [k, c] of candidates.entries()) {
        const m = med(runs[k]);
        const overCpu = median(runs[k].map((r, i) => r.cpu - emptyRuns[i].cpu));
        figures.push({
            name: `no-op rollout preview, ${c.name}, median`,
            value: `${ms(m.cpu)} CPU / ${ms(m.wall)} wall`,
            meaning: `over the empty program: ${ms(m.cpu - floor.cpu)} CPU (median of the per-run differences ${ms(overCpu)}), ${ms(m.wall - floor.wall)} wall${
                k === 0 ? "; goal ≤ 1.0 CPU-second: " + (m.cpu - floor.cpu <= 1000 ? "met" : "not met") : ""
            }`,
        });
    }
    figures.push({
        name: "dynamic providers in the state",
        value: `${texts.count} texts, ${(texts.bytes / 1024).toFixed(0)} KiB`,
        meaning: `evaluating all of them in a fresh node (after @pulumi/pulumi, as the provider host does): ${ms(texts.loadCpuMs)} CPU; undici loaded: ${texts.undiciLoaded ? "yes" : "no"}`,
    });
    return {
        id: 6,
        title: "No-op preview vs an empty program",
        figures,
        tables: [
            {
                title: "Each repetition (CPU / wall)",
                header: ["rep", "empty program", ...candidates.map((c) => c.name)],
                rows,
            },
        ],
        notes: [
            "CPU: user + sys of `pulumi preview` and every process it waited for (the language host, node running the program, the dynamic-provider host, plugins), from bash's `times` in a wrapper around the CLI; wall: the Automation API call.",
            "Alternating runs (empty, then each loader) after one untimed warm-up preview each; the stack is destroyed and every temp dir, image and service removed afterwards.",
            "Pulumi.yaml's loader previews with --expect-no-changes; the others preview without it: an emit that differs from the provider texts the state holds (swc's) proposes an update of those texts (same diffs otherwise).",
            `Load average during the runs: ${loadStart.map((l) => l.toFixed(1)).join(", ")} at the start, ${loadEnd.map((l) => l.toFixed(1)).join(", ")} at the end (2 cores, shared): CPU seconds are the figure to compare; wall time follows the load.`,
            "scripts/ts-register.js transpiles with the project's TypeScript (tsc's emit) and keeps the JavaScript by content; @pulumi/pulumi loads TypeScript anyway (its closure serializer parses functions with it), so that load is in the floor of any program with dynamic providers, not in the difference.",
        ],
    };
}
