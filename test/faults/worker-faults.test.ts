// Faults in the worker's platform API, on each generation of the worker (early, current,
// newest), with the request counts that show nothing was sent twice. Rows land in the closing
// table printed by leaks.ts.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { WORKER_PROFILES } from "../../sandbox/emulators/worker-profiles";
import { fault } from "./leaks";
import { completed, destroyRollout, rollout, Stage, stageScope, stoppedAt, withStage } from "./rollout";

const posts = (stage: Stage, route: string) => stage.worker.requests.filter((r) => r.method === "POST" && r.path === `/api/platform/${route}`).length;

for (const profile of WORKER_PROFILES) {
    describe(`faults: the ${profile} worker`, function () {
        this.timeout(120_000);

        it("a provision answered after the client's timeout: one POST, the status carries on", () =>
            fault(`slow provision past the client timeout (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    stage.worker.inject({ method: "POST", path: "/api/platform/provision", delayMs: 2500 });
                    const done = completed(await rollout(stage, { warm: false, instanceOver: { requestTimeoutSeconds: 1 } }));
                    const provisions = posts(stage, "provision");
                    console.log(
                        `      ${profile}: ${provisions} provision POST(s), ${posts(stage, "start")} start POST(s) under a 1 s client timeout`,
                    );
                    assert.equal(provisions, 1, "the provision whose answer was lost was sent again");
                    assert.equal(done.instance.outs.status, "running");
                    await destroyRollout(done);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("a gateway that never becomes healthy: stops with the runbook's steps where the worker reports it", () =>
            fault(`gateway never healthy (${profile})`, (run) =>
                withStage({ worker: { profile, gateway: "crashed" } }, async (stage) => {
                    const result = await rollout(stage, { warm: false, instanceOver: { timeoutSeconds: 3 } });
                    if (profile === "early") {
                        // No gateway/status route: the gateway state is reported as "unsupported".
                        const done = completed(result);
                        assert.equal(done.instance.outs.gatewayState, "unsupported");
                        await destroyRollout(done);
                        run.outcome = "completed";
                    } else {
                        const err = stoppedAt(result, "instance");
                        assert.match(err.message, /its gateway is not \(state "crashed"\)/);
                        assert.match(err.message, /Can't access gateway/);
                        assert.match(err.message, /The instance it left was destroyed through the worker/);
                        run.outcome = "stopped-with-message";
                    }
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("publish fails: .dev.vars is left as it was, nothing provisioned", () =>
            fault(`publish fails, nothing written (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    const before = fs.readFileSync(stage.devVarsPath, "utf8");
                    stage.worker.inject({
                        method: "POST",
                        path: "/api/platform/publish-image-version",
                        status: 500,
                        body: { error: "publish failed" },
                    });
                    const err = stoppedAt(await rollout(stage, { warm: false }), "worker-image");
                    assert.match(err.message, /failed \(500 publish failed\)/);
                    assert.equal(fs.readFileSync(stage.devVarsPath, "utf8"), before);
                    assert.equal(posts(stage, "provision"), 0);
                    run.outcome = "stopped-with-message";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));

        it("destroy while the worker restores a snapshot: waits for it, then destroys", () =>
            fault(`destroy during \`restoring\` (${profile})`, (run) =>
                withStage({ worker: { profile } }, async (stage) => {
                    const done = completed(await rollout(stage, { warm: false }));
                    stage.worker.setStatus(stage.userId, "restoring", 20);
                    await destroyRollout(done);
                    assert.equal(stage.worker.instance(stage.userId), undefined);
                    run.outcome = "completed";
                    await run.checkLeaks(stageScope(stage));
                }),
            ));
    });
}
