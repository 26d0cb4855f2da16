// Faults in how a warm machine ends on Fly, with the request counts that show the client's
// wait loop stays bounded (Fly allows about one wait call per second per machine). Rows land
// in the closing table printed by leaks.ts.
import * as assert from "node:assert/strict";
import { flyAuthorizationHeader } from "../../lib/flyAuth";
import { fault } from "./leaks";
import { closeStage, FLY_TOKEN, IMAGE, machineAppears, REGISTRY_APP, rollout, stageScope, startStage, stoppedAt } from "./rollout";

/** Wait calls for `started` on one machine, as the Fly emulator logged them. */
function startedWaits(stage: Awaited<ReturnType<typeof startStage>>, machineId: string): number {
    return stage.fly.requests.filter((r) => r.path.endsWith(`/machines/${machineId}/wait`) && r.query.state === "started").length;
}

describe("faults: how a warm machine ends on Fly", function () {
    this.timeout(120_000);

    it("warm machine destroyed mid-wait (its process exited, auto_destroy): stops at once with the reason, wait calls bounded", () =>
        fault("warm machine destroyed mid-wait (auto-destroy)", async (run) => {
            // Held in `replacing` so the first wait is in flight when the process exits.
            const stage = await startStage({ fly: { firstPullDelayMs: 3_600_000 } });
            try {
                const pending = rollout(stage, { warmOver: { timeoutSeconds: 60 } });
                const m = await machineAppears(stage.fly, REGISTRY_APP, (x) => x.state === "replacing");
                stage.fly.exitProcess(REGISTRY_APP, m.id);
                const err = stoppedAt(await pending, "warm");
                assert.match(err.message, /destroyed while waiting for "started": the image's process exited \(exit code 1\)/);
                assert.match(err.message, new RegExp(`fly logs --app ${REGISTRY_APP} --no-tail`));
                assert.match(err.message, /docker run --rm/);
                const waits = startedWaits(stage, m.id);
                const all = stage.fly.requests.filter((r) => r.path.includes(`/machines/${m.id}`)).length;
                console.log(`      machine ${m.id}: ${waits} wait call(s) for started, ${all} request(s) in all (unpaced client: 12,797 in 10 s)`);
                assert.ok(waits <= 2, `${waits} wait calls after the machine was destroyed`);
                assert.ok(all <= 6, `${all} requests for one destroyed machine`);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            } finally {
                await closeStage(stage);
            }
        }));

    it("warm machine destroyed mid-wait by someone else (Fly's events show no exit): the image is not blamed", () =>
        fault("warm machine destroyed mid-wait by someone else", async (run) => {
            const stage = await startStage({ fly: { firstPullDelayMs: 3_600_000 } });
            try {
                const pending = rollout(stage, { warmOver: { timeoutSeconds: 60 } });
                const m = await machineAppears(stage.fly, REGISTRY_APP, (x) => x.state === "replacing");
                // A teammate's `fly machine destroy --force`: a user destroy, no process exit.
                const res = await fetch(`${stage.fly.url}/v1/apps/${REGISTRY_APP}/machines/${m.id}?force=true`, {
                    method: "DELETE",
                    headers: { authorization: flyAuthorizationHeader(FLY_TOKEN) },
                });
                assert.equal(res.status, 200);
                const err = stoppedAt(await pending, "warm");
                assert.match(err.message, /destroyed while waiting for "started", but not by its image/);
                assert.match(err.message, /a destroy by "user"/);
                assert.doesNotMatch(err.message, /process exited|Fix the image/);
                assert.match(err.message, new RegExp(`fly machines list --app ${REGISTRY_APP}`));
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            } finally {
                await closeStage(stage);
            }
        }));

    it("warm machine whose image exits during `starting`: same message, nothing left", () =>
        fault("warm image exits during start (auto-destroy)", async (run) => {
            const stage = await startStage({ fly: { crashingImages: [IMAGE] } });
            try {
                const err = stoppedAt(await rollout(stage), "warm");
                assert.match(err.message, /the image's process exited/);
                const created = stage.fly.machines(REGISTRY_APP);
                assert.equal(created.length, 1);
                const waits = startedWaits(stage, created[0].id);
                console.log(`      machine ${created[0].id}: ${waits} wait call(s) for started`);
                assert.ok(waits <= 2, `${waits} wait calls`);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(stageScope(stage));
            } finally {
                await closeStage(stage);
            }
        }));
});
