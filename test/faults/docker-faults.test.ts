// Faults on the Docker-backed path, where a rollout can leave real things behind:
// smoke-test containers, a registry login, temporary docker configs, and Fly
// machines that are real containers (the Fly emulator's Docker mode, pulling
// from a real local registry with Fly-style auth).
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { WARM_OWNER_KEY } from "../../dynamic-providers/warmMachineProvider";
import { devFlyAppName } from "../../lib/identity";
import {
    assertDockerRunning,
    buildFixture,
    dockerBuild,
    FIXTURES_DIR,
    freePort,
    LocalRegistry,
    removeImages,
    REPO_ROOT,
    RunResult,
    runScript,
    startRegistry,
} from "../../sandbox/docker";
import { fault, LeakScope } from "./leaks";
import {
    closeStage,
    completed,
    destroyRollout,
    machineAppears,
    REGISTRY_APP,
    rollout,
    Stage,
    stageScope,
    StageOptions,
    startStage,
    stoppedAt,
    TAG,
    warmInputs,
    warmChildStdin,
} from "./rollout";

const PIN = "2026.2.9";
/** Docker-mode emulator seconds: slower than the in-memory ones, real containers start in between. */
const DOCKER_MS_PER_SECOND = 50;

describe("faults: the Docker-backed path", function () {
    this.timeout(600_000);
    const runId = randomBytes(4).toString("hex");
    const local = (name: string) => `kiloclaw-faults-${runId}:${name}`;
    const images = { good: local("good"), exits: local("exits"), noGateway: local("no-gateway"), wrongVersion: local("wrong-version") };
    let registry: LocalRegistry;
    let scratch: string;
    const EXITS_TAG = "dev-e0175e0175e0";
    const pushed = (tag: string) => `${registry.server}/${REGISTRY_APP}:${tag}`;

    before(async function () {
        assertDockerRunning();
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-faults-docker-"));
        registry = await startRegistry();
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), images.good);
        await buildFixture(images.exits, "exits");
        await buildFixture(images.noGateway, "no-gateway");
        await buildFixture(images.wrongVersion, "wrong-version");
        // What RegistryPush does before a warm-up: the good image under the rollout's tag, a broken one beside it.
        for (const [source, tag] of [
            [images.good, TAG],
            [images.exits, EXITS_TAG],
        ]) {
            const r = await push(source, pushed(tag), registry.token);
            assert.equal(r.code, 0, r.stdout + r.stderr);
        }
        await removeImages([pushed(TAG), pushed(EXITS_TAG)]); // machines must pull them from the registry
    });

    after(async function () {
        await registry?.stop();
        await removeImages([...Object.values(images), ...(registry ? [pushed(TAG), pushed(EXITS_TAG)] : [])]);
        if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    });

    function smoke(image: string, env: Record<string, string> = {}): Promise<RunResult> {
        return runScript("smoke-test.sh", [], {
            env: {
                IMAGE: image,
                EXPECTED_OPENCLAW_VERSION: PIN,
                STARTUP_DEADLINE_SECONDS: "60",
                GATEWAY_DEADLINE_SECONDS: "60",
                TMPDIR: scratch,
                ...env,
            },
        });
    }

    function push(source: string, target: string, token: string, server = registry.server): Promise<RunResult> {
        return runScript("push-image.sh", [], {
            env: { SOURCE_IMAGE: source, TARGET_IMAGE: target, REGISTRY_SERVER: server, REGISTRY_USERNAME: "x", TMPDIR: scratch },
            input: token,
        });
    }

    const scriptScope = (image: string): LeakScope => ({ docker: true, images: [image], registries: [registry.server], scratchDirs: [scratch] });

    function dockerStage(): StageOptions {
        return {
            fly: {
                msPerSecond: DOCKER_MS_PER_SECOND,
                docker: { registryAuth: { server: registry.server, username: "x", password: registry.token } },
            },
            worker: { registryServer: registry.server, msPerSecond: DOCKER_MS_PER_SECOND },
        };
    }

    async function withDockerStage(body: (stage: Stage) => Promise<void>): Promise<void> {
        const stage = await startStage(dockerStage());
        try {
            await body(stage);
        } finally {
            await closeStage(stage);
        }
    }

    const dockerScope = (stage: Stage, extra: LeakScope = {}): LeakScope =>
        stageScope(stage, { docker: true, registries: [registry.server], scratchDirs: [stage.dir, scratch], ...extra });

    it("container won't start: the smoke test names the runbook's debug step, no container left", () =>
        fault("image exits at startup (smoke test)", async (run) => {
            const result = await smoke(images.exits);
            assert.equal(result.code, 1);
            assert.match(result.stderr, /startup: the container exited with code 1/);
            assert.match(result.stderr, /config generation failed/);
            assert.match(result.stderr, /Next step \(runbook Troubleshooting, "Container won't start"\): run the image's own command/);
            run.outcome = "stopped-with-message";
            await run.checkLeaks(scriptScope(images.exits));
        }));

    it("gateway not responding: the smoke test names the runbook's checks, no container left", () =>
        fault("gateway not responding (smoke test)", async (run) => {
            const result = await smoke(images.noGateway, { GATEWAY_DEADLINE_SECONDS: "4" });
            assert.equal(result.code, 1);
            assert.match(result.stderr, /gateway: no HTTP 2xx/);
            assert.match(result.stderr, /"Gateway not responding"/);
            // The fixture has wget, not curl: the next step names only what the image has.
            assert.match(result.stderr, /docker exec kiloclaw-test wget -qO- http:\/\/localhost:18789\//);
            run.outcome = "stopped-with-message";
            await run.checkLeaks(scriptScope(images.noGateway));
        }));

    it("openclaw version differs from the pin: the smoke test says to align the pin, no container left", () =>
        fault("openclaw version != pin (smoke test)", async (run) => {
            const result = await smoke(images.wrongVersion);
            assert.equal(result.code, 1);
            assert.match(result.stderr, /printed '2026\.2\.8' but the expected version is '2026\.2\.9'/);
            assert.match(result.stderr, /align the Dockerfile pin/);
            run.outcome = "stopped-with-message";
            await run.checkLeaks(scriptScope(images.wrongVersion));
        }));

    it("the registry refuses the Fly token: the push names `fly auth token`, no login left", () =>
        fault("registry refuses the token (push)", async (run) => {
            const result = await push(images.good, pushed("dev-refused00000"), "not-the-registry-token");
            assert.equal(result.code, 1);
            assert.match(result.stderr, /the Fly token was refused by/);
            assert.match(result.stderr, /fly auth token/);
            assert.match(result.stderr, /pulumi config set --secret kiloclaw:flyApiToken/);
            run.outcome = "stopped-with-message";
            await removeImages([pushed("dev-refused00000")]);
            await run.checkLeaks(scriptScope(images.good));
        }));

    it("the registry is unreachable: the push says so, no login left", () =>
        fault("registry unreachable (push)", async (run) => {
            const dead = `127.0.0.1:${await freePort()}`;
            const result = await push(images.good, `${dead}/${REGISTRY_APP}:dev-unreach00000`, registry.token, dead);
            assert.equal(result.code, 1);
            assert.match(result.stderr, new RegExp(`registry ${dead.replace(/\./g, "\\.")} is unreachable`));
            assert.match(result.stderr, /Check the server name and your network/);
            run.outcome = "stopped-with-message";
            await removeImages([`${dead}/${REGISTRY_APP}:dev-unreach00000`]);
            await run.checkLeaks({ ...scriptScope(images.good), registries: [registry.server, dead] });
        }));

    it("machine won't start (its container exits): stops with `fly logs`, removes instance and container", () =>
        fault("instance container exits (machine won't start)", (run) =>
            withDockerStage(async (stage) => {
                const result = await rollout(stage, {
                    warm: false,
                    versionOver: { imageTag: EXITS_TAG },
                    instanceOver: { imageTag: EXITS_TAG, imageRef: pushed(EXITS_TAG), timeoutSeconds: 120, pollMs: 100 },
                });
                const err = stoppedAt(result, "instance");
                assert.match(err.message, /failed to start/);
                assert.match(err.message, new RegExp(`fly logs --app ${devFlyAppName(stage.userId)} --no-tail`));
                assert.match(err.message, /destroyed through the worker/);
                run.outcome = "stopped-with-message";
                await run.checkLeaks(dockerScope(stage));
            }),
        ));

    it("SIGKILL while the warm machine runs as a container: the next run removes machine and container, then rolls out", () =>
        fault("SIGKILL mid warm-up (Docker mode)", (run) =>
            withDockerStage(async (stage) => {
                const inputs = warmInputs(stage, { image: pushed(TAG), timeoutSeconds: 120 });
                // Hold the child's wait so the kill lands while the machine's container runs.
                stage.fly.inject({ method: "GET", path: new RegExp(`^/v1/apps/${REGISTRY_APP}/machines/[^/]+/wait$`), delayMs: 30_000 });
                const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "warm-child.ts")], {
                    cwd: REPO_ROOT,
                    stdio: ["pipe", "ignore", "ignore"],
                });
                const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
                child.stdin.end(warmChildStdin(stage, inputs));
                let leftover;
                try {
                    leftover = await machineAppears(
                        stage.fly,
                        REGISTRY_APP,
                        (m) => m.config.metadata?.[WARM_OWNER_KEY] === inputs.owner && m.state === "started",
                        120_000,
                    );
                } finally {
                    child.kill("SIGKILL");
                }
                assert.equal(await exited, "SIGKILL");
                assert.equal(stage.fly.machine(REGISTRY_APP, leftover.id)?.state, "started", "the kill left a running machine");

                // The next `pulumi up`: removes the leftover (and its container), warms, provisions.
                const result = await rollout(stage, {
                    warmOver: { image: pushed(TAG), timeoutSeconds: 120 },
                    instanceOver: { imageRef: pushed(TAG), timeoutSeconds: 120, pollMs: 100 },
                });
                const done = completed(result);
                assert.equal(done.warm?.leftoversRemoved, 1);
                assert.equal(stage.fly.machine(REGISTRY_APP, leftover.id)?.state, "destroyed");
                const port = stage.fly.hostPort(devFlyAppName(stage.userId), done.instance.outs.flyMachineId!);
                assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200, "the instance's gateway answers");
                await destroyRollout(done);
                run.outcome = "completed";
                await run.checkLeaks(dockerScope(stage, { pids: [child.pid!] }));
            }),
        ));
});
