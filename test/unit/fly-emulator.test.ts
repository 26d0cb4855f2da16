// The Fly emulator itself: auth rules, machine lifecycle, wait semantics and
// fault injection. States and request logs are asserted, never durations.
import * as assert from "node:assert/strict";
import { FlyEmulator, FlyEmulatorOptions } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";

const TOKEN = "classic-test-token";
const IMAGE = "registry.fly.io/kiloclaw-machines:dev-0123456789ab";

interface Reply {
    status: number;
    body: any;
    headers: Headers;
}

describe("FlyEmulator", () => {
    let fly: FlyEmulator;

    async function start(opts: FlyEmulatorOptions = {}): Promise<FlyEmulator> {
        fly = await FlyEmulator.start({ token: TOKEN, msPerSecond: 5, ...opts });
        return fly;
    }

    async function call(method: string, path: string, body?: unknown, auth = `Bearer ${TOKEN}`): Promise<Reply> {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (auth) headers.authorization = auth;
        const res = await fetch(`${fly.url}/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
    }

    async function createMachine(app = "warm-app", extra: Record<string, unknown> = {}): Promise<string> {
        const r = await call("POST", `/apps/${app}/machines`, {
            region: "iad",
            config: { image: IMAGE, env: { KILOCODE_API_KEY: "warm" } },
            ...extra,
        });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return r.body.id as string;
    }

    /** Polls the wait endpoint (as clients do on 408) until it answers 200; returns the number of 408s seen. */
    async function waitFor(app: string, id: string, state: string): Promise<number> {
        let timeouts = 0;
        for (let i = 0; i < 200; i++) {
            const r = await call("GET", `/apps/${app}/machines/${id}/wait?state=${state}&timeout=60`);
            if (r.status === 200) return timeouts;
            assert.equal(r.status, 408, JSON.stringify(r.body));
            timeouts += 1;
        }
        throw new Error(`machine ${id} never reached ${state}`);
    }

    afterEach(async () => {
        await fly?.close();
    });

    describe("authentication", () => {
        it("accepts a classic token as Bearer and rejects missing or wrong tokens", async () => {
            await start();
            assert.equal((await call("GET", "/apps/x/machines")).status, 200);
            for (const auth of ["", "Bearer nope", `FlyV1 ${TOKEN}`, TOKEN]) {
                const r = await call("GET", "/apps/x/machines", undefined, auth);
                assert.equal(r.status, 401, auth);
                assert.deepEqual(r.body, { error: "Authenticate: token validation error" });
            }
        });

        it("wants macaroons as FlyV1 and says so when they come as Bearer", async () => {
            const macaroon = "fm2_lJPECAAAAAAAAtest,fm2_second";
            await start({ token: macaroon });
            assert.equal((await call("GET", "/apps/x/machines", undefined, `FlyV1 ${macaroon}`)).status, 200);
            const asBearer = await call("GET", "/apps/x/machines", undefined, `Bearer ${macaroon}`);
            assert.equal(asBearer.status, 401);
            assert.deepEqual(asBearer.body, { error: "verify: invalid token: no tokens found in header" });
        });

        it("redacts the authorization header in the request log", async () => {
            await start();
            await call("GET", "/apps/x/machines");
            assert.equal(fly.requests[0].headers.authorization, "<redacted>");
            assert.ok(!JSON.stringify(fly.requests).includes(TOKEN));
        });
    });

    describe("apps and volumes", () => {
        it("creates, reads and deletes apps, and records deletions", async () => {
            await start({ autoCreateApps: false });
            assert.equal((await call("GET", "/apps/dev-abc")).status, 404);
            const created = await call("POST", "/apps", { app_name: "dev-abc", org_slug: "personal" });
            assert.equal(created.status, 201);
            const got = await call("GET", "/apps/dev-abc");
            assert.equal(got.status, 200);
            assert.equal(got.body.name, "dev-abc");
            assert.equal((await call("DELETE", "/apps/dev-abc")).status, 202);
            assert.deepEqual(fly.deletedApps, ["dev-abc"]);
            assert.ok(fly.requests.some((r) => r.method === "DELETE" && r.path === "/v1/apps/dev-abc"));
        });

        it("answers 404 app not found for machines of an unknown app unless apps auto-create", async () => {
            await start({ autoCreateApps: false });
            const r = await call("POST", "/apps/nope/machines", { config: { image: IMAGE } });
            assert.equal(r.status, 404);
            assert.deepEqual(r.body, { error: "app not found" });
            await fly.close();
            await start();
            await createMachine("springs-up");
            assert.ok(fly.apps.includes("springs-up"));
        });

        it("creates, reads and deletes volumes; ips and secrets are accepted", async () => {
            await start();
            const v = await call("POST", "/apps/a/volumes", { name: "kiloclaw_x", region: "iad", size_gb: 10 });
            assert.equal(v.status, 200);
            assert.match(v.body.id, /^vol_/);
            assert.equal(v.body.state, "created");
            assert.equal(v.body.size_gb, 10);
            assert.equal((await call("GET", `/apps/a/volumes/${v.body.id}`)).body.name, "kiloclaw_x");
            assert.equal((await call("DELETE", `/apps/a/volumes/${v.body.id}`)).status, 200);
            assert.equal((await call("GET", `/apps/a/volumes/${v.body.id}`)).status, 404);
            assert.equal((await call("POST", "/apps/a/ips", { type: "shared_v4" })).status, 200);
            assert.equal((await call("POST", "/apps/a/secrets", { name: "S" })).status, 200);
        });
    });

    describe("machines", () => {
        it("creates a machine that reaches started, with a Fly-shaped body and a request id", async () => {
            await start();
            const r = await call("POST", "/apps/warm-app/machines", { config: { image: IMAGE, metadata: { owner: "dev" } } });
            assert.equal(r.status, 200);
            assert.ok(r.headers.get("fly-request-id"));
            assert.match(r.body.id, /^[0-9a-f]{14}$/);
            assert.match(r.body.instance_id, /^[0-9A-Z]{26}$/);
            assert.equal(r.body.state, "created");
            assert.deepEqual(
                { registry: r.body.image_ref.registry, repository: r.body.image_ref.repository, tag: r.body.image_ref.tag },
                { registry: "registry.fly.io", repository: "kiloclaw-machines", tag: "dev-0123456789ab" },
            );
            await waitFor("warm-app", r.body.id, "started");
            const got = await call("GET", `/apps/warm-app/machines/${r.body.id}`);
            assert.equal(got.body.state, "started");
            assert.equal(got.body.events[0].status, "started", "events are newest first");
        });

        it("rejects a machine without config.image", async () => {
            await start();
            const r = await call("POST", "/apps/a/machines", { config: {} });
            assert.equal(r.status, 400);
            assert.match(r.body.error, /^invalid_argument:/);
        });

        it("answers 408 while a first pull runs, then started on a later wait; the second machine skips the pull", async () => {
            await start({ firstPullDelayMs: 400 });
            const id = await createMachine();
            const r = await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=1`);
            assert.equal(r.status, 408);
            assert.equal(r.body.error, "deadline_exceeded: machine failed to reach desired state, started, currently replacing");
            await waitFor("warm-app", id, "started");
            assert.deepEqual(fly.pulledImages, [IMAGE]);

            const second = await createMachine();
            assert.ok(await until(() => fly.machine("warm-app", second)?.state === "started", 10_000));
            assert.ok(!fly.machine("warm-app", second)!.events.some((e) => e.status === "replacing"));
        });

        it("rejects wait timeouts outside 1-60 and unknown states", async () => {
            await start({ waitCapSeconds: 60 });
            const id = await createMachine();
            for (const timeout of ["61", "0", "abc"]) {
                const r = await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=${timeout}`);
                assert.equal(r.status, 400, timeout);
                assert.match(r.body.error, /^invalid_argument:/);
            }
            // 1 is accepted: it waits (200 once started, 408 if 1 s is not enough), it is not refused.
            const one = await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=1`);
            assert.ok([200, 408].includes(one.status), JSON.stringify(one.body));
            const bad = await call("GET", `/apps/warm-app/machines/${id}/wait?state=running&timeout=1`);
            assert.equal(bad.status, 400);
        });

        it("refuses a non-force delete of a running machine, force-deletes it, then answers 404", async () => {
            await start();
            const id = await createMachine();
            await waitFor("warm-app", id, "started");
            const refused = await call("DELETE", `/apps/warm-app/machines/${id}`);
            assert.equal(refused.status, 412);
            assert.match(refused.body.error, /^failed_precondition: unable to destroy machine, not currently stopped/);

            const deleted = await call("DELETE", `/apps/warm-app/machines/${id}?force=true`);
            assert.deepEqual([deleted.status, deleted.body], [200, { ok: true }]);
            const waited = await call("GET", `/apps/warm-app/machines/${id}/wait?state=destroyed&timeout=60`);
            assert.ok(waited.status === 200 || waited.status === 404, `wait destroyed answered ${waited.status}`);
            assert.equal((await call("GET", `/apps/warm-app/machines/${id}`)).status, 404);
            assert.equal((await call("GET", `/apps/warm-app/machines/${id}/wait?state=destroyed&timeout=1`)).status, 404);
            // As measured on Fly: a wait for another state answers 408 at once once the machine is gone.
            const waitStarted = await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=60`);
            assert.equal(waitStarted.status, 408);
            assert.equal((await call("GET", "/apps/warm-app/machines")).body.length, 0);
            assert.equal((await call("GET", "/apps/warm-app/machines?include_deleted=true")).body.length, 1);
        });

        it("a machine destroyed during a wait for started ends that wait and every later one with 408 at once", async () => {
            // Held in replacing for an hour of contract time: only the destroy can end the wait.
            await start({ firstPullDelayMs: 3_600_000 });
            const id = await createMachine("warm-app", { config: { image: IMAGE, auto_destroy: true, restart: { policy: "no" } } });
            const pending = call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=60`);
            assert.ok(await until(() => fly.requests.some((r) => r.path.endsWith("/wait")), 10_000));
            fly.exitProcess("warm-app", id);
            const first = await pending;
            assert.equal(first.status, 408);
            assert.match(first.body.error, /currently destroyed/);
            const again = await Promise.all([1, 2, 3].map(() => call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=60`)));
            assert.deepEqual(
                again.map((r) => r.status),
                [408, 408, 408],
            );
            assert.equal((await call("GET", `/apps/warm-app/machines/${id}`)).status, 404);
            assert.equal((await call("GET", `/apps/warm-app/machines/${id}/wait?state=destroyed&timeout=1`)).status, 404);
        });

        it("destroys an auto_destroy machine with restart no when its process exits; keeps the others as failed", async () => {
            await start({ crashingImages: [IMAGE] });
            const auto = await createMachine("warm-app", { config: { image: IMAGE, auto_destroy: true, restart: { policy: "no" } } });
            const kept = await createMachine("warm-app", { config: { image: IMAGE, auto_destroy: false } });
            assert.ok(await until(() => fly.machine("warm-app", auto)?.state === "destroyed", 10_000));
            assert.ok(await until(() => fly.machine("warm-app", kept)?.state === "failed", 10_000));
            const events = fly.machine("warm-app", auto)!.events.map((e) => `${e.type}:${e.status}:${e.source}`);
            assert.deepEqual(events.slice(0, 2), ["destroy:destroyed:flyd", "exit:stopped:flyd"]);
            assert.equal((await call("GET", `/apps/warm-app/machines/${auto}`)).status, 404);
            assert.equal((await call("GET", `/apps/warm-app/machines/${kept}`)).body.state, "failed");
        });

        it("accepts kill=true like force=true, and deleteMode 202", async () => {
            await start({ deleteMode: "202" });
            const id = await createMachine();
            const r = await call("DELETE", `/apps/warm-app/machines/${id}?kill=true`);
            assert.equal(r.status, 202);
            assert.ok(await until(() => fly.machine("warm-app", id)?.state === "destroyed", 10_000));
        });

        it("stops and starts a machine; a stopped machine deletes without force", async () => {
            await start();
            const id = await createMachine();
            await waitFor("warm-app", id, "started");
            assert.deepEqual((await call("POST", `/apps/warm-app/machines/${id}/stop`)).body, { ok: true });
            await waitFor("warm-app", id, "stopped");
            const started = await call("POST", `/apps/warm-app/machines/${id}/start`);
            assert.deepEqual(started.body, { previous_state: "stopped", migrated: false, new_host: "" });
            await waitFor("warm-app", id, "started");
            await call("POST", `/apps/warm-app/machines/${id}/stop`);
            await waitFor("warm-app", id, "stopped");
            assert.equal((await call("DELETE", `/apps/warm-app/machines/${id}`)).status, 200);
        });

        it("refuses to start a machine held in replacing", async () => {
            await start();
            const id = await createMachine();
            await waitFor("warm-app", id, "started");
            await call("POST", `/apps/warm-app/machines/${id}/stop`);
            await waitFor("warm-app", id, "stopped");
            fly.setMachineState("warm-app", id, "replacing");
            const r = await call("POST", `/apps/warm-app/machines/${id}/start`);
            assert.equal(r.status, 412);
            assert.equal(r.body.error, "failed_precondition: machine getting replaced, refusing to start");
            const w = await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=1`);
            assert.equal(w.status, 408);
            assert.match(w.body.error, /currently replacing$/);
        });

        it("changes instance_id on update", async () => {
            await start();
            const id = await createMachine();
            await waitFor("warm-app", id, "started");
            const before = fly.machine("warm-app", id)!.instance_id;
            const r = await call("POST", `/apps/warm-app/machines/${id}`, { config: { image: `${IMAGE}-2` } });
            assert.equal(r.status, 200);
            assert.notEqual(r.body.instance_id, before);
            await waitFor("warm-app", id, "started");
        });

        it("lists with metadata and region filters", async () => {
            await start();
            await createMachine("a", { config: { image: IMAGE, metadata: { kiloclaw_rollout_warm: "dev" } } });
            await createMachine("a", { config: { image: IMAGE, metadata: { kiloclaw_rollout_warm: "prod" } } });
            await createMachine("a", { region: "ams", config: { image: IMAGE } });
            const dev = await call("GET", "/apps/a/machines?metadata.kiloclaw_rollout_warm=dev");
            assert.equal(dev.body.length, 1);
            assert.equal(dev.body[0].config.metadata.kiloclaw_rollout_warm, "dev");
            assert.equal((await call("GET", "/apps/a/machines?region=ams")).body.length, 1);
            assert.equal((await call("GET", "/apps/a/machines")).body.length, 3);
        });
    });

    describe("fault injection", () => {
        it("answers an injected status the given number of times, then handles normally", async () => {
            await start();
            fly.inject({ method: "POST", path: "/machines", status: 503, body: { error: "unavailable: try again" }, times: 2 });
            const first = await call("POST", "/apps/a/machines", { config: { image: IMAGE } });
            const second = await call("POST", "/apps/a/machines", { config: { image: IMAGE } });
            const third = await call("POST", "/apps/a/machines", { config: { image: IMAGE } });
            assert.deepEqual([first.status, second.status, third.status], [503, 503, 200]);
            assert.deepEqual(first.body, { error: "unavailable: try again" });
            assert.deepEqual(
                fly.requests.map((r) => r.faulted),
                [true, true, false],
            );
            assert.equal(fly.machines("a").length, 1);
        });

        it("drops a connection without answering", async () => {
            await start();
            fly.inject({ path: /\/wait$/, drop: true });
            const id = await createMachine();
            await assert.rejects(call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=60`));
            assert.equal((await call("GET", `/apps/warm-app/machines/${id}/wait?state=started&timeout=60`)).status, 200);
            assert.equal(fly.requests.filter((r) => r.path.endsWith("/wait") && r.faulted).length, 1);
        });

        it("delays a request and then handles it normally", async () => {
            await start();
            fly.inject({ method: "GET", path: "/apps/slow", delayMs: 300 });
            const slow = call("GET", "/apps/slow/machines");
            assert.ok(await until(() => fly.requests.length === 1, 5_000));
            const fast = await call("GET", "/apps/fast/machines");
            assert.equal(fast.status, 200);
            // The delayed request was logged first but had no answer yet when the later one finished.
            assert.equal(fly.requests[0].status, 0);
            assert.equal((await slow).status, 200);
            assert.equal(fly.requests[0].status, 200);
            assert.equal(fly.requests[0].faulted, false);
        });

        it("clearFaults removes pending rules", async () => {
            await start();
            fly.inject({ status: 500, times: Infinity });
            assert.equal((await call("GET", "/apps/a/machines")).status, 500);
            fly.clearFaults();
            assert.equal((await call("GET", "/apps/a/machines")).status, 200);
        });
    });
});
