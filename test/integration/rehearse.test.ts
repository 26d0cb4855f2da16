// `npm run rehearse` as a newcomer runs it: one command to a running sandbox instance,
// one to tear it all down, leaving the tree, the containers and the images as they were.
// Real Docker, the real registry and the built Pulumi CLI; its own sandbox dir and free ports.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { assertDockerRunning, freePort, REPO_ROOT, run, RunResult } from "../../sandbox/docker";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { STACK, USER_ID } from "../../sandbox/rehearse";
import { existingRehearsalStack, findPulumi } from "../../sandbox/workspace";

async function lines(command: string, args: string[]): Promise<string[]> {
    const r = await run(command, args);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean).sort();
}

// Other suites and other clones' rehearsals may run beside this one on the same engine: compare only what carries
// this rehearsal's identity — its sandbox's instance id (written before it starts) names the images it builds,
// its registry's host:port the images it pushes and pulls, and the instance label marks its machine containers.
// The shared fixture base image is nobody's: it must still be there if it was.
const INSTANCE = `t${randomBytes(5).toString("hex")}`;
const BASE_IMAGE = "kiloclaw-fixture-base:2";
let registryServer = "";
const ours = (line: string) => line.startsWith(`kiloclaw-kiloclaw-rollout-sandbox-${INSTANCE}:`) || line.includes(`${registryServer}/`);
const rehearsalImages = async () => (await lines("docker", ["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])).filter(ours);
const rehearsalContainers = async () =>
    (await lines("docker", ["ps", "-a", "--format", `{{.Image}} {{.Names}} {{.Status}} {{.Label "${INSTANCE_LABEL}"}}`])).filter(
        (line) => ours(line) || line.endsWith(` ${INSTANCE}`),
    );
const baseImagePresent = async () => (await run("docker", ["image", "inspect", BASE_IMAGE])).code === 0;
const gitStatus = () => lines("git", ["-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=all"]);

describe("npm run rehearse, end to end", function () {
    this.timeout(1_800_000);
    let work: string;
    let env: Record<string, string>;
    const initial: Record<string, string[]> = {};
    let destroyed = false;

    const rehearse = (...args: string[]): Promise<RunResult> => run("npm", ["run", "-s", "rehearse", "--", ...args], { env });
    const must = (r: RunResult, what: string) => assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);

    before(async () => {
        assertDockerRunning();
        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-rehearse-"));
        env = {
            SANDBOX_DIR: path.join(work, "sandbox"),
            SANDBOX_REGISTRY_PORT: String(await freePort()),
            SANDBOX_FLY_PORT: String(await freePort()),
            SANDBOX_WORKER_PORT: String(await freePort()),
            // No plugins installed here: the rehearsal must pick prebuilt mode on its own.
            PULUMI_HOME: path.join(work, "pulumi-home"),
        };
        registryServer = `127.0.0.1:${env.SANDBOX_REGISTRY_PORT}`;
        fs.mkdirSync(env.SANDBOX_DIR, { recursive: true });
        fs.writeFileSync(path.join(env.SANDBOX_DIR, "instance-id"), `${INSTANCE}\n`);
        initial.base = (await baseImagePresent()) ? [BASE_IMAGE] : [];
        initial.git = await gitStatus();
        initial.images = await rehearsalImages();
        initial.containers = await rehearsalContainers();
    });

    after(async () => {
        if (!destroyed && env) await rehearse("--destroy");
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. reaches a running instance from nothing, saying which mode and why", async () => {
        const r = await rehearse();
        must(r, "npm run rehearse");
        assert.match(r.stdout, /prebuilt mode: the docker \d+\.\d+\.\d+ and command \d+\.\d+\.\d+ plugins are not installed/);
        assert.match(r.stdout, /Updating \(sandbox\)/, "Pulumi's own progress was not streamed");
        assert.match(r.stdout, /Try next:[\s\S]*--preview[\s\S]*--destroy/);

        // The same stack, read through the Automation API: typed outputs, not the printed text.
        const stack = await existingRehearsalStack({
            dir: path.join(env.SANDBOX_DIR, "pulumi"),
            stackName: STACK,
            pulumi: await findPulumi(),
            pulumiHome: env.PULUMI_HOME,
        });
        assert.ok(stack, "no stack under SANDBOX_DIR/pulumi");
        const outputs = await stack.outputs();
        assert.equal(outputs.status.value, "running");
        assert.equal(outputs.userId.value, USER_ID);
        assert.equal(outputs.trackedImageTag.value, outputs.tag.value);
        assert.equal(outputs.gatewayToken.secret, true);
        // Its settings live with it, outside the tracked tree.
        assert.ok(fs.existsSync(path.join(env.SANDBOX_DIR, "pulumi", "project", `Pulumi.${STACK}.yaml`)));
        assert.deepEqual(await gitStatus(), initial.git);
    });

    it("2. a second run converges without changes", async () => {
        const r = await rehearse();
        must(r, "the second npm run rehearse");
        assert.match(r.stdout, /Resources:\s+\d+ unchanged/);
        // stack export: no pending operation (preview --expect-no-changes does not count them).
        assert.match(r.stdout, /converged: the state has no pending operations/);
    });

    it("3. --destroy leaves git status, docker ps -a and docker images as they were", async () => {
        const r = await rehearse("--destroy");
        destroyed = true;
        must(r, "npm run rehearse -- --destroy");
        assert.match(r.stdout, /removing the images this rehearsal made/);
        assert.deepEqual(await gitStatus(), initial.git);
        assert.deepEqual(await rehearsalContainers(), initial.containers);
        assert.deepEqual(await rehearsalImages(), initial.images);
        if (initial.base.length) assert.ok(await baseImagePresent(), `--destroy removed the shared ${BASE_IMAGE}`);
        assert.ok(!fs.existsSync(path.join(env.SANDBOX_DIR, "state.json")), "the sandbox still runs");
    });
});
