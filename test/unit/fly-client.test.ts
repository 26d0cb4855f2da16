// The HTTP layer (undici's RetryAgent, told what may be re-sent) and the Fly Machines client,
// against the Fly emulator on 127.0.0.1. Request counts from the emulator's log are asserted,
// never durations.
import * as assert from "node:assert/strict";
import * as fly from "../../dynamic-providers/flyMachinesClient";
import { isLostAnswer, isNetworkError, requestJson } from "../../dynamic-providers/http";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";
import { freePort } from "../../sandbox/docker";

const TOKEN = "fm2_clienttesttoken";
const APP = "kiloclaw-dev";
const IMAGE = "registry.fly.io/kiloclaw-dev:dev-0123456789ab";
const WARM_CONFIG = { image: IMAGE, auto_destroy: true, restart: { policy: "no" as const } };

/** The error `p` rejects with; fails the test if it resolves. */
const rejects = (p: Promise<unknown>): Promise<Error> =>
    p.then(
        () => assert.fail("expected a rejection"),
        (err: Error) => err,
    );

describe("http.ts: retries by undici's RetryAgent", function () {
    this.timeout(30_000);
    let emu: FlyEmulator;
    const url = (path: string) => `${emu.url}/v1/apps/${APP}/machines${path}`;
    const auth = { authorization: `FlyV1 ${TOKEN}` };
    const sent = (method: string) => emu.requests.filter((r) => r.method === method).length;

    beforeEach(async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 5 });
    });
    afterEach(() => emu.close());

    it("re-sends a GET answered 429, then returns the 200", async () => {
        emu.inject({ method: "GET", status: 429 });
        const res = await requestJson({ method: "GET", url: url(""), headers: auth, backoffMs: 10 });
        assert.equal(res.status, 200);
        assert.deepEqual(
            emu.requests.map((r) => r.status),
            [429, 200],
        );
    });

    it("re-sends a non-idempotent POST only when Fly said it did not process it (429, 503)", async () => {
        emu.inject({ method: "POST", status: 429 });
        emu.inject({ method: "POST", status: 503 });
        const res = await requestJson({
            method: "POST",
            url: url(""),
            headers: auth,
            body: { config: WARM_CONFIG },
            idempotent: false,
            backoffMs: 10,
        });
        assert.equal(res.status, 200);
        assert.deepEqual(
            emu.requests.map((r) => r.status),
            [429, 503, 200],
        );
        assert.equal(emu.machines(APP).length, 1);
    });

    it("does not re-send a non-idempotent POST after a 502: a proxy may have passed it on", async () => {
        emu.inject({ method: "POST", status: 502 });
        const res = await requestJson({ method: "POST", url: url(""), headers: auth, body: { config: WARM_CONFIG }, backoffMs: 10 });
        assert.equal(res.status, 502);
        assert.equal(sent("POST"), 1);
    });

    it("never re-sends a POST whose connection dropped after Fly acted: one POST, one machine, a lost-answer error", async () => {
        emu.inject({ method: "POST", dropAfter: true });
        const err = await rejects(requestJson({ method: "POST", url: url(""), headers: auth, body: { config: WARM_CONFIG }, idempotent: false }));
        assert.ok(isNetworkError(err) && isLostAnswer(err), String(err));
        assert.equal(sent("POST"), 1);
        assert.equal(emu.machines(APP).length, 1, "Fly acted on the one POST");
    });

    it("re-sends an idempotent request whose connection dropped", async () => {
        emu.inject({ method: "GET", drop: true, times: 2 });
        const res = await requestJson({ method: "GET", url: url(""), headers: auth, backoffMs: 10 });
        assert.equal(res.status, 200);
        assert.equal(sent("GET"), 3);
    });

    it("returns the last answer after the attempts run out", async () => {
        emu.inject({ method: "GET", status: 503, times: 10 });
        const res = await requestJson({ method: "GET", url: url(""), headers: auth, attempts: 3, backoffMs: 10 });
        assert.equal(res.status, 503);
        assert.equal(sent("GET"), 3);
    });

    it("a per-call timeout is a lost answer and is not retried, even for a GET", async () => {
        emu.inject({ method: "GET", delayMs: 2_000 });
        const err = await rejects(requestJson({ method: "GET", url: url(""), headers: auth, timeoutMs: 200 }));
        assert.ok(isLostAnswer(err), String(err));
        assert.match((err as Error & { code: string }).code, /TIMEOUT/);
        assert.equal(sent("GET"), 1);
    });

    it("a refused connection is a network error with nothing sent", async () => {
        const port = await freePort();
        const err = await rejects(requestJson({ method: "POST", url: `http://127.0.0.1:${port}/v1/x`, attempts: 2, backoffMs: 10 }));
        assert.ok(isNetworkError(err) && !isLostAnswer(err), String(err));
        assert.equal((err as Error & { code: string }).code, "ECONNREFUSED");
    });
});

describe("flyMachinesClient against the Fly emulator", function () {
    this.timeout(60_000);
    let emu: FlyEmulator;
    const api = () => ({ baseUrl: emu.url, token: TOKEN });
    const waitCalls = (id: string) => emu.requests.filter((r) => r.path.endsWith(`/${id}/wait`) && r.query.state === "started");

    afterEach(() => emu.close());

    async function createWarm(): Promise<string> {
        return (await fly.createMachine(api(), APP, { name: `warm-${Math.random().toString(36).slice(2)}`, config: WARM_CONFIG })).id;
    }

    it("paces wait calls to about one a second when Fly answers 408 at once: at most N+1 calls over N seconds", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10, firstPullDelayMs: 3_600_000 });
        const id = await createWarm();
        emu.inject({ method: "GET", path: /\/wait$/, status: 408, body: { error: "deadline_exceeded" }, times: 100_000 });
        const seconds = 3;
        const outcome = await fly.waitForStarted(api(), APP, id, { deadline: Date.now() + seconds * 1000, waitSeconds: 60, image: IMAGE });
        const calls = waitCalls(id).length;
        console.log(`      wait calls over ${seconds} s with Fly answering 408 at once: ${calls}`);
        assert.equal(outcome.reached, false);
        assert.equal(outcome.timeouts, calls);
        assert.ok(calls >= 2 && calls <= seconds + 1, `${calls} wait calls`);
    });

    it("reads the state from GET /machines/{id}, not from the 408 text", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10, firstPullDelayMs: 3_600_000 });
        const id = await createWarm();
        emu.inject({
            method: "GET",
            path: /\/wait$/,
            status: 408,
            body: { error: "machine failed to reach desired state, started, currently failed" },
        });
        const outcome = await fly.waitForStarted(api(), APP, id, { deadline: Date.now() + 1000, waitSeconds: 60, image: IMAGE });
        assert.equal(outcome.lastState, "replacing");
        assert.ok(emu.requests.some((r) => r.method === "GET" && r.path === `/v1/apps/${APP}/machines/${id}`));
    });

    it("ends the wait when the machine is destroyed mid-wait (auto-destroy), with a bounded number of calls", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10, firstPullDelayMs: 3_600_000 });
        const id = await createWarm();
        const waiting = fly.waitForStarted(api(), APP, id, { deadline: Date.now() + 60_000, waitSeconds: 60, image: IMAGE });
        assert.ok(await until(() => waitCalls(id).length > 0, 10_000));
        emu.exitProcess(APP, id);
        const err = await rejects(waiting);
        assert.match(err.message, /destroyed while waiting for "started": the image's process exited/);
        assert.match(err.message, new RegExp(`fly logs --app ${APP} --no-tail`));
        assert.match(err.message, /docker run --rm -e KILOCODE_API_KEY=test-key/);
        assert.equal(waitCalls(id).length, 1);
    });

    it("ends the wait on a 404; with no exit in Fly's events the image is not blamed", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10 });
        const err = await rejects(fly.waitForStarted(api(), APP, "0123456789abcd", { deadline: Date.now() + 60_000, waitSeconds: 60, image: IMAGE }));
        assert.match(err.message, /but not by its image: Fly's events show no exit of its process/);
        assert.doesNotMatch(err.message, /the image's process exited/);
        assert.equal(waitCalls("0123456789abcd").length, 1);
    });

    it("stops at a failed machine and names fly logs", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10, firstPullDelayMs: 3_600_000 });
        const id = (await fly.createMachine(api(), APP, { name: "kept", config: { image: IMAGE, restart: { policy: "on-failure" } } })).id;
        emu.setMachineState(APP, id, "failed");
        const err = await rejects(fly.waitForStarted(api(), APP, id, { deadline: Date.now() + 60_000, waitSeconds: 1, image: IMAGE }));
        assert.match(err.message, /failed to start \(Fly state "failed"\).*fly logs --app/);
    });

    it("getMachine returns the machine's config.image, and undefined after destroy", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10 });
        const id = await createWarm();
        assert.equal((await fly.getMachine(api(), APP, id))?.config?.image, IMAGE);
        await fly.destroyMachine(api(), APP, id);
        assert.equal(await fly.waitForDestroyed(api(), APP, id, 30), true);
        assert.equal(await fly.getMachine(api(), APP, id), undefined);
    });

    it("a refused token names scoped tokens (fly tokens deploy / org), never the token", async () => {
        emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 10 });
        const err = await rejects(fly.getMachine({ baseUrl: emu.url, token: "fm2_wrongtoken" }, APP, "x"));
        assert.match(err.message, /\(401\)/);
        assert.match(err.message, /fly tokens deploy/);
        assert.match(err.message, /fly tokens org/);
        assert.doesNotMatch(err.message, /fly auth token/);
        assert.ok(!err.message.includes("fm2_wrongtoken"));
    });

    it("an unreachable Fly API is named as such", async () => {
        emu = await FlyEmulator.start({ token: TOKEN });
        const port = await freePort();
        const err = await rejects(fly.listMachines({ baseUrl: `http://127.0.0.1:${port}`, token: TOKEN }, APP));
        assert.match(err.message, /Cannot reach the Fly Machines API at .* \(ECONNREFUSED\)/);
    });
});
