// Each dynamic provider driven against the project's emulators on 127.0.0.1.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider, WarmMachineInputs, WARM_OWNER_KEY } from "../../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider, WorkerImageVersionInputs } from "../../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider, WorkerInstanceInputs } from "../../dynamic-providers/workerInstanceProvider";
import { devFlyAppName } from "../../lib/identity";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { scratchDir } from "../scratch";

type Provider = Required<Pick<pulumi.dynamic.ResourceProvider, "create" | "diff" | "read" | "update" | "delete">>;
const warm = warmMachineProvider as Provider;
const version = workerImageVersionProvider as Provider;
const instance = workerInstanceProvider as Provider;

const FLY_TOKEN = "fm2_emulatortoken";
const INTERNAL_KEY = "internal-key-for-tests";
const MS_PER_SECOND = 10;

async function rejects(p: Promise<unknown>): Promise<Error> {
    try {
        await p;
    } catch (err) {
        return err as Error;
    }
    throw new Error("expected a rejection");
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
    fs.writeFileSync(file, "# worker settings\n" + Object.entries(vars).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
    return file;
}

describe("WarmMachine provider against the Fly emulator", function () {
    this.timeout(60_000);
    let fly: FlyEmulator;
    const inputs = (over: Partial<WarmMachineInputs> = {}): WarmMachineInputs => ({
        flyApiUrl: fly.url,
        appName: "kiloclaw-dev",
        region: "iad",
        image: "registry.fly.io/kiloclaw-dev:dev-aaaaaaaaaaaa",
        env: { KILOCODE_API_KEY: "warm" },
        flyApiToken: FLY_TOKEN,
        owner: "kiloclaw-rollout.test",
        timeoutSeconds: 30,
        waitSeconds: 60,
        ...over,
    });
    beforeEach(async () => {
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND });
    });
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
        // Each wait is 60 contract seconds = 600 ms, and wait calls start 1 s apart: the pull (2.5 s) outlasts two.
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, firstPullDelayMs: 2500 });
        const { id, outs } = await warm.create(inputs({ timeoutSeconds: 120 }));
        assert.equal(outs.waitTimeouts, 2);
        const waits = fly.requests.filter((r) => r.path.endsWith(`/${id}/wait`) && r.query.state === "started");
        assert.deepEqual(waits.map((r) => r.status), [408, 408, 200]);
        assert.equal(fly.machine("kiloclaw-dev", id)?.state, "destroyed");
    });

    it("destroys the machine even when the wait fails, and says what to do", async () => {
        await fly.close();
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, firstPullDelayMs: 3_600_000 });
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
        assert.deepEqual(fly.requests.filter((r) => r.method === "POST").map((r) => r.status), [503, 429, 200]);
    });

    it("does not re-send a create whose answer was lost: finds the machine by name, one POST, one machine", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, dropAfter: true });
        const { id, outs } = await warm.create(inputs());
        assert.equal(fly.requests.filter((r) => r.method === "POST" && r.path.endsWith("/machines")).length, 1);
        const machines = fly.machines("kiloclaw-dev");
        assert.deepEqual(machines.map((m) => m.id), [id]);
        assert.equal(machines[0].state, "destroyed");
        assert.equal(outs.leftoversRemoved, 0);
    });

    it("a create dropped before Fly acted is not re-sent either, and leaves nothing", async () => {
        fly.inject({ method: "POST", path: /\/machines$/, drop: true });
        const err = await rejects(warm.create(inputs()));
        assert.match(err.message, /answer was lost .* no machine of that name exists/);
        assert.equal(fly.requests.filter((r) => r.method === "POST").length, 1);
        assert.deepEqual(fly.machines("kiloclaw-dev"), []);
    });

    it("explains a refused token", async () => {
        const err = await rejects(warm.create(inputs({ flyApiToken: "fm2_wrong" })));
        assert.match(err.message, /\(401\)/);
        assert.match(err.message, /kiloclaw:flyApiToken/);
        assert.match(err.message, /fly tokens deploy/);
        assert.ok(!err.message.includes("fm2_wrong"), "the token leaked into the message");
    });

    it("diff: a new image replaces, a new token only updates, the same inputs change nothing", async () => {
        const olds = { ...inputs(), machineId: "m", waitTimeouts: 0, leftoversRemoved: 0 };
        assert.deepEqual(await warm.diff("m", olds, inputs()), { changes: false, replaces: [], deleteBeforeReplace: false });
        const bumped = await warm.diff("m", olds, inputs({ image: "registry.fly.io/kiloclaw-dev:dev-new" }));
        assert.deepEqual(bumped.replaces, ["image"]);
        const token = await warm.diff("m", olds, inputs({ flyApiToken: "fm2_rotated" }));
        assert.equal(token.changes, true);
        assert.deepEqual(token.replaces, []);
        assert.equal(fly.requests.length, 0, "diff must not call Fly");
    });
});

describe("WorkerImageVersion provider", function () {
    this.timeout(30_000);
    let fly: FlyEmulator;
    let worker: WorkerEmulator;
    let devVars: string;
    const inputs = (over: Partial<WorkerImageVersionInputs> = {}): WorkerImageVersionInputs => ({
        devVarsPath: devVars,
        imageTag: "dev-111111111111",
        openclawVersion: "2026.2.9",
        openclawPin: "2026.2.9",
        registryServer: "registry.fly.io",
        registryApp: "kiloclaw-dev",
        workerRegistryApp: "kiloclaw-dev",
        workerUrl: worker.url,
        internalApiKey: INTERNAL_KEY,
        publish: true,
        workerSettings: {},
        envLocalKeys: [],
        ...over,
    });
    beforeEach(async () => {
        devVars = devVarsFile({ FLY_IMAGE_TAG: "dev-old", OPENCLAW_VERSION: "2026.2.8" });
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND });
        worker = await WorkerEmulator.start({ devVarsPath: devVars, flyApiUrl: fly.url });
    });
    afterEach(async () => {
        await worker.close();
        await fly.close();
    });

    it("writes FLY_IMAGE_TAG and OPENCLAW_VERSION, keeps the rest, and publishes", async () => {
        const { outs } = await version.create(inputs());
        const text = fs.readFileSync(devVars, "utf8");
        assert.match(text, /^# worker settings$/m);
        assert.match(text, /^FLY_IMAGE_TAG=dev-111111111111$/m);
        assert.match(text, /^OPENCLAW_VERSION=2026\.2\.9$/m);
        assert.match(text, new RegExp(`^INTERNAL_API_SECRET=${INTERNAL_KEY}$`, "m"));
        assert.equal(outs.previousImageTag, "dev-old");
        assert.equal(outs.published, "published");
        const publish = worker.requests.find((r) => r.path === "/api/platform/publish-image-version");
        assert.deepEqual(publish?.body, { variant: "default", setLatest: true, openclawVersion: "2026.2.9", imageTag: "dev-111111111111" });
        assert.equal(publish?.status, 201);
    });

    it("carries on when an older worker has no publish route (404)", async () => {
        await worker.close();
        worker = await WorkerEmulator.start({ devVarsPath: devVars, flyApiUrl: fly.url, publishRoute: false });
        const { outs } = await version.create(inputs());
        assert.equal(outs.published, "unsupported");
        assert.match(fs.readFileSync(devVars, "utf8"), /^FLY_IMAGE_TAG=dev-111111111111$/m);
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

    it("fails clearly on a missing .dev.vars and on a wrong key", async () => {
        const missing = await rejects(version.create(inputs({ devVarsPath: path.join(os.tmpdir(), "nope", ".dev.vars") })));
        assert.match(missing.message, /does not exist: copy \.dev\.vars\.example/);
        const forbidden = await rejects(version.create(inputs({ internalApiKey: "wrong-key" })));
        assert.match(forbidden.message, /403 Forbidden/);
        assert.match(forbidden.message, /kiloclaw:internalApiKey/);
        assert.ok(!forbidden.message.includes("wrong-key"));
    });
});

describe("WorkerInstance provider against the worker and Fly emulators", function () {
    this.timeout(60_000);
    const USER = "user-provider-test";
    const TAG = "dev-222222222222";
    let fly: FlyEmulator;
    let worker: WorkerEmulator;
    let devVars: string;
    const inputs = (over: Partial<WorkerInstanceInputs> = {}): WorkerInstanceInputs => ({
        workerUrl: worker.url,
        userId: USER,
        imageTag: TAG,
        openclawVersion: "2026.2.9",
        region: "iad",
        kilocodeApiKey: "test-key",
        internalApiKey: INTERNAL_KEY,
        expectedFlyAppName: devFlyAppName(USER),
        timeoutSeconds: 20,
        pollMs: 20,
        ...over,
    });
    async function startWorker(opts: { autoStart?: boolean; tag?: string } = {}) {
        devVars = devVarsFile({ FLY_IMAGE_TAG: opts.tag ?? TAG, OPENCLAW_VERSION: "2026.2.9" });
        worker = await WorkerEmulator.start({ devVarsPath: devVars, flyApiUrl: fly.url, autoStart: opts.autoStart, destroyDelayMs: 30 });
    }
    beforeEach(async () => {
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND });
        await startWorker();
    });
    afterEach(async () => {
        await worker.close();
        await fly.close();
    });

    it("provisions, waits for running, checks the tag and returns the status and gateway token", async () => {
        const { id, outs } = await instance.create(inputs());
        assert.equal(outs.status, "running");
        assert.equal(outs.trackedImageTag, TAG);
        assert.equal(outs.flyAppName, devFlyAppName(USER));
        assert.equal(id, Buffer.from(USER).toString("base64url"));
        assert.match(outs.gatewayToken, /^[0-9a-f]{64}$/);
        const [machine] = fly.machines(devFlyAppName(USER));
        assert.equal(machine.config.image, `registry.fly.io/kiloclaw-dev:${TAG}`);
        assert.equal(outs.flyMachineId, machine.id);
    });

    it("starts the instance on an older worker that does not auto-start", async () => {
        await worker.close();
        await startWorker({ autoStart: false });
        const { outs } = await instance.create(inputs());
        assert.equal(outs.status, "running");
        assert.ok(worker.requests.some((r) => r.path === "/api/platform/start" && r.status === 200));
    });

    it("names pnpm start and the URL when the worker is down", async () => {
        const url = worker.url;
        await worker.close();
        const err = await rejects(instance.create(inputs({ workerUrl: url })));
        assert.match(err.message, /not reachable at http:\/\/127\.0\.0\.1:\d+/);
        assert.match(err.message, /pnpm start/);
        assert.match(err.message, /lsof -i :\d+/);
        await startWorker();
    });

    it("explains a wrong internal key (403) without printing it", async () => {
        const err = await rejects(instance.create(inputs({ internalApiKey: "not-the-key" })));
        assert.match(err.message, /403 Forbidden/);
        assert.match(err.message, /INTERNAL_API_SECRET/);
        assert.ok(!err.message.includes("not-the-key"));
    });

    it("handles a 409 on provision by destroying through the worker and provisioning again", async () => {
        worker.inject({ method: "POST", path: "/api/platform/provision", status: 409, body: { error: "User already has an active instance" } });
        const { outs } = await instance.create(inputs());
        assert.equal(outs.status, "running");
        const provisions = worker.requests.filter((r) => r.path === "/api/platform/provision").map((r) => r.status);
        assert.deepEqual(provisions, [409, 201]);
    });

    it("destroys an existing instance first (a new image needs destroy + provision)", async () => {
        await instance.create(inputs());
        const firstMachine = fly.machines(devFlyAppName(USER))[0].id;
        const { outs } = await instance.create(inputs());
        assert.notEqual(outs.flyMachineId, firstMachine);
        assert.equal(fly.machine(devFlyAppName(USER), firstMachine)?.state, "destroyed");
    });

    it("fails with the restart fix when the worker has not picked up the tag, leaving no instance", async () => {
        await worker.close();
        await startWorker({ tag: "dev-old000000000" });
        // The file moves on, the running worker does not (wrangler dev reads .dev.vars at start).
        fs.writeFileSync(devVars, fs.readFileSync(devVars, "utf8").replace("dev-old000000000", TAG));
        const err = await rejects(instance.create(inputs()));
        assert.match(err.message, /with image tag "dev-old000000000", not "dev-222222222222"/);
        assert.match(err.message, /pnpm start/);
        assert.match(err.message, /pulumi up/);
        const status = worker.requests.filter((r) => r.path === "/api/platform/destroy");
        assert.equal(status.length, 1);
        assert.equal(worker.instance(USER), undefined);
        // After the restart, the same inputs converge.
        await worker.restart();
        const { outs } = await instance.create(inputs());
        assert.equal(outs.trackedImageTag, TAG);
    });

    it("waits through a 408 first pull instead of re-provisioning", async () => {
        await worker.close();
        await fly.close();
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, firstPullDelayMs: 900 });
        await startWorker();
        const { outs } = await instance.create(inputs());
        assert.equal(outs.status, "running");
        assert.equal(worker.requests.filter((r) => r.path === "/api/platform/provision").length, 1);
    });

    it("delete destroys through the worker and waits until the status is null; already gone is fine", async () => {
        const { id, outs } = await instance.create(inputs());
        await instance.delete(id, outs);
        assert.equal(worker.instance(USER), undefined);
        const statuses = worker.requests.filter((r) => r.path === "/api/platform/status").map((r) => r.status);
        assert.ok(statuses.length >= 1);
        await instance.delete(id, outs);
        const destroys = worker.requests.filter((r) => r.path === "/api/platform/destroy").map((r) => [r.status, (r as any).body?.userId]);
        assert.deepEqual(destroys.slice(-2), [[200, USER], [500, USER]]);
        assert.ok(!fly.requests.some((r) => r.method === "DELETE" && r.path.startsWith("/v1/apps/") && !r.path.includes("/machines") && !r.path.includes("/volumes")));
    });

    it("refresh drops an instance destroyed out of band; diff replaces on a new tag, delete first", async () => {
        const { id, outs } = await instance.create(inputs());
        const live = await instance.read(id, outs);
        assert.equal(live.id, id);
        assert.equal(live.props?.status, "running");
        await worker.destroyOutOfBand(USER);
        const gone = await instance.read(id, outs);
        assert.equal(gone.id, "");
        const diff = await instance.diff(id, outs, inputs({ imageTag: "dev-333333333333" }));
        assert.deepEqual(diff.replaces, ["imageTag"]);
        assert.equal(diff.deleteBeforeReplace, true);
        const none = await instance.diff(id, outs, inputs());
        assert.equal(none.changes, false);
    });
});
