// Two clones on one Docker engine: two sandboxes on their own ports, two rehearsal stacks (same project, same
// stack name, as two clones have) rolling out and destroying at the same time. Both converge; each destroy leaves
// the engine as it found it apart from the other's things, and touches nothing of the other's; the shared
// fixture base image stays. Prebuilt mode (no plugins under the test's PULUMI_HOME), through `npm run rehearse`.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { localScopeSlug } from "../../lib/localScope";
import { stackContextsRoot, stagedContextsRoot } from "../../lib/stagedContext";
import { assertDockerRunning, freePort, run, RunResult } from "../../sandbox/docker";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { PROJECT, STACK } from "../../sandbox/rehearse";
import { existingRehearsalStack, findPulumi } from "../../sandbox/workspace";

const BASE_IMAGE = "kiloclaw-fixture-base:2";

async function lines(args: string[]): Promise<string[]> {
    const r = await run("docker", args);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean).sort();
}

/** One clone: its sandbox dir, ports, instance id and cache. */
interface Clone {
    name: string;
    instance: string;
    env: Record<string, string>;
    registryServer: string;
}

async function makeClone(work: string, name: string): Promise<Clone> {
    const instance = `t${randomBytes(5).toString("hex")}`;
    const dir = path.join(work, name);
    const env = {
        SANDBOX_DIR: path.join(dir, "sandbox"),
        SANDBOX_REGISTRY_PORT: String(await freePort()),
        SANDBOX_FLY_PORT: String(await freePort()),
        SANDBOX_WORKER_PORT: String(await freePort()),
        PULUMI_HOME: path.join(dir, "pulumi-home"),
        XDG_CACHE_HOME: path.join(dir, "cache"),
    };
    fs.mkdirSync(env.SANDBOX_DIR, { recursive: true });
    fs.writeFileSync(path.join(env.SANDBOX_DIR, "instance-id"), `${instance}\n`);
    return { name, instance, env, registryServer: `127.0.0.1:${env.SANDBOX_REGISTRY_PORT}` };
}

/** What carries the clone's identity on the engine: images (with ids) and containers. */
async function thingsOf(c: Clone): Promise<{ images: string[]; containers: string[] }> {
    const ours = (line: string) => line.startsWith(`kiloclaw-kiloclaw-rollout-sandbox-${c.instance}:`) || line.includes(`${c.registryServer}/`);
    const images = (await lines(["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])).filter(ours);
    const containers = (await lines(["ps", "-a", "--format", `{{.Image}} {{.ID}} {{.Label "${INSTANCE_LABEL}"}}`])).filter(
        (line) => ours(line) || line.endsWith(` ${c.instance}`),
    );
    return { images, containers };
}

describe("two clones' sandboxes and stacks on one Docker engine", function () {
    this.timeout(1_800_000);
    let work: string;
    let a: Clone;
    let b: Clone;
    let baseBefore = false;
    const up = new Set<Clone>();

    const rehearse = (c: Clone, ...args: string[]): Promise<RunResult> => run("npm", ["run", "-s", "rehearse", "--", ...args], { env: c.env });
    const must = (r: RunResult, c: Clone, what: string) =>
        assert.equal(r.code, 0, `${c.name}: ${what} failed (exit ${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
    const status = async (c: Clone) => {
        const stack = await existingRehearsalStack({
            dir: path.join(c.env.SANDBOX_DIR, "pulumi"),
            stackName: STACK,
            pulumi: await findPulumi(),
            pulumiHome: c.env.PULUMI_HOME,
        });
        return stack ? (await stack.outputs()).status?.value : undefined;
    };

    before(async () => {
        assertDockerRunning();
        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-two-sandboxes-"));
        [a, b] = [await makeClone(work, "a"), await makeClone(work, "b")];
        baseBefore = (await run("docker", ["image", "inspect", BASE_IMAGE])).code === 0;
        for (const c of [a, b]) assert.deepEqual(await thingsOf(c), { images: [], containers: [] });
    });

    after(async () => {
        for (const c of up) await rehearse(c, "--destroy");
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. both roll out at the same time and reach a running instance", async () => {
        up.add(a).add(b);
        const [ra, rb] = await Promise.all([rehearse(a), rehearse(b)]);
        must(ra, a, "npm run rehearse");
        must(rb, b, "npm run rehearse");
        assert.equal(await status(a), "running");
        assert.equal(await status(b), "running");
        for (const c of [a, b]) assert.ok((await thingsOf(c)).images.length > 0, `${c.name} made no image of its own`);
    });

    it("2. one destroys while the other converges again: the destroy removes all of its own and nothing of the other's", async () => {
        const bBefore = await thingsOf(b);
        // Another build of the same checkout on the engine since b's (as a teammate's or a test's would be): a fresh,
        // newest chain of identical layers, which the classic builder's cache would hand to a second build of b's.
        const decoy = `kiloclaw-two-sandboxes-decoy-${b.instance}:latest`;
        const built = await run("docker", [
            "build",
            "--no-cache",
            "--platform",
            "linux/amd64",
            "-t",
            decoy,
            path.join(b.env.SANDBOX_DIR, "cloud", "kiloclaw"),
        ]);
        assert.equal(built.code, 0, built.stderr);
        const [ra, rb] = await Promise.all([rehearse(a, "--destroy"), rehearse(b)]).finally(() => run("docker", ["rmi", decoy]));
        must(ra, a, "npm run rehearse -- --destroy");
        up.delete(a);
        must(rb, b, "the second npm run rehearse");
        assert.match(rb.stdout, /Resources:\s+\d+ unchanged/);
        assert.deepEqual(await thingsOf(a), { images: [], containers: [] });
        // The other clone's images (same ids) and machine containers are all still there, and its instance runs.
        assert.deepEqual(await thingsOf(b), bBefore);
        assert.equal(await status(b), "running");
    });

    it("3. one rolls out while the other destroys; then the last destroy leaves the engine as it was", async () => {
        up.add(a);
        const [ra, rb] = await Promise.all([rehearse(a), rehearse(b, "--destroy")]);
        must(ra, a, "npm run rehearse");
        must(rb, b, "npm run rehearse -- --destroy");
        up.delete(b);
        assert.equal(await status(a), "running");
        assert.deepEqual(await thingsOf(b), { images: [], containers: [] });
        must(await rehearse(a, "--destroy"), a, "npm run rehearse -- --destroy");
        up.delete(a);
        for (const c of [a, b]) {
            assert.deepEqual(await thingsOf(c), { images: [], containers: [] });
            const contexts = stackContextsRoot(
                localScopeSlug({ project: PROJECT, stack: STACK, sandboxInstance: c.instance }),
                stagedContextsRoot(path.join(__dirname, "..", "..")),
            );
            assert.ok(!fs.existsSync(contexts), `${c.name}'s staged contexts are left in ${contexts}`);
        }
        if (baseBefore) assert.equal((await run("docker", ["image", "inspect", BASE_IMAGE])).code, 0, `a destroy removed the shared ${BASE_IMAGE}`);
    });
});
