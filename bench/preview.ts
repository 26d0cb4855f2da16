// Benchmark 6: what a converged `pulumi preview` costs over an empty program, under the same CLI in
// the same run. The rollout runs in prebuilt mode against the sandbox (registry, Fly and worker
// emulators) after one `up`; the empty program is a TypeScript project whose index.ts exports nothing.
// Both go through the Automation API with a local backend, as a developer's preview does.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { buildFixture, removeImages, runScript, startRegistry } from "../sandbox/docker";
import { materializeCheckout } from "../sandbox/fixtures/checkout";
import { startSandboxServices } from "../sandbox/services";
import { engineEnv, findPulumi, openRehearsalStack } from "../sandbox/workspace";
import { onCleanup } from "./cleanup";
import { BenchResult, median, ms, timed } from "./report";

const APP = "kiloclaw-bench-preview";

export async function previewBenchmark(opts: { reps: number }): Promise<BenchResult> {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-bench-preview-"));
    onCleanup(`temp dir ${work}`, () => fs.rmSync(work, { recursive: true, force: true }));
    const pulumi = await findPulumi();

    // The empty program: same CLI, same backend kind, no resources.
    const emptyDir = path.join(work, "empty");
    fs.mkdirSync(emptyDir);
    fs.writeFileSync(path.join(emptyDir, "index.ts"), "export {};\n");
    // Compiled the way the rollout is (transpile only), so the difference is the program's own work.
    fs.writeFileSync(
        path.join(emptyDir, "tsconfig.json"),
        JSON.stringify({
            compilerOptions: { target: "ES2022", module: "commonjs", moduleResolution: "node", strict: true },
            "ts-node": { transpileOnly: true },
        }),
    );
    fs.symlinkSync(path.join(__dirname, "..", "node_modules"), path.join(emptyDir, "node_modules"));
    fs.mkdirSync(path.join(work, "empty-state"));
    fs.writeFileSync(path.join(work, "passphrase"), "bench-preview\n");
    const emptyWs = await LocalWorkspace.create({
        workDir: emptyDir,
        pulumiCommand: pulumi,
        envVars: { ...engineEnv(work), PULUMI_BACKEND_URL: `file://${path.join(work, "empty-state")}` },
        secretsProvider: "passphrase",
        projectSettings: { name: "empty", runtime: { name: "nodejs", options: { typescript: true } } },
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

    // One untimed preview each (module and plugin caches warm), then interleaved timed runs.
    await empty.preview();
    await stack.preview({ expectNoChanges: true });
    const emptyTimes: number[] = [];
    const rolloutTimes: number[] = [];
    const rows: string[][] = [];
    for (let i = 0; i < opts.reps; i++) {
        const e = await timed(() => empty.preview());
        const r = await timed(() => stack.preview({ expectNoChanges: true }));
        emptyTimes.push(e.ms);
        rolloutTimes.push(r.ms);
        rows.push([String(i + 1), ms(e.ms), ms(r.ms), ms(r.ms - e.ms)]);
    }
    const over = median(rolloutTimes) - median(emptyTimes);
    rows.push(["median", ms(median(emptyTimes)), ms(median(rolloutTimes)), ms(over)]);
    return {
        id: 6,
        title: "No-op preview vs an empty program",
        figures: [
            {
                name: "empty TypeScript program, `pulumi preview`, median",
                value: ms(median(emptyTimes)),
                meaning: `${opts.reps} run(s), same CLI and backend kind`,
            },
            {
                name: "converged rollout (prebuilt mode), `pulumi preview --expect-no-changes`, median",
                value: ms(median(rolloutTimes)),
                meaning: "after one `up` against the sandbox; the program runs transpile-only (tsconfig ts-node.transpileOnly)",
            },
            { name: "over the empty program", value: ms(over), meaning: "goal: within 1 s" },
        ],
        tables: [{ title: "Each repetition", header: ["rep", "empty program", "no-op rollout preview", "difference"], rows }],
        notes: [
            "Interleaved runs after one untimed warm-up preview each; the stack is destroyed and every temp dir, image and service removed afterwards.",
        ],
    };
}
