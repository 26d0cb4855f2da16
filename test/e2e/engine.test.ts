// The real Pulumi engine against a sandbox, through the Automation API (the helpers
// `npm run rehearse` uses): providers run in the engine's own processes, state is
// stored (file backend, passphrase secrets), the policy pack runs; results are typed
// (outputs, change summaries, engine events, the exported deployment), not CLI text.
// Prebuilt-image mode, so no docker/command provider plugin is needed.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigMap, EngineEvent, OpType, Stack } from "@pulumi/pulumi/automation";
import { RESOURCE_TYPES } from "../../lib/contract";
import { devFlyAppName } from "../../lib/identity";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { assertDockerRunning, containersWithLabel, freePort, LocalRegistry, removeImages, startRegistry } from "../../sandbox/docker";
import { SandboxServices } from "../../sandbox/services";
import { failure, pushFixtureTags, startE2eWorld } from "./world";
import { findPulumi, openRehearsalStack, stackUnfinishedOperations } from "../../sandbox/workspace";

const REPO = path.join(__dirname, "..", "..");
const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c09";
const APP = "kiloclaw-e2e";
const INTERNAL_KEY = "e2e-internal-key-0d4c1f";
const STACK = "e2e";
// Not the https://…/api/openrouter/ form: the advisory tunnel-base-url policy flags it (test 6 makes it mandatory).
const TUNNEL_URL = "http://127.0.0.1:9/api/openrouter";

/** The operations the engine planned for each resource type (engine events, not display text). */
function collectOps(into: Map<string, Set<OpType>>): (event: EngineEvent) => void {
    return (event) => {
        const meta = event.resourcePreEvent?.metadata;
        if (meta) into.set(meta.type, new Set([...(into.get(meta.type) ?? []), meta.op]));
    };
}

describe("the Pulumi engine against the sandbox", function () {
    this.timeout(900_000);
    let registry: LocalRegistry;
    let services: SandboxServices;
    let work: string;
    let checkout: string;
    let stack: Stack;
    const tags = ["dev-e2e00000000a", "dev-e2e00000000b"];
    const refs: string[] = [];

    const stateResources = async () => (await stack.exportStack()).deployment.resources as Array<{ type: string; urn: string }>;
    /** The stack's checkpoint file in the local backend, as it sits on disk. */
    const storedState = () => {
        const dir = path.join(work, "engine", "state", ".pulumi", "stacks");
        const file = (fs.readdirSync(dir, { recursive: true }) as string[]).find((f) => path.basename(f) === `${STACK}.json`);
        assert.ok(file, `no ${STACK}.json under ${dir}`);
        return fs.readFileSync(path.join(dir, file), "utf8");
    };
    const outputs = async () => Object.fromEntries(Object.entries(await stack.outputs()).map(([k, v]) => [k, v.value]));

    before(async () => {
        const pulumi = await findPulumi(); // before any emulator starts: a first build takes minutes
        assertDockerRunning();
        registry = await startRegistry();
        // Two tags of the fixture image in the registry: a rollout, then an image change.
        refs.push(...(await pushFixtureTags(registry, APP, "kiloclaw-e2e:build", tags)));

        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-e2e-"));
        ({ checkout, services } = await startE2eWorld({
            work,
            registry,
            app: APP,
            internalKey: INTERNAL_KEY,
            gatewaySecret: "e2e-gateway-secret",
            extraDevVars: [`KILOCODE_API_BASE_URL=${TUNNEL_URL}`],
        }));

        // A project in the temp dir whose program is this repository: stack files stay out of the repo.
        stack = await openRehearsalStack({ dir: path.join(work, "engine"), stackName: STACK, pulumi, pulumiHome: path.join(work, "home") });
        const plain: Record<string, string> = {
            kiloclawDir: checkout,
            userId: USER,
            imageRef: refs[0],
            // Test 1 starts with the worker unreachable; it sets the real URL.
            workerUrl: `http://127.0.0.1:${await freePort()}`,
            flyApiUrl: services.fly.url,
            registryServer: registry.server,
            registryApp: APP,
            warmTimeoutSeconds: "120",
            instanceTimeoutSeconds: "120",
        };
        const config: ConfigMap = Object.fromEntries(Object.entries(plain).map(([k, value]) => [`kiloclaw:${k}`, { value }]));
        // Secrets go through the Automation API's config set --secret: never into a command line or an error.
        config["kiloclaw:internalApiKey"] = { value: INTERNAL_KEY, secret: true };
        config["kiloclaw:flyApiToken"] = { value: registry.token, secret: true };
        await stack.setAllConfig(config);
    });

    after(async () => {
        if (stack) await stack.destroy().catch(() => undefined);
        await services?.close();
        await registry?.stop();
        // The warm and instance machines pulled these onto the engine.
        await removeImages(refs);
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. preflight stops up before anything is created when the worker is not running, and says how to fix it", async () => {
        const flyBefore = services.fly.requests.length;
        const err = await failure(stack.up());
        assert.match(err.message, /Preflight \("Verify services"\): 1 of 2 checks failed; nothing was built or changed/);
        assert.match(err.message, /FAIL {2}worker: no answer from http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
        assert.match(err.message, /pnpm start/);
        assert.deepEqual(
            (await stateResources()).filter((r) => r.type !== "pulumi:pulumi:Stack"),
            [],
        );
        // Fly was asked once (the token check) and nothing was created there.
        assert.ok(services.fly.requests.slice(flyBefore).every((r) => r.method === "GET"));
        await stack.setConfig("kiloclaw:workerUrl", { value: services.worker.url });
    });

    it("2. up from nothing reaches a running instance, with the gateway token secret and no secret in the state", async () => {
        await stack.up();
        const all = await stack.outputs();
        const out = await outputs();
        assert.equal(out.status, "running");
        assert.equal(out.flyAppName, devFlyAppName(USER));
        assert.equal(out.flyMachineId, services.worker.instance(USER)?.flyMachineId);
        assert.equal(out.trackedImageTag, tags[0]);
        assert.equal(all.gatewayToken.secret, true);
        assert.match(String(out.gatewayToken), /^[0-9a-f]{64}$/);
        // The state as stored (exportStack would decrypt secrets: the Automation API exports with --show-secrets).
        const state = storedState();
        for (const secret of [INTERNAL_KEY, registry.token, String(out.gatewayToken)]) {
            assert.ok(!state.includes(secret), "a secret value is in plain text in the exported state");
        }
        assert.ok(services.fly.pulledImages.includes(refs[0]), "the warm machine did not pull the image");
    });

    it("3. a second preview reports no changes, and the state has no pending operation", async () => {
        const preview = await stack.preview({ expectNoChanges: true });
        assert.deepEqual(Object.keys(preview.changeSummary), ["same"]);
        assert.deepEqual(await stackUnfinishedOperations(stack), []);
    });

    it("4. a new imageRef replaces the image check, warm machine, worker image version and instance; up converges", async () => {
        await stack.setConfig("kiloclaw:imageRef", { value: refs[1] });
        const ops = new Map<string, Set<OpType>>();
        const preview = await stack.preview({ diff: true, onEvent: collectOps(ops) });
        // The new image is pulled and its openclaw version checked again (kiloclaw:PrebuiltImage) before the rest.
        const replaced = [RESOURCE_TYPES.prebuiltImage, RESOURCE_TYPES.warmMachine, RESOURCE_TYPES.workerImageVersion, RESOURCE_TYPES.workerInstance];
        for (const type of replaced) {
            const planned = [...(ops.get(type) ?? [])];
            assert.ok(
                planned.includes("create-replacement") && planned.includes("delete-replaced"),
                `${type} is not replaced: ${planned.join(", ")}`,
            );
        }
        assert.equal(preview.changeSummary.replace, replaced.length);
        await stack.up();
        const out = await outputs();
        assert.equal(out.trackedImageTag, tags[1]);
        assert.equal(out.status, "running");
        assert.deepEqual(await stackUnfinishedOperations(stack), []);
        assert.match(fs.readFileSync(path.join(checkout, ".dev.vars"), "utf8"), new RegExp(`^FLY_IMAGE_TAG=${tags[1]}$`, "m"));
    });

    it("5. refresh notices an instance destroyed behind Pulumi's back, and up provisions it again", async () => {
        await services.worker.destroyOutOfBand(USER);
        await stack.refresh();
        assert.ok(!(await stateResources()).some((r) => r.type === RESOURCE_TYPES.workerInstance), "refresh kept the destroyed instance");
        const provisionsBefore = services.worker.requests.filter((r) => r.path === "/api/platform/provision").length;
        await stack.up();
        assert.equal((await outputs()).status, "running");
        assert.equal(services.worker.requests.filter((r) => r.path === "/api/platform/provision").length, provisionsBefore + 1);
    });

    it("6. the policy pack passes with an advisory warning, and a pack config that makes it mandatory stops the preview", async () => {
        const policyPacks = [path.join(REPO, "policy")];
        const good = await stack.preview({ policyPacks });
        assert.match(good.stdout, /kiloclaw-rollout/);
        assert.match(good.stdout, /tunnel-base-url/);
        const packConfig = path.join(work, "policy-config.json");
        fs.writeFileSync(packConfig, JSON.stringify({ "tunnel-base-url": "mandatory" }));
        const bad = await failure(stack.preview({ policyPacks, policyPackConfigs: [packConfig] }));
        assert.match(bad.message, /mandatory/);
        assert.match(bad.message, /tunnel-base-url/);
    });

    it("7. destroy leaves no instance and no machine, and only the worker deleted machines", async () => {
        const flyBefore = services.fly.requests.length;
        await stack.destroy();
        assert.equal(services.worker.instance(USER), undefined);
        const live = services.fly.machines().filter((m) => !["destroying", "destroyed"].includes(m.state));
        assert.deepEqual(
            live.map((m) => m.id),
            [],
        );
        const deletes = services.fly.requests.slice(flyBefore).filter((r) => r.method === "DELETE");
        assert.ok(deletes.length > 0, "destroy made no Fly delete at all");
        // Every delete is the worker's: of the user's dev app machine/volume, after a /destroy call; no app delete.
        assert.ok(
            deletes.every((r) => r.path.startsWith(`/v1/apps/${devFlyAppName(USER)}/`)),
            deletes.map((r) => r.path).join(", "),
        );
        assert.deepEqual(services.fly.deletedApps, []);
        assert.ok(services.worker.requests.some((r) => r.path === "/api/platform/destroy" && r.status === 200));
        let left: string[] = ["?"];
        for (let i = 0; i < 100 && left.length; i++) {
            left = await containersWithLabel(`${INSTANCE_LABEL}=${services.instance}`); // this run's only
            if (left.length) await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(left, []);
    });
});
