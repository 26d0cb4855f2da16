// What Pulumi stores is the serialized provider text, run later in another
// process: load that text (as the engine's dynamic-provider host does) and
// drive it against the emulators.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { devFlyAppName } from "../../lib/identity";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { PROGRAM_RUNTIME } from "../../sandbox/workspace";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { fakeCheckout, runProgram, unwrapSecrets, loadSerializedProvider } from "../program-harness";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c07";
const TAG = "dev-444444444444";
const FLY_TOKEN = "classic-fly-token";
const INTERNAL_KEY = "serialized-internal-key";

describe("serialized providers (the __provider text in the state)", function () {
    this.timeout(120_000);
    let fly: FlyEmulator;
    let worker: WorkerEmulator;
    let texts: Record<string, string>;
    let inputsByType: Record<string, Record<string, any>>;
    let kiloclawDir: string;
    let config: Record<string, string>;

    before(async () => {
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: 10 });
        const devVars = [
            `INTERNAL_API_SECRET=${INTERNAL_KEY}`,
            "GATEWAY_TOKEN_SECRET=gw",
            `FLY_API_TOKEN=${FLY_TOKEN}`,
            "WORKER_ENV=development",
            "FLY_REGISTRY_APP=kiloclaw-dev",
            "FLY_IMAGE_TAG=dev-old",
            "OPENCLAW_VERSION=2026.2.9",
            "",
        ].join("\n");
        kiloclawDir = fakeCheckout({ devVars }).kiloclawDir;
        // Stands in for the restart that makes the worker read the new tag.
        worker = await WorkerEmulator.start({ devVarsPath: path.join(kiloclawDir, ".dev.vars"), flyApiUrl: fly.url, reloadDevVarsOnRequest: true });
        config = {
            "kiloclaw:kiloclawDir": kiloclawDir,
            "kiloclaw:userId": USER,
            "kiloclaw:imageRef": `registry.fly.io/kiloclaw-dev:${TAG}`,
            "kiloclaw:workerUrl": worker.url,
            "kiloclaw:flyApiUrl": fly.url,
        };
        const run = await runProgram({ config });
        assert.equal(run.error, undefined, run.error);
        texts = {};
        inputsByType = {};
        for (const r of run.resources.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic/"))) {
            const t = r.type.split(":").pop()!;
            texts[t] = r.inputs.__provider;
            const { __provider, ...rest } = unwrapSecrets(r.inputs);
            inputsByType[t] = rest;
        }
        assert.deepEqual(Object.keys(texts).sort(), ["PrebuiltImage", "WarmMachine", "WorkerImageVersion", "WorkerInstance"]);
    });
    after(async () => {
        await worker.close();
        await fly.close();
    });

    /** Deserialized as the dynamic-provider host does it, then configured with the stack config (secrets from .dev.vars). */
    const load = (t: string) => {
        const provider = loadSerializedProvider(texts[t], t);
        return { provider, configured: provider.configure?.({ config: { get: (k: string) => config[k], require: (k: string) => config[k] } }) };
    };

    it("keeps access out of the state: no worker URL, key, Fly URL or token among the inputs", () => {
        for (const t of ["WorkerImageVersion", "WorkerInstance"]) {
            for (const key of ["workerUrl", "internalApiKey", "flyApiUrl", "flyApiToken", "devVarsPath"])
                assert.ok(!(key in inputsByType[t]), `${t} stores ${key}`);
        }
        // Policy-only facts are the component's props, not the provider's inputs.
        for (const key of ["openclawPin", "registryServer", "registryApp", "workerRegistryApp", "workerSettings", "envLocalKeys"]) {
            assert.ok(!(key in inputsByType.WorkerImageVersion), `WorkerImageVersion's provider gets ${key}`);
        }
    });

    it("captures no secret, agent or local path module by value", () => {
        for (const [t, text] of Object.entries(texts)) {
            assert.ok(!text.includes(INTERNAL_KEY) && !text.includes(FLY_TOKEN), "a secret was captured into the provider text");
            // PrebuiltImage talks to the docker CLI, not HTTP (test/integration/prebuilt-image.test.ts runs its text).
            if (t !== "PrebuiltImage") assert.match(text, /require\("undici[/"]/);
        }
    });

    it("is the text the engine stores: Pulumi.yaml's loader serializes the same providers", function () {
        this.timeout(300_000); // a second node runs the program (a cold transpile cache on a loaded machine: minutes)
        const repo = path.resolve(__dirname, "..", "..");
        const nodeargs = PROGRAM_RUNTIME.options.nodeargs.split(/\s+/);
        const r = spawnSync("node", [...nodeargs, path.join(repo, "test", "provider-texts.ts")], {
            cwd: repo,
            encoding: "utf8",
            env: { ...process.env, KILOCLAW_TEST_CONFIG: JSON.stringify(config) },
        });
        assert.equal(r.status, 0, r.stderr);
        const engineTexts = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, string>;
        assert.deepEqual(Object.keys(engineTexts).sort(), Object.keys(texts).sort());
        for (const t of Object.keys(texts)) assert.ok(engineTexts[t] === texts[t], `${t}'s text differs under ${nodeargs.join(" ")}`);
    });

    it("loads no HTTP client at start: each provider requires undici on its first request", () => {
        // As the dynamic-provider host starts on every preview: a fresh node evaluates each text (no request is made).
        const file = path.join(kiloclawDir, "..", "provider-texts.json");
        fs.writeFileSync(file, JSON.stringify(texts));
        const script =
            `const texts = require(${JSON.stringify(file)}); const load = require("require-from-string");` +
            "for (const [t, text] of Object.entries(texts)) load(text, t + '.js').handler();" +
            "console.log(Object.keys(require.cache).filter((f) => /[\\/]node_modules[\\/]undici[\\/]/.test(f)).length);";
        const r = spawnSync("node", ["-e", script], { cwd: path.resolve(__dirname, "..", ".."), encoding: "utf8" });
        fs.rmSync(file);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), "0", "undici's modules were loaded with the provider texts");
    });

    it("runs the whole rollout from the deserialized providers", async () => {
        const { provider: warm, configured: warmConfigured } = load("WarmMachine");
        await warmConfigured;
        const w = await warm.create(inputsByType.WarmMachine);
        assert.equal(fly.machine("kiloclaw-dev", w.id)?.state, "destroyed");

        const { provider: version, configured: versionConfigured } = load("WorkerImageVersion");
        await versionConfigured;
        await version.create(inputsByType.WorkerImageVersion);
        assert.match(fs.readFileSync(path.join(kiloclawDir, ".dev.vars"), "utf8"), new RegExp(`^FLY_IMAGE_TAG=${TAG}$`, "m"));

        const { provider: instance, configured: instanceConfigured } = load("WorkerInstance");
        await instanceConfigured;
        const created = await instance.create({ ...inputsByType.WorkerInstance, pollMs: 20 });
        assert.equal(created.outs.status, "running");
        assert.equal(created.outs.runningImage, `registry.fly.io/kiloclaw-dev:${TAG}`);
        assert.equal(created.outs.flyAppName, devFlyAppName(USER));
        const read = await instance.read(created.id, created.outs);
        assert.equal(read.props.status, "running");
        await instance.delete(created.id, created.outs);
        assert.equal(worker.instance(USER), undefined);
        assert.deepEqual(
            fly.machines(devFlyAppName(USER)).filter((m) => !["destroying", "destroyed"].includes(m.state)),
            [],
        );
    });
});
