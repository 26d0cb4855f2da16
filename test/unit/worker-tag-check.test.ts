// Every check before the first destroy: the replacement order the providers ask of the engine, and
// the WorkerImageVersion provider's check that the worker's next provision uses the new tag, on each
// worker generation (the emulator re-registers the tag it read from .dev.vars at start, as the real
// worker does until `pnpm start` is restarted).
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { localImagesProvider } from "../../dynamic-providers/localImagesProvider";
import { prebuiltImageProvider } from "../../dynamic-providers/prebuiltImageProvider";
import { configureFromStack } from "../../dynamic-providers/settings";
import { warmMachineProvider } from "../../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider, WorkerImageVersionInputs } from "../../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider, WorkerInstanceInputs } from "../../dynamic-providers/workerInstanceProvider";
import { PrebuiltImageOutputs, WarmMachineOutputs, WorkerImageVersionOutputs, WorkerInstanceOutputs } from "../../lib/contract";
import { devFlyAppName } from "../../lib/identity";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { WORKER_PROFILES } from "../../sandbox/emulators/worker-profiles";
import { scratchDir } from "../scratch";
import { rejects } from "../rejection";

type Provider = Required<Pick<pulumi.dynamic.ResourceProvider, "create" | "diff">>;
const version = workerImageVersionProvider as Provider;
const instance = workerInstanceProvider as Provider;

const FLY_TOKEN = "fm2_tagchecktoken";
const INTERNAL_KEY = "internal-key-tag-check";
const USER = "user-tag-check";
const OLD = "dev-aaaaaaaaaaaa";
const NEW = "dev-bbbbbbbbbbbb";
const image = (tag: string) => `registry.fly.io/kiloclaw-dev:${tag}`;

describe("replacements: only the instance is delete-before-replace", () => {
    it("every provider upstream of the instance replaces create-before-delete; the instance deletes first", async () => {
        const prebuilt = {
            imageRef: "r/a:t1",
            registryServer: "r",
            expectedOpenclawVersion: "1",
            versionSource: "pin",
            digest: "d",
            openclawVersion: "1",
        };
        const warm = {
            appName: "a",
            region: "iad",
            image: "r/a:t1",
            env: {},
            owner: "o",
            timeoutSeconds: 1,
            machineId: "m",
            waitTimeouts: 0,
            leftoversRemoved: 0,
        };
        const worker = {
            devVarsPath: "/x",
            imageTag: "t1",
            openclawVersion: "1",
            publish: true,
            previousImageTag: null,
            published: "published" as const,
        };
        const inst = {
            userId: "u",
            imageTag: "t1",
            imageRef: "r/a:t1",
            openclawVersion: "1",
            region: "iad",
            kilocodeApiKey: "k",
            expectedFlyAppName: "dev-x",
            timeoutSeconds: 1,
            status: "running",
            trackedImageTag: "t1",
        } as unknown as WorkerInstanceOutputs;
        const diffs = {
            prebuilt: await prebuiltImageProvider.diff!("i", prebuilt as PrebuiltImageOutputs, { ...prebuilt, imageRef: "r/a:t2" }),
            warm: await warmMachineProvider.diff("i", warm as WarmMachineOutputs, { ...warm, image: "r/a:t2" }),
            worker: await workerImageVersionProvider.diff!("i", worker as WorkerImageVersionOutputs, { ...worker, imageTag: "t2" }),
            localImages: await localImagesProvider.diff!("i", { images: ["a"] }, { images: ["b"] }),
            instance: await workerInstanceProvider.diff!("i", inst, { ...inst, imageTag: "t2", imageRef: "r/a:t2" }),
        };
        for (const [name, diff] of Object.entries(diffs)) {
            assert.ok((diff.replaces ?? []).length > 0, `${name} is not replaced`);
            assert.equal(diff.deleteBeforeReplace, name === "instance", `${name}: deleteBeforeReplace ${diff.deleteBeforeReplace}`);
        }
    });

    it("a new user id, key or restart confirmation alone does not point the worker again", async () => {
        const olds = {
            devVarsPath: "/x",
            imageTag: "t1",
            openclawVersion: "1",
            publish: true,
            previousImageTag: null,
            published: "published" as const,
        };
        const diff = await workerImageVersionProvider.diff!("i", olds, { ...olds, userId: "u", kilocodeApiKey: "k", workerRestartedForTag: "t1" });
        assert.equal(diff.changes, false);
    });
});

for (const profile of WORKER_PROFILES) {
    describe(`the worker will use the new tag: checked before the instance step (${profile} worker)`, function () {
        this.timeout(60_000);
        let fly: FlyEmulator;
        let worker: WorkerEmulator;
        let devVars: string;

        async function configure(extra: Record<string, string> = {}): Promise<void> {
            const config: Record<string, string> = {
                "kiloclaw:workerUrl": worker.url,
                "kiloclaw:internalApiKey": INTERNAL_KEY,
                "kiloclaw:flyApiUrl": fly.url,
                "kiloclaw:flyApiToken": FLY_TOKEN,
                "kiloclaw:kiloclawDir": path.dirname(devVars),
                ...extra,
            };
            await configureFromStack({ config: { get: (k: string) => config[k], require: (k: string) => config[k] } });
        }
        const versionInputs = (over: Partial<WorkerImageVersionInputs> = {}): WorkerImageVersionInputs => ({
            imageTag: NEW,
            openclawVersion: "2026.2.9",
            publish: true,
            userId: USER,
            kilocodeApiKey: "test-key",
            ...over,
        });
        const instanceInputs = (tag: string): WorkerInstanceInputs => ({
            userId: USER,
            imageTag: tag,
            imageRef: image(tag),
            openclawVersion: "2026.2.9",
            region: "iad",
            kilocodeApiKey: "test-key",
            expectedFlyAppName: devFlyAppName(USER),
            timeoutSeconds: 20,
            pollMs: 20,
        });
        /** The instance on the old tag, as the worker and Fly see it. */
        const running = () => {
            const rec = worker.instance(USER);
            const machine = fly.machines().find((m) => m.id === rec?.flyMachineId);
            return { machineId: rec?.flyMachineId, status: rec?.status, image: machine?.config?.image, state: machine?.state };
        };

        beforeEach(async () => {
            devVars = path.join(scratchDir("kiloclaw-tagcheck-"), ".dev.vars");
            fs.writeFileSync(
                devVars,
                [
                    `INTERNAL_API_SECRET=${INTERNAL_KEY}`,
                    "GATEWAY_TOKEN_SECRET=gateway-secret",
                    `FLY_API_TOKEN=${FLY_TOKEN}`,
                    "WORKER_ENV=development",
                    "FLY_REGISTRY_APP=kiloclaw-dev",
                    `FLY_IMAGE_TAG=${OLD}`,
                    "OPENCLAW_VERSION=2026.2.8",
                    "",
                ].join("\n"),
            );
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: 10 });
            // Not reloading .dev.vars: the worker keeps what it read at start, like wrangler dev.
            worker = await WorkerEmulator.start({ profile, devVarsPath: devVars, flyApiUrl: fly.url, msPerSecond: 10 });
            await configure();
        });
        afterEach(async () => {
            await worker.close();
            await fly.close();
        });

        it("without an instance there is nothing to keep: no probe", async () => {
            const { outs } = await version.create(versionInputs());
            assert.equal(outs.workerTagCheck, "no-instance");
            assert.equal(worker.requests.filter((r) => r.path === "/api/platform/provision").length, 0);
        });

        it("an instance already on the tag needs no check (newest: the tag is pinned anyway)", async () => {
            await instance.create(instanceInputs(OLD));
            const { outs } = await version.create(versionInputs({ imageTag: OLD, openclawVersion: "2026.2.8" }));
            assert.equal(outs.workerTagCheck, profile === "newest" ? "pinned" : "already-running");
        });

        it("a worker that was not restarted: stops with the restart command (or provisions the pinned tag), the instance untouched", async () => {
            await instance.create(instanceInputs(OLD));
            const before = running();
            assert.equal(before.image, image(OLD));
            if (profile === "newest") {
                const { outs } = await version.create(versionInputs());
                assert.equal(outs.workerTagCheck, "pinned");
                assert.deepEqual(running(), before);
                return;
            }
            const err = await rejects(version.create(versionInputs()));
            assert.match(err.message, /cd cloud\/kiloclaw && pnpm start/);
            assert.match(err.message, /Nothing was destroyed/);
            if (profile === "early") assert.match(err.message, /offers no read.*kiloclaw:workerRestartedForTag=dev-bbbbbbbbbbbb/s);
            else assert.match(err.message, /will not provision dev-bbbbbbbbbbbb: it tracks dev-aaaaaaaaaaaa/);
            assert.deepEqual(running(), before);
            if (profile === "current") assert.equal(worker.instance(USER)?.trackedImageTag, OLD);
            // .dev.vars names the new tag: the restart the message asks for is what makes the worker use it.
            assert.match(fs.readFileSync(devVars, "utf8"), new RegExp(`^FLY_IMAGE_TAG=${NEW}$`, "m"));
            await worker.restart();
            if (profile === "early") {
                // Nothing tells: only the developer's word does.
                assert.match((await rejects(version.create(versionInputs()))).message, /offers no read/);
                const { outs } = await version.create(versionInputs({ workerRestartedForTag: NEW }));
                assert.equal(outs.workerTagCheck, "restart-confirmed");
            } else {
                const { outs } = await version.create(versionInputs());
                assert.equal(outs.workerTagCheck, "read-back");
            }
            // The instance still runs the old image on the same machine: only the instance step replaces it.
            assert.deepEqual({ ...running(), status: undefined }, { ...before, status: undefined });
        });

        if (profile === "current") {
            it("an instance with env vars, secrets or channels is not probed (a re-provision would reset them)", async () => {
                await instance.create(instanceInputs(OLD));
                const res = await fetch(`${worker.url}/api/platform/provision`, {
                    method: "POST",
                    headers: { "content-type": "application/json", "x-internal-api-key": INTERNAL_KEY },
                    body: JSON.stringify({ userId: USER, kilocodeApiKey: "test-key", envVars: { FOO: "bar" } }),
                });
                assert.equal(res.status, 201);
                const provisions = worker.requests.filter((r) => r.path === "/api/platform/provision").length;
                const err = await rejects(version.create(versionInputs()));
                assert.match(err.message, /env vars, secrets or channels .*kiloclaw:workerRestartedForTag=dev-bbbbbbbbbbbb/s);
                assert.equal(worker.requests.filter((r) => r.path === "/api/platform/provision").length, provisions);
                assert.equal(worker.instance(USER)?.envVars?.FOO, "bar");
            });
        }
    });
}
