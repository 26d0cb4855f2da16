import { WORKER_PROFILES } from "../../sandbox/emulators/worker-profiles";
// Faults injected into a rollout (warm → worker image version → worker instance)
// against the Fly and worker emulators. Each fault must end in a completed rollout
// or in a message that says what happened and what to do next, and leave nothing
// behind: no live machine or volume, no instance (unless the rollout completed,
// and then its destroy removes it). The closing table is printed by leaks.ts.
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { WARM_OWNER_KEY } from "../../dynamic-providers/warmMachineProvider";
import { devFlyAppName } from "../../lib/identity";
import { fakeCheckout, policyResources, runProgram } from "../program-harness";
import { runPack } from "../policy-harness";
import { freePort, REPO_ROOT } from "../../sandbox/docker";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { fault } from "./leaks";
import {
    completed,
    configureStage,
    destroyRollout,
    FLY_TOKEN,
    INTERNAL_KEY,
    instance,
    machineAppears,
    MS_PER_SECOND,
    ONE_WAIT_MS,
    REGISTRY_APP,
    rollout,
    Stage,
    stageScope,
    stoppedAt,
    TAG,
    warm,
    warmInputs,
    withStage,
    PROVISION_409,
    warmChildStdin,
} from "./rollout";

/** Completes, then `pulumi destroy`: the instance and everything on Fly must be gone. */
async function completeAndDestroy(stage: Stage, result: Awaited<ReturnType<typeof rollout>>): Promise<void> {
    const done = completed(result);
    assert.equal(done.instance.outs.status, "running");
    // The image is checked on the Fly machine itself: every worker generation has one (the early one has no trackedImageTag).
    assert.equal(done.instance.outs.runningImage, `registry.fly.io/${REGISTRY_APP}:${TAG}`);
    await destroyRollout(done);
}

const flyPath = (app: string, rest = "") => new RegExp(`^/v1/apps/${app}/machines${rest}$`);
const WARM_CREATE = flyPath(REGISTRY_APP);
const WARM_WAIT = flyPath(REGISTRY_APP, "/[^/]+/wait");
const WARM_MACHINE = flyPath(REGISTRY_APP, "/[^/]+");

describe("faults: the runbook's troubleshooting symptoms", function () {
    this.timeout(180_000);

    it("worker not running: names `pnpm start`, then a restarted worker completes", () =>
        fault("worker not running (no `pnpm start`)", (run) =>
            withStage({}, async (stage) => {
                const port = Number(new URL(stage.workerUrl).port);
                await stage.worker.close();
                const err = stoppedAt(await rollout(stage), "worker-image");
                assert.match(err.message, new RegExp(`not reachable at http://127\\.0\\.0\\.1:${port}`));
                assert.match(err.message, /cd cloud\/kiloclaw && pnpm start/);
                assert.match(err.message, new RegExp(`lsof -i :${port}`));
                assert.match(err.message, /pulumi up/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
                // The next step as the message gives it: start the worker, `pulumi up` again.
                const restarted = await WorkerEmulator.start({
                    devVarsPath: stage.devVarsPath,
                    flyApiUrl: stage.fly.url,
                    port,
                    msPerSecond: MS_PER_SECOND,
                });
                stage.extraWorkers.push(stage.worker);
                stage.worker = restarted;
                await completeAndDestroy(stage, await rollout(stage));
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("wrong internal key: 403 names kiloclaw:internalApiKey, the right key completes", () =>
        fault("wrong internal API key (403)", (run) =>
            withStage({}, async (stage) => {
                await configureStage(stage, { "kiloclaw:internalApiKey": "not-the-internal-key" });
                const err = stoppedAt(await rollout(stage), "worker-image");
                assert.match(err.message, /403 Forbidden/);
                assert.match(err.message, /pulumi config set --secret kiloclaw:internalApiKey/);
                assert.match(err.message, /INTERNAL_API_SECRET from \.dev\.vars/);
                assert.ok(!err.message.includes("not-the-internal-key") && !err.message.includes(INTERNAL_KEY), "a key leaked into the message");
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
                await configureStage(stage);
                await completeAndDestroy(stage, await rollout(stage));
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("408 on first pull for longer than one wait: the warm-up loops on 408 and completes", () =>
        fault("408 on first pull > one wait (warm-up)", (run) =>
            withStage({ fly: { firstPullDelayMs: Math.round(2.5 * ONE_WAIT_MS) } }, async (stage) => {
                const result = await rollout(stage);
                const done = completed(result);
                assert.ok(done.warm!.waitTimeouts >= 1, "the pull outlasted one wait, so Fly answered 408 at least once");
                const waits = stage.fly.requests.filter((r) => WARM_WAIT.test(r.path) && r.query.state === "started").map((r) => r.status);
                assert.equal(waits[waits.length - 1], 200);
                assert.ok(waits.includes(408));
                // The instance found the image pulled: one provision, no 408 inside the worker.
                assert.equal(stage.worker.requests.filter((r) => r.path === "/api/platform/provision").length, 1);
                await completeAndDestroy(stage, result);
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("408 on first pull without a warm-up: the worker's wait times out, the provider waits instead of re-provisioning", () =>
        fault("408 on first pull > one wait (no warm-up)", (run) =>
            withStage({ fly: { firstPullDelayMs: Math.round(2.5 * ONE_WAIT_MS) } }, async (stage) => {
                const result = await rollout(stage, { warm: false });
                completed(result);
                const provisions = stage.worker.requests.filter((r) => r.path === "/api/platform/provision");
                assert.equal(provisions.length, 1, "a 408 must not lead to a second provision");
                assert.equal(provisions[0].status, 500);
                const workerWaits = stage.fly.requests.filter((r) => flyPath(devFlyAppName(stage.userId), "/[^/]+/wait").test(r.path));
                assert.equal(workerWaits[0].status, 408, "the worker's own wait timed out during the pull");
                await completeAndDestroy(stage, result);
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("warm machine stuck in `replacing`: stops at the deadline, says what to check, destroys the machine", () =>
        fault("warm machine stuck in `replacing`", (run) =>
            withStage({ fly: { firstPullDelayMs: 3_600_000 } }, async (stage) => {
                const pending = rollout(stage, { warmOver: { timeoutSeconds: 3 } });
                const m = await machineAppears(stage.fly, REGISTRY_APP, (x) => x.state === "replacing");
                stage.fly.setMachineState(REGISTRY_APP, m.id, "replacing");
                const err = stoppedAt(await pending, "warm");
                assert.match(err.message, /did not reach "started" within 3s/);
                assert.match(err.message, /last state "replacing"/);
                assert.match(err.message, new RegExp(`fly machines list --app ${REGISTRY_APP}`));
                assert.match(err.message, /run `pulumi up` again, or raise kiloclaw:warmTimeoutSeconds/);
                assert.equal(stage.fly.machine(REGISTRY_APP, m.id)?.state, "destroyed");
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("instance machine stuck in `replacing`: stops at the deadline and destroys the half-provisioned instance", () =>
        fault("instance machine stuck in `replacing`", (run) =>
            withStage({ fly: { firstPullDelayMs: 3_600_000 } }, async (stage) => {
                const app = devFlyAppName(stage.userId);
                const pending = rollout(stage, { warm: false, instanceOver: { timeoutSeconds: 4 } });
                const m = await machineAppears(stage.fly, app, (x) => x.state === "replacing");
                stage.fly.setMachineState(app, m.id, "replacing");
                const err = stoppedAt(await pending, "instance");
                assert.match(err.message, /is "provisioned" after 4s, not "running"/);
                assert.match(err.message, new RegExp(`fly machines list --app ${app}`));
                assert.match(err.message, /"replacing" = Fly is still pulling/);
                assert.match(err.message, /kiloclaw:instanceTimeoutSeconds/);
                assert.match(err.message, /pulumi up/);
                assert.match(err.message, /The instance it left was destroyed through the worker\./);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("machine won't start (Fly reports `failed`): stops at once with `fly logs`, leaves nothing", () =>
        fault("instance machine `failed` (machine won't start)", (run) =>
            withStage({ fly: { firstPullDelayMs: 3_600_000 } }, async (stage) => {
                const app = devFlyAppName(stage.userId);
                const pending = rollout(stage, { warm: false, instanceOver: { timeoutSeconds: 60 } });
                const m = await machineAppears(stage.fly, app, () => true);
                stage.fly.setMachineState(app, m.id, "failed");
                const err = stoppedAt(await pending, "instance");
                assert.match(err.message, /failed to start/);
                assert.match(err.message, new RegExp(`fly logs --app ${app} --no-tail`));
                assert.match(err.message, /Machine won't start/);
                assert.match(err.message, /pulumi up/);
                assert.match(err.message, /destroyed through the worker/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("worker still on the old tag: names the restart, destroys the mismatched instance, a restart completes", () =>
        fault("worker still on the old tag (not restarted)", (run) =>
            withStage({}, async (stage) => {
                const err = stoppedAt(await rollout(stage, { restartWorker: false }), "instance");
                // Verified against Fly itself: the machine's config.image is not the pushed ref.
                assert.match(
                    err.message,
                    new RegExp(`on registry\\.fly\\.io/${REGISTRY_APP}:dev-000000000000, not registry\\.fly\\.io/${REGISTRY_APP}:${TAG}`),
                );
                assert.match(err.message, /Restart the worker \(`cd cloud\/kiloclaw && pnpm start`\)/);
                assert.match(err.message, /pulumi up/);
                assert.match(err.message, /The instance it left was destroyed through the worker/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
                await completeAndDestroy(stage, await rollout(stage, { restartWorker: true }));
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    describe("origin and tunnel settings the policy pack can see", () => {
        const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c02";
        const devVars = (extra: string[]) =>
            [
                "INTERNAL_API_SECRET=faults-policy-internal",
                "FLY_API_TOKEN=faults-policy-fly",
                "GATEWAY_TOKEN_SECRET=faults-policy-gw",
                "WORKER_ENV=development",
                "FLY_REGISTRY_APP=kiloclaw-dev",
                ...extra,
                "",
            ].join("\n");

        async function packOver(extra: string[]) {
            const checkout = fakeCheckout({ devVars: devVars(extra) });
            try {
                const program = await runProgram({ config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER } });
                assert.equal(program.error, undefined, program.error);
                return await runPack(policyResources(program));
            } finally {
                fs.rmSync(checkout.root, { recursive: true, force: true });
            }
        }

        it("a tunnel URL without https or the trailing slash is flagged with the exact fix", () =>
            fault("KILOCODE_API_BASE_URL not a tunnel URL (policy)", async (run) => {
                const good = `OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000,https://${devFlyAppName(USER)}.fly.dev`;
                const violations = await packOver(["KILOCODE_API_BASE_URL=http://abc123.ngrok-free.dev/api/openrouter", good]);
                assert.deepEqual(
                    violations.map((v) => v.policy),
                    ["tunnel-base-url"],
                );
                assert.match(violations[0].message, /is not of the form https:\/\/<host>\/api\/openrouter\//);
                assert.match(
                    violations[0].message,
                    /Fix: set KILOCODE_API_BASE_URL=https:\/\/abc123\.ngrok-free\.dev\/api\/openrouter\/ in \.dev\.vars, restart the worker/,
                );
                run.outcome = violations[0].level === "mandatory" ? "stopped-with-message" : "warned-with-message";
                await run.checkLeaks({});
            }));

        it("allowed origins without the instance's Fly app are flagged with the exact fix", () =>
            fault("OPENCLAW_ALLOWED_ORIGINS misses the Fly app (policy)", async (run) => {
                const violations = await packOver([
                    "KILOCODE_API_BASE_URL=https://abc123.ngrok-free.dev/api/openrouter/",
                    "OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000",
                ]);
                assert.deepEqual(
                    violations.map((v) => v.policy),
                    ["allowed-origins-include-app"],
                );
                const origin = `https://${devFlyAppName(USER)}.fly.dev`;
                assert.match(violations[0].message, new RegExp(`does not include ${origin.replace(/\./g, "\\.")}`));
                assert.ok(
                    violations[0].message.includes(
                        `Fix: set OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000,${origin} in .dev.vars and restart the worker.`,
                    ),
                );
                run.outcome = violations[0].level === "mandatory" ? "stopped-with-message" : "warned-with-message";
                await run.checkLeaks({});
            }));
    });
});

describe("faults: the Fly Machines API", function () {
    this.timeout(120_000);

    it("429 twice on machine create: retried, completes", () =>
        fault("Fly 429 on machine create (x2)", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "POST", path: WARM_CREATE, status: 429, body: { error: "rate limited" }, times: 2 });
                const result = await rollout(stage);
                assert.deepEqual(
                    stage.fly.requests.filter((r) => r.method === "POST" && WARM_CREATE.test(r.path)).map((r) => r.status),
                    [429, 429, 200],
                );
                await completeAndDestroy(stage, result);
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("502 on the wait: retried, completes", () =>
        fault("Fly 502 on wait", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "GET", path: WARM_WAIT, status: 502, body: { error: "bad gateway" } });
                const result = await rollout(stage);
                await completeAndDestroy(stage, result);
                assert.ok(stage.fly.requests.some((r) => WARM_WAIT.test(r.path) && r.status === 502));
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("503 on destroy: retried, the warm machine is still destroyed", () =>
        fault("Fly 503 on destroy (x2)", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "DELETE", path: WARM_MACHINE, status: 503, body: { error: "unavailable" }, times: 2 });
                const result = await rollout(stage);
                await completeAndDestroy(stage, result);
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("dropped connections on create, wait and destroy: retried, completes", () =>
        fault("Fly drops connections (create, wait, destroy)", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "POST", path: WARM_CREATE, drop: true });
                stage.fly.inject({ method: "GET", path: WARM_WAIT, drop: true });
                stage.fly.inject({ method: "DELETE", path: WARM_MACHINE, drop: true });
                const result = await rollout(stage);
                assert.equal(stage.fly.requests.filter((r) => r.faulted).length, 3);
                await completeAndDestroy(stage, result);
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("503 on every create: stops with `pulumi up` later, nothing created", () =>
        fault("Fly 503 on every create", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "POST", path: WARM_CREATE, status: 503, body: { error: "unavailable" }, times: Infinity });
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /Creating a machine in kiloclaw-faults failed \(503\)/);
                assert.match(err.message, /Fly kept answering 503 after retries: wait a minute and run `pulumi up` again/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("429 on every try of the wait: stops with `pulumi up` later, the machine is destroyed", () =>
        fault("Fly 429 on every try of the wait", (run) =>
            withStage({}, async (stage) => {
                // Four tries is what the client makes; the destroy's own wait then goes through.
                stage.fly.inject({ method: "GET", path: WARM_WAIT, status: 429, body: { error: "rate limited" }, times: 4 });
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /failed \(429\)/);
                assert.match(err.message, /wait a minute and run `pulumi up` again/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("every connection of the wait dropped: says Fly cannot be reached, the machine is destroyed", () =>
        fault("Fly unreachable during the wait (drops)", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "GET", path: WARM_WAIT, drop: true, times: 4 });
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /Cannot reach the Fly Machines API at http:\/\/127\.0\.0\.1:\d+/);
                assert.match(err.message, /kiloclaw:flyApiUrl/);
                assert.match(err.message, /pulumi up/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("502 on every destroy: names the leftover and the fix; the next `pulumi up` removes it", () =>
        fault("Fly 502 on every destroy (+ next `pulumi up`)", (run) =>
            withStage({}, async (stage) => {
                stage.fly.inject({ method: "DELETE", path: WARM_MACHINE, status: 502, body: { error: "bad gateway" }, times: Infinity });
                const err = stoppedAt(await rollout(stage), "warm");
                const leftover = /The machine (\w+) is marked/.exec(err.message)?.[1];
                assert.ok(leftover, err.message);
                assert.match(err.message, new RegExp(`${WARM_OWNER_KEY}=kiloclaw-rollout\\.${stage.userId}`));
                assert.match(err.message, /the next `pulumi up` removes it/);
                assert.match(err.message, new RegExp(`fly machine destroy ${leftover} --app ${REGISTRY_APP} --force`));
                run.outcome = "stopped-with-message";
                // Fly refused every destroy, so the machine is there until the step the message names.
                assert.equal(stage.fly.machine(REGISTRY_APP, leftover)?.state, "started");
                stage.fly.clearFaults();
                const again = await rollout(stage);
                assert.equal(again.warm?.leftoversRemoved, 1);
                assert.equal(stage.fly.machine(REGISTRY_APP, leftover)?.state, "destroyed");
                await completeAndDestroy(stage, again);
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("a refused token (401): names kiloclaw:flyApiToken and scoped tokens (`fly tokens deploy`)", () =>
        fault("Fly 401 (token refused)", (run) =>
            withStage({}, async (stage) => {
                await configureStage(stage, { "kiloclaw:flyApiToken": "fm2_not-the-token" });
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /\(401\)/);
                assert.match(err.message, /pulumi config set --secret kiloclaw:flyApiToken/);
                assert.match(err.message, /fly tokens deploy/);
                assert.ok(!err.message.includes("fm2_not-the-token") && !err.message.includes(FLY_TOKEN));
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));

    it("the registry app does not exist (404): names kiloclaw:registryApp", () =>
        fault("Fly 404 (no such app)", (run) =>
            withStage({ fly: { autoCreateApps: false } }, async (stage) => {
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /failed \(404\)/);
                assert.match(err.message, /Check that the Fly app exists and kiloclaw:registryApp names it/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            }),
        ));
});

for (const profile of WORKER_PROFILES) {
    describe(`faults: the worker (${profile})`, function () {
        this.timeout(120_000);

        it("500 on provision: says to read the worker's log, nothing created", () =>
            fault(`worker 500 on provision (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.worker.inject({ method: "POST", path: "/api/platform/provision", status: 500, body: { error: "Internal Server Error" } });
                    const err = stoppedAt(await rollout(stage), "instance");
                    assert.match(err.message, /Provisioning the instance of .* failed \(500 Internal Server Error\)/);
                    assert.match(err.message, /its log \(the `pnpm start` terminal\)/);
                    assert.match(err.message, /pulumi up/);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("500 mid-provision (its Fly machine create fails once): the status says `provisioned`, a start completes it", () =>
            fault(`worker 500 mid-provision (Fly create fails once) (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.fly.inject({
                        method: "POST",
                        path: flyPath(devFlyAppName(stage.userId)),
                        status: 500,
                        body: { error: "internal: host unavailable" },
                    });
                    const result = await rollout(stage);
                    const lifecycle = stage.worker.requests
                        .filter((r) => r.method === "POST" && /\/(provision|start)$/.test(r.path))
                        .map((r) => `${r.path.split("/").pop()} ${r.status}`);
                    if (profile === "early") {
                        // The early worker creates the machine in /start: the refused create fails that start with no
                        // machine, and one more start (as the other generations recover on their own) completes it.
                        assert.deepEqual(lifecycle, ["provision 201", "start 500", "start 200"]);
                        await destroyRollout(completed(result));
                        run.outcome = "completed";
                    } else {
                        // current: provision (which starts) fails, the status says `provisioned`, one /start completes it.
                        // newest: provision answers at once, its background start fails before a machine exists, so the
                        // next /start meets the cooldown; that failure was this run's own, so it starts once with skipCooldown.
                        const expected = profile === "current" ? ["provision 500", "start 200"] : ["provision 201", "start 500", "start 200"];
                        assert.deepEqual(lifecycle, expected);
                        await destroyRollout(completed(result));
                        run.outcome = "completed";
                    }
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("Fly refuses every machine create (422): the worker's reason, and no cooldown wait once it was skipped", () =>
            fault(`Fly refuses every create (422) (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.fly.inject({
                        method: "POST",
                        path: flyPath(devFlyAppName(stage.userId)),
                        status: 422,
                        body: { error: "insufficient_capacity" },
                        times: 10,
                    });
                    const err = stoppedAt(await rollout(stage), "instance");
                    const starts = stage.worker.requests.filter((r) => r.method === "POST" && r.path.endsWith("/start"));
                    if (profile === "newest") {
                        // Its own failed start put the instance in the cooldown; the start that skipped it failed on Fly too.
                        assert.ok(starts.some((r) => (r.body as { skipCooldown?: boolean })?.skipCooldown === true));
                        assert.doesNotMatch(err.message, /more minute\(s\)|waits 30 minutes/);
                        assert.match(err.message, /skipping the cooldown/);
                    }
                    if (profile === "early") assert.equal(starts.length, 2, "one start, then one more");
                    assert.match(err.message, /pulumi up/);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("the worker cannot reach Fly: says so, nothing created", () =>
            fault(`worker cannot reach Fly (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    const deadFly = `http://127.0.0.1:${await freePort()}`;
                    const cut = await WorkerEmulator.start({ devVarsPath: stage.devVarsPath, flyApiUrl: deadFly, msPerSecond: MS_PER_SECOND });
                    stage.extraWorkers.push(cut);
                    stage.workerUrl = cut.url;
                    await configureStage(stage);
                    const err = stoppedAt(await rollout(stage, { restartWorker: false }), "instance");
                    // Decided from state (nothing was recorded), not from the wording the newest worker no longer sends.
                    assert.match(err.message, /Provisioning the instance of fault-user-\w+ failed \(500 /);
                    assert.match(err.message, /its log \(the `pnpm start` terminal\) shows why/);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("an incomplete .dev.vars (503 Configuration error): says what to add", () =>
            fault(`worker 503 Configuration error (${profile})`, (run) =>
                withStage({ worker: { profile }, devVars: { GATEWAY_TOKEN_SECRET: "" } }, async (stage) => {
                    const err = stoppedAt(await rollout(stage), "worker-image");
                    assert.match(err.message, /503 Configuration error/);
                    assert.match(err.message, /Complete \.dev\.vars \(see \.dev\.vars\.example\) and restart `pnpm start`/);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("dropped connections on status reads: retried, completes", () =>
            fault(`worker drops connections (status) (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.worker.inject({ method: "GET", path: "/api/platform/status", drop: true, times: 2 });
                    const result = await rollout(stage);
                    await completeAndDestroy(stage, result);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("provision answered 409 because an instance exists: destroys through the worker, provisions again", () =>
            fault(`provision 409 (instance exists) (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    // The Cloud UI made an instance earlier; its record answers 409 once more.
                    const earlier = await fetch(`${stage.workerUrl}/api/platform/provision`, {
                        method: "POST",
                        headers: { "content-type": "application/json", "x-internal-api-key": INTERNAL_KEY },
                        body: JSON.stringify({ userId: stage.userId, kilocodeApiKey: "test-key" }),
                    });
                    assert.equal(earlier.status, 201);
                    stage.worker.inject(PROVISION_409);
                    const result = await rollout(stage);
                    assert.deepEqual(
                        stage.worker.requests.filter((r) => r.path === "/api/platform/provision").map((r) => r.status),
                        [201, 409, 201],
                    );
                    await completeAndDestroy(stage, result);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("provision answered 409 twice: names the Cloud UI, leaves nothing", () =>
            fault(`provision 409 twice (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.worker.inject({ ...PROVISION_409, times: 2 });
                    const err = stoppedAt(await rollout(stage), "instance");
                    assert.match(err.message, /answered 409 "User already has an active instance" even after destroying through the worker/);
                    assert.match(err.message, /Destroy the instance from the Cloud UI \(localhost:3000\/claw\), then run `pulumi up` again/);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("destroy while the instance is already `destroying`: waits for it to go", () =>
            fault(`destroy while already \`destroying\` (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    const done = completed(await rollout(stage));
                    // Fly refuses the first machine delete: the worker answers 200 and stays `destroying` (its alarm retries).
                    stage.fly.inject({ method: "DELETE", path: /\/machines\//, status: 500, body: { error: "internal" } });
                    const outOfBand = await fetch(`${stage.workerUrl}/api/platform/destroy`, {
                        method: "POST",
                        headers: { "content-type": "application/json", "x-internal-api-key": INTERNAL_KEY },
                        body: JSON.stringify({ userId: stage.userId }),
                    });
                    assert.equal(outOfBand.status, 200);
                    assert.equal(stage.worker.instance(stage.userId)?.status, "destroying");
                    await instance.delete(done.instance.id, done.instance.outs);
                    assert.deepEqual(
                        stage.worker.requests.filter((r) => r.path === "/api/platform/destroy").map((r) => r.status),
                        [200, 200],
                    );
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("a new rollout while the previous instance is still `destroying`: waits, then provisions", () =>
            fault(`rollout while the old instance is \`destroying\` (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    completed(await rollout(stage));
                    stage.fly.inject({ method: "DELETE", path: /\/machines\//, status: 500, body: { error: "internal" } });
                    await fetch(`${stage.workerUrl}/api/platform/destroy`, {
                        method: "POST",
                        headers: { "content-type": "application/json", "x-internal-api-key": INTERNAL_KEY },
                        body: JSON.stringify({ userId: stage.userId }),
                    });
                    assert.equal(stage.worker.instance(stage.userId)?.status, "destroying");
                    const again = await rollout(stage);
                    // No provision hit "Cannot provision: instance is being destroyed".
                    assert.ok(stage.worker.requests.filter((r) => r.path === "/api/platform/provision").every((r) => r.status === 201));
                    await completeAndDestroy(stage, again);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("the instance is wiped behind the program's back: refresh drops it, destroy is a no-op", () =>
            fault(`instance destroyed out of band (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    const done = completed(await rollout(stage));
                    await stage.worker.destroyOutOfBand(stage.userId);
                    const read = await instance.read(done.instance.id, done.instance.outs);
                    assert.equal(read.id, "");
                    await instance.delete(done.instance.id, done.instance.outs);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));
    });
}

describe("faults: the program's process is killed", function () {
    this.timeout(180_000);

    it("SIGKILL between creating the warm machine and destroying it: the next run removes the leftover", () =>
        fault("SIGKILL between warm create and destroy", (run) =>
            withStage({ fly: { firstPullDelayMs: 4 * ONE_WAIT_MS } }, async (stage) => {
                const inputs = warmInputs(stage, { timeoutSeconds: 120 });
                const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "warm-child.ts")], {
                    cwd: REPO_ROOT,
                    stdio: ["pipe", "pipe", "pipe"],
                });
                let output = "";
                child.stdout.on("data", (d: Buffer) => (output += d.toString()));
                child.stderr.on("data", (d: Buffer) => (output += d.toString()));
                const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
                child.stdin.end(warmChildStdin(stage, inputs));
                const mine = (m: { config: { metadata?: Record<string, string> } }) => m.config.metadata?.[WARM_OWNER_KEY] === inputs.owner;
                let leftover;
                try {
                    leftover = await machineAppears(stage.fly, REGISTRY_APP, mine, 120_000);
                } finally {
                    child.kill("SIGKILL");
                }
                assert.equal(await exited, "SIGKILL", output);
                assert.ok(!/created /.test(output), "the child finished before the kill");
                assert.ok(!["destroying", "destroyed"].includes(stage.fly.machine(REGISTRY_APP, leftover.id)!.state), "the kill left a live machine");

                // The next `pulumi up`: same owner, finds and removes the leftover, then warms for real.
                const second = await warm.create(inputs);
                assert.equal(second.outs.leftoversRemoved, 1);
                assert.notEqual(second.id, leftover.id);
                assert.equal(stage.fly.machine(REGISTRY_APP, leftover.id)?.state, "destroyed");
                run.outcome = "completed";
                await run.checkLeaks(stageScope(stage, { pids: [child.pid!] }));
            }),
        ));
});
