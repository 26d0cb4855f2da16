// The worker emulator must behave like the real KiloClaw worker as documented in
// shared/reference/platform-api.md, talking to the Fly emulator over HTTP.
import * as assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";
import { flyAppNameFor, sandboxIdFor, WorkerEmulator, WorkerEmulatorOptions, WorkerInstanceRecord } from "../../sandbox/emulators/worker";
import { flyAuthorization } from "../../sandbox/emulators/worker-fly-client";

const KEY = "internal-test-key";
const FLY_TOKEN = "fly-test-token";
const GATEWAY_SECRET = "gateway-test-secret";

interface Reply {
    status: number;
    body: any;
}

function devVarsText(overrides: Record<string, string> = {}): string {
    const vars: Record<string, string> = {
        INTERNAL_API_SECRET: KEY,
        GATEWAY_TOKEN_SECRET: GATEWAY_SECRET,
        FLY_API_TOKEN: FLY_TOKEN,
        WORKER_ENV: "development",
        FLY_REGISTRY_APP: "kiloclaw-machines",
        FLY_REGION: "iad",
        OPENCLAW_VERSION: "2026.2.9",
        FLY_IMAGE_TAG: "dev-aaaaaaaaaaaa",
        ...overrides,
    };
    return Object.entries(vars)
        .map(([k, v]) => `${k}=${v}`)
        .join("\n");
}

describe("WorkerEmulator", function () {
    let dir: string;
    let devVarsPath: string;
    let fly: FlyEmulator;
    const workers: WorkerEmulator[] = [];

    async function startWorker(opts: Partial<WorkerEmulatorOptions> = {}): Promise<WorkerEmulator> {
        const w = await WorkerEmulator.start({ devVarsPath, flyApiUrl: fly.url, msPerSecond: 10, ...opts });
        workers.push(w);
        return w;
    }

    async function call(w: WorkerEmulator, method: string, route: string, body?: unknown, key: string | null = KEY): Promise<Reply> {
        const res = await fetch(`${w.url}/api/platform/${route}`, {
            method,
            headers: {
                ...(key === null ? {} : { "x-internal-api-key": key }),
                ...(body === undefined ? {} : { "content-type": "application/json" }),
            },
            body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined };
    }

    const status = (w: WorkerEmulator, userId: string) => call(w, "GET", `status?userId=${encodeURIComponent(userId)}`);

    /** Polls the status route until `predicate` holds; fails after `ms`. */
    async function statusUntil(w: WorkerEmulator, userId: string, predicate: (s: any) => boolean, ms = 10_000): Promise<any> {
        let last: any;
        const deadline = Date.now() + ms;
        for (;;) {
            last = (await status(w, userId)).body;
            if (predicate(last)) return last;
            if (Date.now() > deadline) assert.fail(`status never matched; last: ${JSON.stringify(last)}`);
            await new Promise((r) => setTimeout(r, 10));
        }
    }

    const flyCalls = () => fly.requests.length;
    /** Fly calls that change something (the live check after a status read only GETs). */
    const flyWrites = () => fly.requests.filter((q) => q.method !== "GET").length;

    beforeEach(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "worker-emu-"));
        devVarsPath = path.join(dir, ".dev.vars");
        fs.writeFileSync(devVarsPath, devVarsText());
        fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: 10 });
    });

    afterEach(async () => {
        while (workers.length) await workers.pop()!.close();
        await fly.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    describe("auth and configuration", () => {
        it("answers 403 Forbidden without or with a wrong key", async () => {
            const w = await startWorker();
            assert.deepEqual(await call(w, "GET", "status?userId=u", undefined, null), { status: 403, body: { error: "Forbidden" } });
            assert.deepEqual(await call(w, "GET", "status?userId=u", undefined, "wrong"), { status: 403, body: { error: "Forbidden" } });
            assert.equal((await call(w, "GET", "status?userId=u")).status, 200);
            assert.equal(w.requests[0].headers["x-internal-api-key"], undefined);
            assert.equal(w.requests[1].headers["x-internal-api-key"], "<redacted>");
        });

        it("answers 500 Server configuration error in DEV_MODE without INTERNAL_API_SECRET", async () => {
            const w = await startWorker({ vars: { DEV_MODE: "true", INTERNAL_API_SECRET: undefined } });
            const r = await call(w, "GET", "status?userId=u");
            assert.deepEqual(r, { status: 500, body: { error: "Server configuration error" } });
        });

        it("answers 503 Configuration error when a required secret is missing outside DEV_MODE", async () => {
            for (const missing of ["INTERNAL_API_SECRET", "GATEWAY_TOKEN_SECRET", "FLY_API_TOKEN"]) {
                const w = await startWorker({ vars: { [missing]: undefined } });
                const r = await call(w, "GET", "status?userId=u");
                // The real worker names nothing (no `missing` list): Kilo-Org/cloud kiloclaw/src/index.ts.
                assert.deepEqual(r, { status: 503, body: { error: "Configuration error" } }, missing);
            }
        });
    });

    describe("bodies", () => {
        it("rejects malformed JSON and invalid fields with 400", async () => {
            const w = await startWorker();
            assert.deepEqual(await call(w, "POST", "provision", "{not json"), { status: 400, body: { error: "Malformed JSON body" } });
            assert.deepEqual(await call(w, "POST", "start", ""), { status: 400, body: { error: "Malformed JSON body" } });

            const noUser = await call(w, "POST", "provision", { userId: "" });
            assert.equal(noUser.status, 400);
            assert.equal(noUser.body.error, "Invalid request");
            assert.ok(Array.isArray(noUser.body.details.userId) && noUser.body.details.userId.length > 0);

            const bigMachine = await call(w, "POST", "provision", { userId: "u", machineSize: { cpus: 16, memory_mb: 100 } });
            assert.equal(bigMachine.status, 400);
            assert.equal(bigMachine.body.details.machineSize.length, 2);

            // zod 4 wording in every generation: the early worker (2026-02-20) already ships zod ^4.3.6.
            assert.equal((await call(w, "POST", "destroy", {})).body.details.userId[0], "Invalid input: expected string, received undefined");
            assert.match(bigMachine.body.details.machineSize.join("; "), /Too big: expected number to be <=8/);
            const early = await startWorker({ profile: "early" });
            assert.equal((await call(early, "POST", "destroy", {})).body.details.userId[0], "Invalid input: expected string, received undefined");
            // It also counts an absent instance's env vars, secrets and channels as 0, not null.
            const absent = (await call(early, "GET", "status?userId=nobody")).body;
            assert.deepEqual([absent.envVarCount, absent.secretCount, absent.channelCount], [0, 0, 0]);
            assert.deepEqual(await call(w, "GET", "status"), { status: 400, body: { error: "userId query parameter is required" } });
            assert.equal(flyCalls(), 0);
        });
    });

    describe("provision", () => {
        it("creates app, volume and machine on Fly and answers 201 with the instance running", async () => {
            const w = await startWorker();
            const userId = "user-1";
            const r = await call(w, "POST", "provision", { userId, kilocodeApiKey: "kc-key", envVars: { A: "1" } });
            assert.deepEqual(r, { status: 201, body: { sandboxId: sandboxIdFor(userId) } });
            assert.equal(sandboxIdFor(userId), Buffer.from(userId).toString("base64url"));

            const s = (await status(w, userId)).body;
            const appName = `dev-${crypto.createHash("sha256").update(userId).digest("hex").slice(0, 20)}`;
            assert.equal(flyAppNameFor(userId, "development"), appName);
            assert.equal(s.status, "running");
            assert.equal(s.flyAppName, appName);
            assert.equal(s.trackedImageTag, "dev-aaaaaaaaaaaa");
            assert.equal(s.openclawVersion, "2026.2.9");
            assert.equal(s.imageVariant, "default");
            assert.equal(s.envVarCount, 1);
            assert.equal(s.flyRegion, "iad");
            assert.deepEqual(
                Object.keys(s).sort(),
                [
                    "userId",
                    "sandboxId",
                    "status",
                    "provisionedAt",
                    "lastStartedAt",
                    "lastStoppedAt",
                    "envVarCount",
                    "secretCount",
                    "channelCount",
                    "flyAppName",
                    "flyMachineId",
                    "flyVolumeId",
                    "flyRegion",
                    "machineSize",
                    "openclawVersion",
                    "imageVariant",
                    "trackedImageTag",
                ].sort(),
            );

            assert.ok(fly.apps.includes(appName));
            const machine = fly.machine(appName, s.flyMachineId);
            assert.ok(machine);
            assert.equal(machine.state, "started");
            assert.equal(machine.config.image, "registry.fly.io/kiloclaw-machines:dev-aaaaaaaaaaaa");
            assert.equal(machine.config.env?.KILOCODE_API_KEY, "kc-key");
            const token = (await call(w, "GET", `gateway-token?userId=${userId}`)).body.gatewayToken;
            assert.equal(machine.config.env?.OPENCLAW_GATEWAY_TOKEN, token);
            assert.deepEqual(machine.config.metadata, {
                kiloclaw_user_id: userId,
                kiloclaw_sandbox_id: sandboxIdFor(userId),
                kiloclaw_openclaw_version: "2026.2.9",
                kiloclaw_image_variant: "default",
            });
            assert.deepEqual(machine.config.guest, { cpus: 2, memory_mb: 3072, cpu_kind: "shared" });
            assert.equal(machine.config.services?.[0].internal_port, 18789);
            const [volume] = fly.volumes(appName);
            // The current worker lowercases and sanitises volume names.
            assert.equal(volume.name, `kiloclaw_${sandboxIdFor(userId)}`.toLowerCase());
            assert.equal(volume.id, s.flyVolumeId);

            const wait = fly.requests.find((q) => q.path.endsWith("/wait"));
            assert.equal(wait?.query.state, "started");
            assert.equal(wait?.query.timeout, "60");
            assert.ok(fly.requests.every((q) => q.headers.authorization === "<redacted>" && q.status !== 401));
        });

        it("uses registryServer and FLY_APP_NAME when FLY_REGISTRY_APP is unset", async () => {
            fs.writeFileSync(devVarsPath, devVarsText({ FLY_REGISTRY_APP: "", FLY_APP_NAME: "my-app" }));
            const w = await startWorker({ registryServer: "127.0.0.1:5000" });
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.config.image, "127.0.0.1:5000/my-app:dev-aaaaaaaaaaaa");
        });

        it("re-provision is config-only: no Fly call, machine keeps its image, trackedImageTag follows latest", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const before = (await status(w, "u")).body;

            fs.writeFileSync(devVarsPath, devVarsText({ OPENCLAW_VERSION: "2026.2.22", FLY_IMAGE_TAG: "dev-bbbbbbbbbbbb" }));
            await w.restart();
            const calls = flyWrites();
            const r = await call(w, "POST", "provision", { userId: "u", envVars: { A: "1", B: "2" } });
            assert.equal(r.status, 201);
            assert.equal(flyWrites(), calls);

            const after = (await status(w, "u")).body;
            assert.equal(after.trackedImageTag, "dev-bbbbbbbbbbbb");
            assert.equal(after.openclawVersion, "2026.2.22");
            assert.equal(after.envVarCount, 2);
            assert.equal(after.flyMachineId, before.flyMachineId);
            assert.equal(fly.machine(after.flyAppName, after.flyMachineId)?.config.image, "registry.fly.io/kiloclaw-machines:dev-aaaaaaaaaaaa");
            assert.equal(w.instance("u")?.machineImage, "registry.fly.io/kiloclaw-machines:dev-aaaaaaaaaaaa");
        });

        it("the early worker leaves the instance provisioned until /start", async () => {
            const w = await startWorker({ profile: "early" });
            await call(w, "POST", "provision", { userId: "u" });
            let s = (await status(w, "u")).body;
            assert.equal(s.status, "provisioned");
            assert.equal(s.flyMachineId, null);
            assert.equal(fly.machines().length, 0);

            assert.deepEqual(await call(w, "POST", "start", { userId: "u" }), { status: 200, body: { ok: true } });
            s = (await status(w, "u")).body;
            assert.equal(s.status, "running");
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.state, "started");
        });

        it("stop then start reuses the machine", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const first = (await status(w, "u")).body;
            assert.deepEqual(await call(w, "POST", "stop", { userId: "u" }), { status: 200, body: { ok: true } });
            assert.equal((await status(w, "u")).body.status, "stopped");
            assert.equal(fly.machine(first.flyAppName, first.flyMachineId)?.state, "stopped");
            assert.equal((await call(w, "POST", "stop", { userId: "u" })).status, 200);
            await call(w, "POST", "start", { userId: "u" });
            const s = (await status(w, "u")).body;
            assert.equal(s.status, "running");
            assert.equal(s.flyMachineId, first.flyMachineId);
        });

        it("a 408 from the Fly wait surfaces as a 500 FlyApiError and leaves a provisioned instance with its machine", async () => {
            await fly.close();
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: 5, firstPullDelayMs: 60_000 });
            const w = await startWorker();
            const r = await call(w, "POST", "provision", { userId: "u" });
            assert.equal(r.status, 500);
            assert.match(r.body.error, /^FlyApiError: Fly API waitForState failed \(408\): /);
            const s = (await status(w, "u")).body;
            assert.equal(s.status, "provisioned");
            assert.ok(s.flyMachineId);
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.state, "replacing");
        });

        it("surfaces Fly errors as FlyApiError and an unreachable Fly as Network connection lost.", async () => {
            const w = await startWorker();
            fly.inject({ method: "POST", path: /\/volumes$/, status: 404, body: { error: "app not found" } });
            const r = await call(w, "POST", "provision", { userId: "u" });
            assert.equal(r.status, 500);
            assert.match(r.body.error, /^FlyApiError: Fly API createVolume failed \(404\): /);
            assert.equal((await status(w, "u")).body.status, null);

            const deadUrl = fly.url;
            await fly.close();
            const offline = await startWorker({ flyApiUrl: deadUrl });
            assert.deepEqual(await call(offline, "POST", "provision", { userId: "v" }), {
                status: 500,
                body: { error: "Network connection lost." },
            });
            fly = await FlyEmulator.start({ token: FLY_TOKEN, msPerSecond: 10 }); // for afterEach
        });
    });

    describe("destroy", () => {
        it("is two-phase: destroying until Fly deletes succeed (retried), then all-null status", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            // Machine deletes fail until the faults are cleared, so `destroying` holds meanwhile.
            fly.inject({ method: "DELETE", path: /\/machines\//, status: 500, body: { error: "boom" }, times: Infinity });

            assert.deepEqual(await call(w, "POST", "destroy", { userId: "u" }), { status: 200, body: { ok: true } });
            assert.equal((await status(w, "u")).body.status, "destroying");
            assert.deepEqual(await call(w, "POST", "destroy", { userId: "u" }), { status: 200, body: { ok: true } });
            assert.deepEqual(await call(w, "POST", "provision", { userId: "u" }), {
                status: 500,
                body: { error: "Cannot provision: instance is being destroyed" },
            });
            assert.deepEqual(await call(w, "POST", "start", { userId: "u" }), {
                status: 500,
                body: { error: "Cannot start: instance is being destroyed" },
            });
            await until(() => w.instance("u")?.lastDestroyError != null, 10_000);
            assert.match(w.instance("u")!.lastDestroyError!, /FlyApiError: Fly API destroyMachine failed \(500\)/);
            assert.equal((await status(w, "u")).body.status, "destroying");
            fly.clearFaults(); // the next retry alarm (a scaled minute) succeeds

            const gone = await statusUntil(w, "u", (x) => x.status === null);
            assert.equal(gone.flyMachineId, null);
            assert.ok(fly.requests.some((q) => q.method === "DELETE" && q.query.force === "true" && q.status === 200));
            assert.ok(fly.volumes(s.flyAppName).every((v) => v.state === "destroyed"));
            await until(() => fly.machine(s.flyAppName, s.flyMachineId)?.state === "destroyed", 5_000);
            assert.ok(fly.apps.includes(s.flyAppName), "destroy keeps the app");
        });

        it("answers 500 Instance not provisioned for a user with no instance", async () => {
            const w = await startWorker();
            assert.deepEqual(await call(w, "POST", "destroy", { userId: "nobody" }), { status: 500, body: { error: "Instance not provisioned" } });
            assert.deepEqual(await call(w, "POST", "start", { userId: "nobody" }), { status: 500, body: { error: "Instance not provisioned" } });
            const s = await status(w, "nobody");
            assert.equal(s.status, 200);
            // The current worker counts 0 for a user it never saw; every other field is null.
            const { envVarCount, secretCount, channelCount, ...rest } = s.body;
            assert.deepEqual([envVarCount, secretCount, channelCount], [0, 0, 0]);
            assert.ok(Object.values(rest).every((v) => v === null));
        });

        it("destroyOutOfBand wipes the instance and its machine behind the client's back", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            await w.destroyOutOfBand("u");
            assert.equal((await status(w, "u")).body.status, null);
            assert.equal(w.instance("u"), undefined);
            await until(() => fly.machine(s.flyAppName, s.flyMachineId)?.state === "destroyed", 5_000);
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.state, "destroyed");
        });
    });

    describe("image version registry (KV)", () => {
        it("a publish that disagrees with .dev.vars is undone by the next request; restart() picks up an edited file", async () => {
            const w = await startWorker();
            await status(w, "u");
            assert.equal(w.kvLatest()?.imageTag, "dev-aaaaaaaaaaaa");

            const pub = await call(w, "POST", "publish-image-version", { openclawVersion: "2026.2.22", imageTag: "dev-bbbbbbbbbbbb" });
            assert.equal(pub.status, 201);
            assert.equal(pub.body.ok, true);
            assert.equal(w.kvLatest()?.imageTag, "dev-bbbbbbbbbbbb");
            assert.equal(w.kvGet("image-version:2026.2.22:default")?.imageTag, "dev-bbbbbbbbbbbb");

            await status(w, "u"); // the worker's own registration runs again
            assert.equal(w.kvLatest()?.imageTag, "dev-aaaaaaaaaaaa");
            assert.equal(w.kvLatest()?.openclawVersion, "2026.2.9");

            fs.writeFileSync(devVarsPath, devVarsText({ OPENCLAW_VERSION: "2026.2.22", FLY_IMAGE_TAG: "dev-bbbbbbbbbbbb" }));
            await status(w, "u");
            assert.equal(w.kvLatest()?.imageTag, "dev-aaaaaaaaaaaa", "wrangler dev does not reload .dev.vars");

            await w.restart();
            await status(w, "u");
            assert.equal(w.kvLatest()?.imageTag, "dev-bbbbbbbbbbbb");
        });

        it("setLatest false only writes the version key; reloadDevVarsOnRequest follows file edits", async () => {
            const w = await startWorker({ reloadDevVarsOnRequest: true });
            await call(w, "POST", "publish-image-version", { openclawVersion: "2026.3.1", imageTag: "dev-cccccccccccc", setLatest: false });
            assert.equal(w.kvLatest()?.imageTag, "dev-aaaaaaaaaaaa");
            assert.equal(w.kvGet("image-version:2026.3.1:default")?.imageTag, "dev-cccccccccccc");

            fs.writeFileSync(devVarsPath, devVarsText({ FLY_IMAGE_TAG: "dev-dddddddddddd" }));
            await status(w, "u");
            assert.equal(w.kvLatest()?.imageTag, "dev-dddddddddddd");
        });

        it("without OPENCLAW_VERSION in .dev.vars a publish sticks", async () => {
            const w = await startWorker({ vars: { OPENCLAW_VERSION: undefined } });
            await call(w, "POST", "publish-image-version", { openclawVersion: "2026.2.22", imageTag: "dev-bbbbbbbbbbbb" });
            await status(w, "u");
            assert.equal(w.kvLatest()?.imageTag, "dev-bbbbbbbbbbbb");
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.config.image, "registry.fly.io/kiloclaw-machines:dev-bbbbbbbbbbbb");
        });

        it('rejects publishing "latest" or missing fields with 400; the early worker answers its 401 catch-all', async () => {
            const w = await startWorker();
            const latest = await call(w, "POST", "publish-image-version", { openclawVersion: "latest", imageTag: "x" });
            assert.deepEqual(latest, { status: 400, body: { error: '"latest" is reserved and cannot be used as a version' } });
            // As the worker's parseBody answers: the field errors themselves are the details.
            const missing = await call(w, "POST", "publish-image-version", { openclawVersion: "2026.2.22" });
            assert.equal(missing.status, 400);
            assert.equal(missing.body.error, "Invalid request");
            assert.ok(Array.isArray(missing.body.details.imageTag));
            // The fields come first: "latest" with a missing tag is an invalid request.
            const both = await call(w, "POST", "publish-image-version", { openclawVersion: "latest" });
            assert.equal(both.body.error, "Invalid request");
            // A variant outside the catalog fails the entry's schema: "Invalid version entry" with flatten()'s shape.
            const variant = await call(w, "POST", "publish-image-version", { openclawVersion: "2026.2.22", imageTag: "x", variant: "arm" });
            assert.equal(variant.body.error, "Invalid version entry");
            assert.deepEqual(variant.body.details.formErrors, []);
            assert.ok(Array.isArray(variant.body.details.fieldErrors.variant));

            const old = await startWorker({ profile: "early" });
            const r = await call(old, "POST", "publish-image-version", { openclawVersion: "2026.2.22", imageTag: "x" });
            assert.deepEqual(r, { status: 401, body: { error: "Authentication required", hint: "No active session. Please log in." } });
        });
    });

    describe("the newest status and debug-status carry the real fields", () => {
        it("trackedImageDigest and the settings in status; alarmScheduledAt and lastDestroyErrorOp in debug-status; not on current", async () => {
            const newest = await startWorker({ profile: "newest" });
            await call(newest, "POST", "provision", { userId: "u" });
            const s = (await call(newest, "GET", "status?userId=u")).body;
            for (const key of ["trackedImageDigest", "googleConnected", "gmailNotificationsEnabled", "execSecurity", "execAsk"])
                assert.ok(key in s, key);
            const d = (await call(newest, "GET", "debug-status?userId=u")).body;
            for (const key of ["alarmScheduledAt", "lastDestroyErrorOp", "trackedImageDigest"]) assert.ok(key in d, key);
            const current = await startWorker({ profile: "current" });
            assert.ok(!("trackedImageDigest" in (await call(current, "GET", "status?userId=u")).body));
        });
    });

    describe("gateway/status when the worker cannot ask the machine", () => {
        it("answers 500 GatewayControllerError when the controller is unreachable, and on current for an absent instance", async () => {
            const w = await startWorker({ profile: "current", gateway: "unreachable" });
            const absent = await call(w, "GET", "gateway/status?userId=nobody");
            assert.deepEqual(absent, { status: 500, body: { error: "GatewayControllerError: Instance not provisioned" } });
            await call(w, "POST", "provision", { userId: "u" });
            const r = await call(w, "GET", "gateway/status?userId=u");
            assert.equal(r.status, 500);
            assert.match(r.body.error, /^GatewayControllerError: Gateway controller request failed/);
        });
    });

    describe("provision keys a generation does not know", () => {
        for (const profile of ["early", "current", "newest"] as const) {
            it(`${profile}: pinnedImageTag 7 ${profile === "newest" ? "is a 400 (its schema has the field)" : "is ignored (zod strips unknown keys): 201"}`, async () => {
                const w = await startWorker({ profile });
                const r = await call(w, "POST", "provision", { userId: "u", pinnedImageTag: 7 });
                if (profile === "newest") {
                    assert.equal(r.status, 400);
                    assert.ok(r.body.details.pinnedImageTag);
                } else assert.equal(r.status, 201);
            });
        }
    });

    describe("gateway-token", () => {
        it("is 404 before provision, the HMAC of the sandboxId after", async () => {
            const w = await startWorker({ profile: "early" });
            assert.deepEqual(await call(w, "GET", "gateway-token?userId=u"), { status: 404, body: { error: "Instance not provisioned" } });
            assert.equal((await call(w, "GET", "gateway-token")).status, 400);
            await call(w, "POST", "provision", { userId: "u" });
            const expected = crypto.createHmac("sha256", GATEWAY_SECRET).update(sandboxIdFor("u")).digest("hex");
            assert.deepEqual(await call(w, "GET", "gateway-token?userId=u"), { status: 200, body: { gatewayToken: expected } });
        });

        it("is 503 when GATEWAY_TOKEN_SECRET is unset (DEV_MODE worker)", async () => {
            const w = await startWorker({ vars: { DEV_MODE: "true", GATEWAY_TOKEN_SECRET: undefined } });
            assert.equal((await call(w, "GET", "gateway-token?userId=u")).status, 503);
        });
    });

    describe("faults and Fly auth", () => {
        it("can inject the Cloud app's 409 User already has an active instance", async () => {
            const w = await startWorker();
            w.inject({ method: "POST", path: "/api/platform/provision", status: 409, body: { error: "User already has an active instance" } });
            assert.deepEqual(await call(w, "POST", "provision", { userId: "u" }), {
                status: 409,
                body: { error: "User already has an active instance" },
            });
            assert.equal((await call(w, "POST", "provision", { userId: "u" })).status, 201);
        });

        it("sends macaroon tokens as FlyV1 and classic ones as Bearer", async () => {
            assert.equal(flyAuthorization("fm2_abc"), "FlyV1 fm2_abc");
            assert.equal(flyAuthorization("fm1r_abc,fm1a_def"), "FlyV1 fm1r_abc,fm1a_def");
            assert.equal(flyAuthorization("classic"), "Bearer classic");
            assert.equal(flyAuthorization("FlyV1 fm2_x"), "FlyV1 fm2_x");

            await fly.close();
            fly = await FlyEmulator.start({ token: "fm2_macaroon", msPerSecond: 10 });
            const w = await startWorker({ vars: { FLY_API_TOKEN: "fm2_macaroon" } });
            assert.equal((await call(w, "POST", "provision", { userId: "u" })).status, 201);
        });
    });
    // Issue 18: points where each generation's source differs, pinned per profile.
    describe("machineSize from Fly, the newest alarm time, the early restore and live check", () => {
        /** Provisions (and, on early, starts) and waits for `running` without a status read (so no live check yet). */
        async function runningWithoutStatusRead(w: WorkerEmulator, userId: string): Promise<WorkerInstanceRecord> {
            await call(w, "POST", "provision", { userId });
            if (w.profile.name === "early") await call(w, "POST", "start", { userId });
            assert.ok(await until(() => w.instance(userId)?.status === "running", 10_000), "never running");
            return w.instance(userId)!;
        }

        for (const profile of ["early", "current", "newest"] as const) {
            it(`${profile}: a status read's live check marks a stopped machine \`stopped\` and ${profile === "early" ? "leaves machineSize unknown" : "fills machineSize from its guest"}`, async () => {
                const w = await startWorker({ profile });
                const rec = await runningWithoutStatusRead(w, "u");
                assert.equal(rec.machineSize, null);
                fly.setMachineState(rec.flyAppName, rec.flyMachineId!, "stopped");
                const s = await statusUntil(w, "u", (x) => x.status === "stopped");
                const guest = fly.machine(rec.flyAppName, rec.flyMachineId!)?.config.guest;
                if (profile === "early") {
                    assert.ok(!("machineSize" in s));
                    assert.equal(w.instance("u")!.machineSize, null);
                } else {
                    assert.ok(guest);
                    assert.deepEqual(s.machineSize, guest);
                }
            });
        }

        it("current: machineSize is null until the first live check of the running instance, then Fly's guest", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const first = (await status(w, "u")).body;
            assert.equal(first.status, "running");
            assert.equal(first.machineSize, null); // the check runs after the answer
            const s = await statusUntil(w, "u", (x) => x.machineSize !== null);
            assert.equal(s.status, "running");
            assert.deepEqual(s.machineSize, fly.machine(s.flyAppName, s.flyMachineId)?.config.guest);
        });

        it("current: starting an existing machine fills machineSize before the answer", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            await call(w, "POST", "stop", { userId: "u" });
            assert.equal(w.instance("u")!.machineSize, null);
            await call(w, "POST", "start", { userId: "u" });
            const s = (await status(w, "u")).body;
            assert.deepEqual(s.machineSize, fly.machine(s.flyAppName, s.flyMachineId)?.config.guest);
        });

        it("newest: debug-status alarmScheduledAt is the next alarm (5 min running, 30 min stopped, 1 min destroying, null when gone)", async () => {
            const w = await startWorker({ profile: "newest" });
            const debug = async () => (await call(w, "GET", "debug-status?userId=u")).body.alarmScheduledAt;
            const msPerSecond = 10;
            /** The alarm lies `seconds` plus up to 60 s of jitter after a moment in [from, to]. */
            const assertAlarm = (at: unknown, seconds: number, from: number, to: number) => {
                assert.equal(typeof at, "number", `alarm ${String(at)}`);
                assert.ok(
                    (at as number) >= from + seconds * msPerSecond && (at as number) <= to + (seconds + 60) * msPerSecond,
                    `alarm ${String(at)}`,
                );
            };
            assert.equal(await debug(), null);

            let from = Date.now();
            await runningWithoutStatusRead(w, "u");
            assertAlarm(await debug(), 5 * 60, from, Date.now());

            from = Date.now();
            await call(w, "POST", "stop", { userId: "u" });
            assertAlarm(await debug(), 30 * 60, from, Date.now());

            fly.inject({ method: "DELETE", path: /\/machines\//, status: 500, body: { error: "boom" }, times: Infinity });
            from = Date.now();
            await call(w, "POST", "destroy", { userId: "u" });
            assertAlarm(await debug(), 60, from, Date.now());
            fly.clearFaults();
            await statusUntil(w, "u", (x) => x.status === null);
            assert.equal(await debug(), null);

            const current = await startWorker({ profile: "current" });
            await runningWithoutStatusRead(current, "u");
            assert.equal(current.instance("u")!.alarmScheduledAt, null);
        });

        it("early: /start without state restores the instance from Postgres; a user with no row is not provisioned", async () => {
            const w = await startWorker({ profile: "early" });
            const rec = await runningWithoutStatusRead(w, "u");
            await call(w, "POST", "destroy", { userId: "u" });
            assert.equal((await status(w, "u")).body.status, null);
            assert.equal((await call(w, "POST", "start", { userId: "u" })).status, 500);
            const s = (await status(w, "u")).body;
            assert.equal(s.status, "provisioned");
            assert.equal(s.sandboxId, rec.sandboxId);
            assert.equal(s.flyMachineId, null);
            assert.deepEqual(await call(w, "POST", "start", { userId: "never" }), { status: 500, body: { error: "Instance not provisioned" } });
        });
    });

    describe("generations", () => {
        const NO_ROUTE = { status: 401, body: { error: "Authentication required", hint: "No active session. Please log in." } };

        it("every generation answers an unknown platform route with the session catch-all's 401", async () => {
            for (const profile of ["early", "current", "newest"] as const) {
                const w = await startWorker({ profile });
                assert.deepEqual(await call(w, "GET", "no-such-route?userId=u"), NO_ROUTE, profile);
                assert.equal((await call(w, "GET", "debug-status?userId=u")).status, profile === "newest" ? 200 : 401, profile);
                assert.equal((await call(w, "GET", "gateway/status?userId=u")).status, profile === "early" ? 401 : 500, profile);
            }
        });

        it("the early worker's status has no version fields", async () => {
            const w = await startWorker({ profile: "early" });
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            assert.equal(s.status, "provisioned");
            assert.ok(!("trackedImageTag" in s) && !("openclawVersion" in s));
        });

        it("current: destroy answers after the deletes; /start without state restores from Postgres and fails on the lost volume", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            const machine = fly.machine(s.flyAppName, s.flyMachineId);
            assert.equal(machine?.config.services?.length, 1);
            assert.equal(machine?.config.metadata?.kiloclaw_image_variant, "default");
            assert.deepEqual(await call(w, "POST", "destroy", { userId: "u" }), { status: 200, body: { ok: true } });
            assert.equal((await status(w, "u")).body.status, null);
            const restored = await call(w, "POST", "start", { userId: "u" });
            assert.equal(restored.status, 500);
            assert.match(restored.body.error, /^FlyApiError: Fly API createVolume failed \(404\)/);
            assert.equal((await status(w, "u")).body.status, "provisioned");
        });

        it("current: a status read starts a live check that turns a stopped machine's `running` into `stopped`", async () => {
            const w = await startWorker();
            await call(w, "POST", "provision", { userId: "u" });
            const s = (await status(w, "u")).body;
            fly.setMachineState(s.flyAppName, s.flyMachineId, "stopped");
            await new Promise((r) => setTimeout(r, 350)); // past the 30 s (emulated) between checks
            await status(w, "u");
            await statusUntil(w, "u", (x) => x.status === "stopped");
        });

        it("current: `running` after the health probe even when the gateway never answers", async () => {
            const w = await startWorker({ gateway: "crashed" });
            assert.equal((await call(w, "POST", "provision", { userId: "u" })).status, 201);
            assert.equal((await status(w, "u")).body.status, "running");
            assert.equal((await call(w, "GET", "gateway/status?userId=u")).body.state, "crashed");
        });

        it("newest: provision answers at once with `starting`, takes pinnedImageTag, and keeps Fly detail for debug-status", async () => {
            const w = await startWorker({ profile: "newest" });
            assert.equal((await call(w, "POST", "provision", { userId: "u", pinnedImageTag: "dev-pinned" })).status, 201);
            assert.equal((await status(w, "u")).body.status, "starting");
            const s = await statusUntil(w, "u", (x) => x.status === "running");
            assert.equal(fly.machine(s.flyAppName, s.flyMachineId)?.config.image, "registry.fly.io/kiloclaw-machines:dev-pinned");

            // A start that fails before a machine exists: sanitised answer, reason in debug-status, then the 30-minute cooldown.
            fly.inject({ method: "POST", path: /\/machines$/, status: 422, body: { error: "no capacity" }, times: 1 });
            await call(w, "POST", "provision", { userId: "v" });
            await statusUntil(w, "v", (x) => x.status === "stopped");
            const debug = (await call(w, "GET", "debug-status?userId=v")).body;
            assert.match(debug.lastStartErrorMessage, /createMachine failed \(422\)/);
            assert.ok(debug.lastMetadataRecoveryAt);
            assert.deepEqual(await call(w, "POST", "start", { userId: "v" }), { status: 500, body: { error: "start failed" } });
            assert.deepEqual(await call(w, "POST", "start", { userId: "v", skipCooldown: true }), { status: 200, body: { ok: true } });
            assert.equal((await status(w, "v")).body.status, "running");
        });

        it("newest: not provisioned is 404 on gateway-token, 500 elsewhere; destroy is refused while restoring", async () => {
            const w = await startWorker({ profile: "newest" });
            assert.equal((await call(w, "GET", "gateway-token?userId=x")).status, 404);
            assert.deepEqual(await call(w, "POST", "destroy", { userId: "x" }), { status: 500, body: { error: "Instance not provisioned" } });
            await call(w, "POST", "provision", { userId: "u" });
            await statusUntil(w, "u", (x) => x.status === "running");
            w.setStatus("u", "restoring");
            assert.deepEqual(await call(w, "POST", "destroy", { userId: "u" }), {
                status: 500,
                body: { error: "Cannot destroy: instance is restoring from snapshot" },
            });
        });
    });
});
