// Each dynamic provider driven against the project's emulators on 127.0.0.1.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider, WarmMachineInputs, WARM_OWNER_KEY } from "../../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider, WorkerImageVersionInputs } from "../../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider, WorkerInstanceInputs } from "../../dynamic-providers/workerInstanceProvider";
import { configureFromStack } from "../../dynamic-providers/settings";
import { devFlyAppName } from "../../lib/identity";
import { FlyEmulator, FlyEmulatorOptions } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { WORKER_PROFILES, WorkerProfileName } from "../../sandbox/emulators/worker-profiles";
import { scratchDir } from "../scratch";
import { rejects } from "../rejection";

type Provider = Required<Pick<pulumi.dynamic.ResourceProvider, "create" | "diff" | "read" | "update" | "delete">>;
const warm = warmMachineProvider;
const version = workerImageVersionProvider as Provider;
const instance = workerInstanceProvider as Provider;

const FLY_TOKEN = "fm2_emulatortoken";
const INTERNAL_KEY = "internal-key-for-tests";
const MS_PER_SECOND = 10;

/** What the engine does before a provider runs: hands over the stack config the provider reads its access from. */
async function configure(values: {
    workerUrl: string;
    flyApiUrl?: string;
    internalApiKey?: string;
    flyApiToken?: string;
    kiloclawDir?: string;
}): Promise<void> {
    const config: Record<string, string> = {
        ...(values.kiloclawDir ? { "kiloclaw:kiloclawDir": values.kiloclawDir } : {}),
        "kiloclaw:workerUrl": values.workerUrl,
        "kiloclaw:internalApiKey": values.internalApiKey ?? INTERNAL_KEY,
        "kiloclaw:flyApiUrl": values.flyApiUrl ?? "http://127.0.0.1:9",
        "kiloclaw:flyApiToken": values.flyApiToken ?? FLY_TOKEN,
    };
    await configureFromStack({ config: { get: (k: string) => config[k], require: (k: string) => config[k] } });
}

function devVarsFile(extra: Record<string, string> = {}): string {
    const dir = scratchDir("kiloclaw-devvars-");
    const file = path.join(dir, ".dev.vars");
    const vars = {
        INTERNAL_API_SECRET: INTERNAL_KEY,
        GATEWAY_TOKEN_SECRET: "gateway-secret",
        FLY_API_TOKEN: FLY_TOKEN,
        WORKER_ENV: "development",
        FLY_REGISTRY_APP: "kiloclaw-dev",
        ...extra,
    };
    fs.writeFileSync(
        file,
        "# worker settings\n" +
            Object.entries(vars)
                .map(([k, v]) => `${k}=${v}`)
                .join("\n") +
            "\n",
    );
    return file;
}

describe("WarmMachine provider against the Fly emulator", function () {
    this.timeout(60_000);
    let fly: FlyEmulator;
    const inputs = (over: Partial<WarmMachineInputs> = {}): WarmMachineInputs => ({
        appName: "kiloclaw-dev",
        region: "iad",
        image: "registry.fly.io/kiloclaw-dev:dev-aaaaaaaaaaaa",
        env: { KILOCODE_API_KEY: "warm" },
        owner: "kiloclaw-rollout.test",
        timeoutSeconds: 30,
        waitSeconds: 60,
        ...over,
    });
    /** A Fly emulator, and the provider configured (as the engine does) with its URL and the token. */
    async function startFly(opts: Partial<FlyEmulatorOptions> = {}): Promise<FlyEmulator> {
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, ...opts });
        await configure({ workerUrl: "http://127.0.0.1:9", flyApiUrl: fly.url });
        return fly;
    }
    beforeEach(() => startFly());
    afterEach(() => fly.close());

    it("creates a machine with the placeholder key, waits for started, then destroys it", async () => {
        const { id, outs } = await warm.create(inputs());
        assert.equal(outs.machineId, id);
        const m = fly.machine("kiloclaw-dev", id);
        assert.equal(m?.state, "destroyed");
        assert.deepEqual(m?.config.env, { KILOCODE_API_KEY: "warm" });
        assert.equal(m?.config.metadata?.[WARM_OWNER_KEY], "kiloclaw-rollout.test");
        assert.ok(fly.requests.some((r) => r.method === "GET" && r.path.endsWith(`/${id}/wait`) && r.query.state === "started" && r.status === 200));
        assert.ok(fly.requests.some((r) => r.method === "DELETE" && r.path.endsWith(`/machines/${id}`) && r.query.force === "true"));
        assert.ok(fly.requests.every((r) => r.headers.authorization === "<redacted>"));
    });

    it("loops on 408 during a first pull: two timeouts, then started", async () => {
        await fly.close();
        // The pull lasts until the test ends it (holdPulls): the first two waits (60 contract seconds each) time out
        // for certain, and the pull ends when the third wait arrives, which then sees `started` within its 3 s.
        await startFly({ holdPulls: true, startDelayMs: 0, msPerSecond: 50 });
        const startedWaits = () => fly.requests.filter((r) => r.path.endsWith("/wait") && r.query.state === "started");
        const creating = warm.create(inputs({ timeoutSeconds: 120 }));
        assert.ok(await until(() => startedWaits().length === 3, 60_000), "the third wait never came");
        fly.releasePulls();
        const { id, outs } = await creating;
        assert.equal(outs.waitTimeouts, 2);
        assert.ok(startedWaits().every((r) => r.path.endsWith(`/${id}/wait`)));
        assert.deepEqual(
            startedWaits().map((r) => r.status),
            [408, 408, 200],
        );
        assert.equal(fly.machine("kiloclaw-dev", id)?.state, "destroyed");
    });

    it("destroys the machine even when the wait fails, and says what to do", async () => {
        await fly.close();
        await startFly({ firstPullDelayMs: 3_600_000 });
        const err = await rejects(warm.create(inputs({ timeoutSeconds: 1, waitSeconds: 60 })));
        assert.match(err.message, /did not reach "started" within 1s/);
        assert.match(err.message, /last state "replacing"/);
        assert.match(err.message, /pulumi up/);
        const machines = fly.machines("kiloclaw-dev");
        assert.equal(machines.length, 1);
        assert.equal(machines[0].state, "destroyed");
    });

    it("removes a leftover warm machine of the same owner before creating a new one", async () => {
        const leftover = await warm.create(inputs());
        // Simulate a run that died after create: bring a marked machine back to life.
        fly.setMachineState("kiloclaw-dev", leftover.id, "started");
        const { id } = await warm.create(inputs({ image: "registry.fly.io/kiloclaw-dev:dev-bbbbbbbbbbbb" }));
        assert.notEqual(id, leftover.id);
        assert.equal(fly.machine("kiloclaw-dev", leftover.id)?.state, "destroyed");
        const live = fly.machines("kiloclaw-dev").filter((m) => m.state !== "destroyed");
        assert.deepEqual(live, []);
    });

    it("retries Fly 503 and 429 on create", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, status: 503 });
        fly.inject({ method: "POST", path: /\/machines$/, status: 429 });
        const { id } = await warm.create(inputs());
        assert.equal(fly.machine("kiloclaw-dev", id)?.state, "destroyed");
        assert.deepEqual(
            fly.requests.filter((r) => r.method === "POST").map((r) => r.status),
            [503, 429, 200],
        );
    });

    it("does not re-send a create whose answer was lost: finds the machine by name, one POST, one machine", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, dropAfter: true });
        const { id, outs } = await warm.create(inputs());
        assert.equal(fly.requests.filter((r) => r.method === "POST" && r.path.endsWith("/machines")).length, 1);
        const machines = fly.machines("kiloclaw-dev");
        assert.deepEqual(
            machines.map((m) => m.id),
            [id],
        );
        assert.equal(machines[0].state, "destroyed");
        assert.equal(outs.leftoversRemoved, 0);
    });

    it("a create dropped before Fly acted is sent again only after the lookup shows no machine: two POSTs, one machine", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, drop: true });
        const { id } = await warm.create(inputs());
        const posts = fly.requests.filter((r) => r.method === "POST" && r.path.endsWith("/machines"));
        assert.deepEqual(
            posts.map((r) => r.faulted),
            [true, false],
        );
        const lookup = fly.requests.findIndex((r) => r.method === "GET" && r.path.endsWith("/machines") && Object.keys(r.query).length === 0);
        assert.ok(lookup > fly.requests.indexOf(posts[0]) && lookup < fly.requests.indexOf(posts[1]), "the second POST came before the lookup");
        assert.deepEqual(
            fly.machines("kiloclaw-dev").map((m) => m.id),
            [id],
        );
    });

    it("a create whose answer is lost twice with no machine made stops and says nothing was left", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, drop: true, times: 2 });
        const err = await rejects(warm.create(inputs()));
        assert.match(err.message, /answer was lost twice .* no machine of that name exists/);
        assert.equal(fly.requests.filter((r) => r.method === "POST").length, 2);
        assert.deepEqual(fly.machines("kiloclaw-dev"), []);
    });

    it("explains a refused token", async () => {
        await configure({ workerUrl: "http://127.0.0.1:9", flyApiUrl: fly.url, flyApiToken: "fm2_wrong" });
        const err = await rejects(warm.create(inputs()));
        assert.match(err.message, /\(401\)/);
        assert.match(err.message, /kiloclaw:flyApiToken/);
        assert.match(err.message, /fly tokens deploy/);
        assert.ok(!err.message.includes("fm2_wrong"), "the token leaked into the message");
    });

    it("diff: a new image replaces, a new deadline only updates, the same inputs change nothing", async () => {
        const olds = { ...inputs(), machineId: "m", waitTimeouts: 0, leftoversRemoved: 0 };
        assert.deepEqual(await warm.diff("m", olds, inputs()), { changes: false, replaces: [], deleteBeforeReplace: false });
        const bumped = await warm.diff("m", olds, inputs({ image: "registry.fly.io/kiloclaw-dev:dev-new" }));
        assert.deepEqual(bumped.replaces, ["image"]);
        const deadline = await warm.diff("m", olds, inputs({ timeoutSeconds: 600 }));
        assert.equal(deadline.changes, true);
        assert.deepEqual(deadline.replaces, []);
        assert.equal(fly.requests.length, 0, "diff must not call Fly");
    });

    it("keeps no access in the state: outputs hold no Fly URL or token, and an older state's token is dropped by an update", async () => {
        const { outs } = await warm.create(inputs());
        assert.ok(!("flyApiToken" in outs) && !("flyApiUrl" in outs), Object.keys(outs).join(", "));
        assert.ok(!JSON.stringify(outs).includes(FLY_TOKEN));
        const legacy = { ...outs, flyApiUrl: fly.url, flyApiToken: FLY_TOKEN } as typeof outs;
        const diff = await warm.diff(outs.machineId, legacy, inputs());
        assert.deepEqual([diff.changes, diff.replaces], [true, []]);
        const updated = await warm.update(outs.machineId, legacy, inputs());
        assert.ok(!("flyApiToken" in updated.outs) && !("flyApiUrl" in updated.outs));
        assert.equal(updated.outs.machineId, outs.machineId);
    });

    it("delete uses today's Fly URL and token (a rotated token, a new kiloclaw:flyApiUrl), not the ones of the create", async () => {
        const { outs } = await warm.create(inputs());
        // The stack moves to another Fly API with a rotated token; a run that died there left a warm machine.
        const rotated = await FlyEmulator.start({ token: "fm2_rotatedtoken", msPerSecond: MS_PER_SECOND });
        try {
            await configure({ workerUrl: "http://127.0.0.1:9", flyApiUrl: rotated.url, flyApiToken: "fm2_rotatedtoken" });
            const res = await fetch(`${rotated.url}/v1/apps/kiloclaw-dev/machines`, {
                method: "POST",
                headers: { authorization: "FlyV1 fm2_rotatedtoken", "content-type": "application/json" },
                body: JSON.stringify({ config: { image: outs.image, metadata: { [WARM_OWNER_KEY]: outs.owner } } }),
            });
            assert.equal(res.status, 200);
            const before = fly.requests.length;
            await warm.delete(outs.machineId, outs);
            assert.equal(fly.requests.length, before, "delete called the old Fly API");
            assert.ok(
                rotated.requests.some((r) => r.method === "DELETE" && r.status === 200),
                "delete did not reach the new Fly API with the new token",
            );
            assert.deepEqual(
                rotated.machines("kiloclaw-dev").filter((m) => !["destroying", "destroyed"].includes(m.state)),
                [],
            );
        } finally {
            await rotated.close();
        }
    });
});

for (const profile of WORKER_PROFILES) {
    describeWorkerImageVersion(profile);
    describeWorkerInstance(profile);
}

function describeWorkerImageVersion(profile: WorkerProfileName) {
    describe(`WorkerImageVersion provider (${profile} worker)`, function () {
        this.timeout(30_000);
        let fly: FlyEmulator;
        let worker: WorkerEmulator;
        let devVars: string;
        const inputs = (over: Partial<WorkerImageVersionInputs> = {}): WorkerImageVersionInputs => ({
            imageTag: "dev-111111111111",
            openclawVersion: "2026.2.9",
            publish: true,
            ...over,
        });
        beforeEach(async () => {
            devVars = devVarsFile({ FLY_IMAGE_TAG: "dev-old", OPENCLAW_VERSION: "2026.2.8" });
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND });
            worker = await WorkerEmulator.start({ profile, devVarsPath: devVars, flyApiUrl: fly.url });
            await configure({ workerUrl: worker.url, flyApiUrl: fly.url, kiloclawDir: path.dirname(devVars) });
        });
        afterEach(async () => {
            await worker.close();
            await fly.close();
        });

        it("writes FLY_IMAGE_TAG and OPENCLAW_VERSION, keeps the rest, and publishes where the worker can", async () => {
            const { outs } = await version.create(inputs());
            const text = fs.readFileSync(devVars, "utf8");
            assert.match(text, /^# worker settings$/m);
            assert.match(text, /^FLY_IMAGE_TAG=dev-111111111111$/m);
            assert.match(text, /^OPENCLAW_VERSION=2026\.2\.9$/m);
            assert.match(text, new RegExp(`^INTERNAL_API_SECRET=${INTERNAL_KEY}$`, "m"));
            assert.equal(outs.previousImageTag, "dev-old");
            const publish = worker.requests.find((r) => r.path === "/api/platform/publish-image-version");
            assert.deepEqual(publish?.body, { variant: "default", setLatest: true, openclawVersion: "2026.2.9", imageTag: "dev-111111111111" });
            // The early worker has no route: its 401 session catch-all means "carry on".
            assert.equal(outs.published, profile === "early" ? "unsupported" : "published");
            assert.equal(publish?.status, profile === "early" ? 401 : 201);
        });

        it("a failed publish leaves .dev.vars as it was", async () => {
            const before = fs.readFileSync(devVars, "utf8");
            worker.inject({ method: "POST", path: "/api/platform/publish-image-version", status: 500, body: { error: "publish failed" } });
            const err = await rejects(version.create(inputs()));
            assert.match(err.message, /Publishing openclaw 2026\.2\.9 → dev-111111111111 failed \(500/);
            assert.equal(fs.readFileSync(devVars, "utf8"), before);
        });

        it("read reports a hand edit of .dev.vars as drift, and diff then replaces", async () => {
            const { id, outs } = await version.create(inputs());
            fs.writeFileSync(devVars, fs.readFileSync(devVars, "utf8").replace("dev-111111111111", "dev-handedited"));
            const read = await version.read(id, outs);
            assert.equal(read.props?.imageTag, "dev-handedited");
            const diff = await version.diff(id, read.props, inputs());
            assert.deepEqual(diff.replaces, ["imageTag"]);
            const same = await version.diff(id, outs, inputs());
            assert.equal(same.changes, false);
        });

        it("delete leaves .dev.vars as it is", async () => {
            const { id, outs } = await version.create(inputs());
            const before = fs.readFileSync(devVars, "utf8");
            await version.delete(id, outs);
            assert.equal(fs.readFileSync(devVars, "utf8"), before);
        });

        it("fails clearly on a missing .dev.vars and on a wrong key from the stack config", async () => {
            await configure({ workerUrl: worker.url, kiloclawDir: path.join(os.tmpdir(), "nope") });
            const missing = await rejects(version.create(inputs()));
            assert.match(missing.message, /does not exist: copy \.dev\.vars\.example/);
            await configure({ workerUrl: worker.url });
            const unset = await rejects(version.create(inputs()));
            assert.match(unset.message, /kiloclaw:kiloclawDir is not set/);
            await configure({ workerUrl: worker.url, internalApiKey: "wrong-key", kiloclawDir: path.dirname(devVars) });
            const forbidden = await rejects(version.create(inputs()));
            assert.match(forbidden.message, /403 Forbidden/);
            assert.match(forbidden.message, /kiloclaw:internalApiKey/);
            assert.ok(!forbidden.message.includes("wrong-key"));
        });
    });
}

function describeWorkerInstance(profile: WorkerProfileName) {
    describe(`WorkerInstance provider (${profile} worker, Fly emulator)`, function () {
        this.timeout(60_000);
        const USER = "user-provider-test";
        const TAG = "dev-222222222222";
        const IMAGE = `registry.fly.io/kiloclaw-dev:${TAG}`;
        let fly: FlyEmulator;
        let worker: WorkerEmulator;
        let devVars: string;
        const inputs = (over: Partial<WorkerInstanceInputs> = {}): WorkerInstanceInputs => ({
            userId: USER,
            imageTag: TAG,
            imageRef: IMAGE,
            openclawVersion: "2026.2.9",
            region: "iad",
            kilocodeApiKey: "test-key",
            expectedFlyAppName: devFlyAppName(USER),
            timeoutSeconds: 20,
            pollMs: 20,
            ...over,
        });
        async function startWorker(opts: { tag?: string; fly?: FlyEmulator } = {}) {
            devVars = devVarsFile({ FLY_IMAGE_TAG: opts.tag ?? TAG, OPENCLAW_VERSION: "2026.2.9" });
            worker = await WorkerEmulator.start({ profile, devVarsPath: devVars, flyApiUrl: fly.url, msPerSecond: MS_PER_SECOND });
            await configure({ workerUrl: worker.url, flyApiUrl: fly.url });
        }
        const posts = (route: string) => worker.requests.filter((r) => r.method === "POST" && r.path === `/api/platform/${route}`);
        beforeEach(async () => {
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND });
            await startWorker();
        });
        afterEach(async () => {
            await worker.close();
            await fly.close();
        });

        it("provisions, waits for running, verifies the machine's image on Fly and the gateway, returns status and token", async () => {
            const { id, outs } = await instance.create(inputs());
            assert.equal(outs.status, "running");
            assert.equal(outs.flyAppName, devFlyAppName(USER));
            assert.equal(id, Buffer.from(USER).toString("base64url"));
            assert.match(outs.gatewayToken ?? "", /^[0-9a-f]{64}$/);
            const [machine] = fly.machines(devFlyAppName(USER));
            assert.equal(machine.config.image, IMAGE);
            assert.equal(outs.runningImage, IMAGE);
            assert.equal(outs.flyMachineId, machine.id);
            assert.ok(
                fly.requests.some((r) => r.method === "GET" && r.path.endsWith(`/machines/${machine.id}`)),
                "the image was not read from Fly",
            );
            // The early worker has no gateway/status (its 401 catch-all); the others report the gateway's own state.
            assert.equal(outs.gatewayState, profile === "early" ? "unsupported" : "running");
            // Only the newest worker accepts a pinned tag; the early one leaves the start to us.
            assert.equal((posts("provision")[0].body as { pinnedImageTag?: string }).pinnedImageTag, profile === "newest" ? TAG : undefined);
            assert.equal(posts("start").length > 0, profile === "early");
            assert.equal(posts("provision").length, 1);
        });

        it("names pnpm start and the URL when the worker is down", async () => {
            const url = worker.url;
            await worker.close();
            const err = await rejects(instance.create(inputs()));
            assert.ok(err.message.includes(`not reachable at ${url}`), err.message);
            assert.match(err.message, /pnpm start/);
            assert.match(err.message, /lsof -i :\d+/);
            await startWorker();
        });

        it("explains a wrong internal key (403) without printing it", async () => {
            await configure({ workerUrl: worker.url, flyApiUrl: fly.url, internalApiKey: "not-the-key" });
            const err = await rejects(instance.create(inputs()));
            assert.match(err.message, /403 Forbidden/);
            assert.match(err.message, /INTERNAL_API_SECRET/);
            assert.ok(!err.message.includes("not-the-key"));
        });

        it("handles a 409 on provision by destroying through the worker and provisioning again", async () => {
            worker.inject({ method: "POST", path: "/api/platform/provision", status: 409, body: { error: "User already has an active instance" } });
            const { outs } = await instance.create(inputs());
            assert.equal(outs.status, "running");
            assert.deepEqual(
                posts("provision").map((r) => r.status),
                [409, 201],
            );
        });

        it("destroys an existing instance first (a new image needs destroy + provision)", async () => {
            await instance.create(inputs());
            const firstMachine = fly.machines(devFlyAppName(USER))[0].id;
            const { outs } = await instance.create(inputs());
            assert.notEqual(outs.flyMachineId, firstMachine);
            assert.equal(fly.machine(devFlyAppName(USER), firstMachine)?.state, "destroyed");
        });

        it("a worker that has not picked up the tag: older ones get the restart fix, the newest runs the pinned tag", async () => {
            await worker.close();
            await startWorker({ tag: "dev-old000000000" });
            // The file moves on, the running worker does not (wrangler dev reads .dev.vars at start).
            fs.writeFileSync(devVars, fs.readFileSync(devVars, "utf8").replace("dev-old000000000", TAG));
            if (profile === "newest") {
                const { outs } = await instance.create(inputs());
                assert.equal(outs.runningImage, IMAGE);
                assert.equal(posts("destroy").length, 0);
                return;
            }
            const err = await rejects(instance.create(inputs()));
            assert.ok(err.message.includes(`on registry.fly.io/kiloclaw-dev:dev-old000000000, not ${IMAGE}`), err.message);
            assert.match(err.message, /pnpm start/);
            assert.match(err.message, /destroyed through the worker/);
            assert.equal(posts("destroy").length, 1);
            assert.equal(worker.instance(USER), undefined);
            // After the restart, the same inputs converge.
            await worker.restart();
            const { outs } = await instance.create(inputs());
            assert.equal(outs.runningImage, IMAGE);
        });

        it("waits through a 408 first pull instead of re-provisioning", async () => {
            await worker.close();
            await fly.close();
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, firstPullDelayMs: 900 });
            await startWorker();
            const { outs } = await instance.create(inputs());
            assert.equal(outs.status, "running");
            assert.equal(posts("provision").length, 1);
        });

        it("a provision answered after the client's timeout is not sent again: the status says how it went", async () => {
            worker.inject({ method: "POST", path: "/api/platform/provision", delayMs: 1500 });
            const { outs } = await instance.create(inputs({ requestTimeoutSeconds: 1 }));
            assert.equal(outs.status, "running");
            assert.equal(posts("provision").length, 1);
        });

        it("a machine create Fly refuses once: the status decides, the start goes through (newest: past its cooldown, ours)", async () => {
            fly.inject({
                method: "POST",
                path: new RegExp(`^/v1/apps/${devFlyAppName(USER)}/machines$`),
                status: 422,
                body: { error: "no capacity" },
            });
            const { outs } = await instance.create(inputs());
            assert.equal(outs.status, "running");
            assert.equal(posts("provision").length, 1);
            const starts = posts("start").map((r) => [r.status, (r.body as { skipCooldown?: boolean }).skipCooldown ?? false]);
            // Newest: the background start failed before a machine existed, so /start meets the cooldown; the failure was ours.
            assert.deepEqual(
                starts,
                // Early: it creates the machine on /start, which fails with no machine; one more start goes through.
                profile === "newest"
                    ? [
                          [500, false],
                          [200, true],
                      ]
                    : profile === "early"
                      ? [
                            [500, false],
                            [200, false],
                        ]
                      : [[200, false]],
            );
        });

        it("fails with the runbook's gateway steps when the gateway never answers (where the worker reports it)", async () => {
            worker.setGateway("crashed");
            if (profile === "early") {
                const { outs } = await instance.create(inputs());
                assert.equal(outs.gatewayState, "unsupported");
                return;
            }
            const err = await rejects(instance.create(inputs({ timeoutSeconds: 2 })));
            assert.match(err.message, /is "running" but its gateway is not \(state "crashed"\)/);
            assert.match(err.message, /fly status --app dev-/);
            assert.match(err.message, /curl -s http:\/\/localhost:18789\//);
            assert.equal(worker.instance(USER), undefined, "the instance the failed create left was not removed");
        });

        it("reports the worker's own text when gateway/status answers 500 (its controller unreachable)", async () => {
            worker.setGateway("unreachable");
            if (profile === "early") return; // No gateway/status route.
            const err = await rejects(instance.create(inputs({ timeoutSeconds: 2 })));
            assert.match(err.message, /its gateway is not \(the worker answers 500 GatewayControllerError: Gateway controller request failed/);
            assert.doesNotMatch(err.message, /no answer/);
        });

        it("delete destroys through the worker and waits until the status is null; already gone is fine", async () => {
            const { id, outs } = await instance.create(inputs());
            await instance.delete(id, outs!);
            assert.equal(worker.instance(USER), undefined);
            await instance.delete(id, outs!);
            // The second delete reads a null status and sends nothing.
            assert.equal(posts("destroy").length, 1);
            assert.ok(
                !fly.requests.some(
                    (r) => r.method === "DELETE" && r.path.startsWith("/v1/apps/") && !r.path.includes("/machines") && !r.path.includes("/volumes"),
                ),
            );
        });

        it("destroy waits out a `restoring` instead of failing on it", async () => {
            const { id, outs } = await instance.create(inputs());
            worker.setStatus(USER, "restoring", 30);
            await instance.delete(id, outs!);
            assert.equal(worker.instance(USER), undefined);
            assert.deepEqual(
                posts("destroy").map((r) => r.status),
                [200],
            );
        });

        it("delete uses the worker URL and key of the current stack config, not those of create", async () => {
            const { id, outs } = await instance.create(inputs());
            const other = await WorkerEmulator.start({ profile, devVarsPath: devVars, flyApiUrl: fly.url, msPerSecond: MS_PER_SECOND });
            try {
                await configure({ workerUrl: other.url, flyApiUrl: fly.url, internalApiKey: "rotated-key" });
                const refused = await rejects(instance.delete(id, outs!));
                assert.match(refused.message, /403 Forbidden/);
                assert.equal(other.requests.length, 1, "the new URL was not used");
                assert.equal(worker.requests.filter((r) => r.path === "/api/platform/destroy").length, 0);
                await configure({ workerUrl: worker.url, flyApiUrl: fly.url });
                await instance.delete(id, outs!);
                assert.equal(worker.instance(USER), undefined);
            } finally {
                await other.close();
            }
        });

        it("refresh drops an instance destroyed out of band, keeps one the worker is restarting; diff replaces on a new tag only", async () => {
            const { id, outs } = await instance.create(inputs());
            worker.setStatus(USER, "restarting");
            const restarting = await instance.read(id, outs);
            assert.equal(restarting.id, id);
            assert.equal((await instance.diff(id, restarting.props!, inputs())).changes, false);
            await worker.destroyOutOfBand(USER);
            const gone = await instance.read(id, outs);
            assert.equal(gone.id, "");
            const diff = await instance.diff(
                id,
                outs!,
                inputs({ imageTag: "dev-333333333333", imageRef: "registry.fly.io/kiloclaw-dev:dev-333333333333" }),
            );
            assert.deepEqual(diff.replaces, ["imageTag", "imageRef"]);
            assert.equal(diff.deleteBeforeReplace, true);
            const none = await instance.diff(id, outs!, inputs());
            assert.equal(none.changes, false);
            // State from before imageRef existed: an update, not a replacement.
            const { imageRef: _dropped, ...older } = outs!;
            assert.deepEqual((await instance.diff(id, older, inputs())).replaces, []);
        });
    });
}
