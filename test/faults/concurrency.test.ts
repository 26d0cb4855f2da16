// Two developers (two stacks, two owners) rolling out at the same moment against
// the same Fly and the same worker: each gets its own warm machine and its own
// instance, both reach `running`, and both destroys leave nothing behind.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { WARM_OWNER_KEY } from "../../dynamic-providers/warmMachineProvider";
import { devFlyAppName } from "../../lib/identity";
import { assertDockerRunning, dockerBuild, FIXTURES_DIR, LocalRegistry, removeImages, runScript, startRegistry } from "../../sandbox/docker";
import { findLeaks, LeakScope } from "./leaks";
import {
    closeStage,
    completed,
    destroyRollout,
    ONE_WAIT_MS,
    REGISTRY_APP,
    rollout,
    RolloutOptions,
    Stage,
    StageOptions,
    startStage,
    TAG,
    uniqueUser,
} from "./rollout";

/** Both users' rollouts at once on one stage; returns their completed results. */
async function rollOutTogether(stage: Stage, users: string[], opts: RolloutOptions = {}) {
    const views = users.map((userId): Stage => ({ ...stage, userId }));
    const results = await Promise.all(views.map((view) => rollout(view, opts)));
    return results.map((r, i) => ({ user: users[i], result: completed(r) }));
}

function assertDistinct(stage: Stage, rollouts: Awaited<ReturnType<typeof rollOutTogether>>): void {
    const [a, b] = rollouts.map((r) => r.result);
    for (const { user, result } of rollouts) {
        assert.equal(result.instance.outs.status, "running", user);
        assert.equal(result.instance.outs.trackedImageTag, TAG, user);
        assert.equal(result.instance.outs.flyAppName, devFlyAppName(user));
        // Each warm machine carried its own owner, and is gone.
        const machine = stage.fly.machine(REGISTRY_APP, result.warm!.machineId);
        assert.equal(machine?.config.metadata?.[WARM_OWNER_KEY], `kiloclaw-rollout.${user}`);
        assert.equal(machine?.state, "destroyed");
        assert.equal(result.warm!.leftoversRemoved, 0, "neither run took the other's warm machine for a leftover");
    }
    assert.notEqual(a.warm!.machineId, b.warm!.machineId);
    assert.notEqual(a.instance.outs.flyAppName, b.instance.outs.flyAppName);
    assert.notEqual(a.instance.outs.flyMachineId, b.instance.outs.flyMachineId);
    assert.notEqual(a.instance.outs.sandboxId, b.instance.outs.sandboxId);
}

async function destroyTogether(stage: Stage, rollouts: Awaited<ReturnType<typeof rollOutTogether>>, extra: LeakScope = {}): Promise<void> {
    await Promise.all(rollouts.map(({ result }) => destroyRollout(result)));
    const scope: LeakScope = {
        flies: [stage.fly],
        workers: [{ worker: stage.worker, userIds: rollouts.map((r) => r.user) }],
        scratchDirs: [stage.dir],
        ...extra,
    };
    let leaks = await findLeaks(scope);
    // Containers of machines that are `destroying` go a moment later.
    for (let i = 0; i < 50 && leaks.length > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        leaks = await findLeaks(scope);
    }
    assert.deepEqual(leaks, [], "two destroys left something behind");
}

describe("concurrency: two users roll out at once", function () {
    this.timeout(300_000);

    it("against the in-memory emulators (sharing one first pull)", async () => {
        const opts: StageOptions = { fly: { firstPullDelayMs: Math.round(1.5 * ONE_WAIT_MS) } };
        const stage = await startStage(opts);
        try {
            const users = [uniqueUser("alice"), uniqueUser("bob")];
            const rollouts = await rollOutTogether(stage, users);
            assertDistinct(stage, rollouts);
            await destroyTogether(stage, rollouts);
        } finally {
            await closeStage(stage);
        }
    });

    describe("with machines as real containers", () => {
        let registry: LocalRegistry;
        const image = `kiloclaw-concurrency-${randomBytes(4).toString("hex")}:good`;
        let scratch: string;
        const target = () => `${registry.server}/${REGISTRY_APP}:${TAG}`;

        before(async () => {
            assertDockerRunning();
            scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-concurrency-"));
            registry = await startRegistry();
            await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), image);
            const push = await runScript("push-image.sh", [], {
                env: { SOURCE_IMAGE: image, TARGET_IMAGE: target(), REGISTRY_SERVER: registry.server, REGISTRY_USERNAME: "x", TMPDIR: scratch },
                input: registry.token,
            });
            assert.equal(push.code, 0, push.stderr);
            await removeImages([target()]);
        });

        after(async () => {
            await registry?.stop();
            await removeImages([image, ...(registry ? [target()] : [])]);
            if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
        });

        it("each user's gateway answers on its own container", async () => {
            const stage = await startStage({
                fly: { msPerSecond: 50, docker: { registryAuth: { server: registry.server, username: "x", password: registry.token } } },
                worker: { registryServer: registry.server, msPerSecond: 50 },
            });
            try {
                const users = [uniqueUser("carol"), uniqueUser("dave")];
                const rollouts = await rollOutTogether(stage, users, {
                    warmOver: { image: target(), timeoutSeconds: 120 },
                    instanceOver: { imageRef: target(), timeoutSeconds: 120, pollMs: 100 },
                });
                assertDistinct(stage, rollouts);
                const ports = rollouts.map(({ user, result }) => stage.fly.hostPort(devFlyAppName(user), result.instance.outs.flyMachineId!));
                assert.notEqual(ports[0], ports[1]);
                for (const port of ports) assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
                await destroyTogether(stage, rollouts, { docker: true, registries: [registry.server], scratchDirs: [stage.dir, scratch] });
            } finally {
                await closeStage(stage);
            }
        });
    });
});
