// `npm run sandbox` trusts no pid alone: a sandbox whose daemon lives but whose services do not answer is
// stopped and started again, and the start sweeps the machine containers a crashed run of the same sandbox
// left (its instance label), never another sandbox's.
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { assertDockerRunning, freePort, run } from "../../sandbox/docker";
import { EMULATOR_LABEL, INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";

const BASE_IMAGE = "kiloclaw-fixture-base:2";

describe("npm run sandbox on a half-dead sandbox", function () {
    this.timeout(300_000);
    let work: string;
    let env: Record<string, string>;
    const instance = `t${randomBytes(5).toString("hex")}`;
    const containers: string[] = [];

    before(async () => {
        assertDockerRunning();
        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-sandbox-cli-"));
        env = {
            SANDBOX_DIR: path.join(work, "sandbox"),
            SANDBOX_REGISTRY_PORT: String(await freePort()),
            SANDBOX_FLY_PORT: String(await freePort()),
            SANDBOX_WORKER_PORT: String(await freePort()),
        };
        fs.mkdirSync(env.SANDBOX_DIR, { recursive: true });
        fs.writeFileSync(path.join(env.SANDBOX_DIR, "instance-id"), `${instance}\n`);
    });

    after(async () => {
        await run("npm", ["run", "-s", "sandbox:stop"], { env });
        if (containers.length) await run("docker", ["rm", "-f", ...containers]);
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    const orphan = async (owner: string) => {
        const name = `fly-emu-orphan-${randomBytes(4).toString("hex")}`;
        containers.push(name);
        const labels = ["--label", `${EMULATOR_LABEL}=1`, "--label", `${INSTANCE_LABEL}=${owner}`];
        const r = await run("docker", ["run", "-d", "--name", name, ...labels, BASE_IMAGE, "sleep", "600"]);
        assert.equal(r.code, 0, `${r.stderr} (is ${BASE_IMAGE} imported? bootstrap/start-docker.sh)`);
        return name;
    };
    const exists = async (name: string) => (await run("docker", ["inspect", name])).code === 0;

    it("restarts a sandbox whose pid lives but whose services are silent, sweeping only its own orphans", async () => {
        // As after a crash of the emulators: the recorded pid runs (a stand-in we own), nothing answers, a machine container is left.
        const standIn = spawn("sleep", ["600"], { stdio: "ignore" });
        const silent = `http://127.0.0.1:${await freePort()}`;
        fs.writeFileSync(
            path.join(env.SANDBOX_DIR, "state.json"),
            JSON.stringify({
                pid: standIn.pid,
                flyApiUrl: silent,
                workerUrl: silent,
                registryServer: `127.0.0.1:${env.SANDBOX_REGISTRY_PORT}`,
                instance,
            }),
        );
        const ours = await orphan(instance);
        const theirs = await orphan(`other${instance}`);
        const exited = new Promise((resolve) => standIn.on("exit", resolve));

        const r = await run("npm", ["run", "-s", "sandbox"], { env });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stderr, /does not answer: restarting the sandbox/);
        assert.doesNotMatch(r.stdout, /already running/);
        await exited;
        assert.ok(!(await exists(ours)), "the sandbox's own orphaned machine container is still there");
        assert.ok(await exists(theirs), "another sandbox's container was removed");

        const state = JSON.parse(fs.readFileSync(path.join(env.SANDBOX_DIR, "state.json"), "utf8"));
        assert.notEqual(state.pid, standIn.pid);
        assert.equal(state.instance, instance);
        for (const url of [state.flyApiUrl, state.workerUrl, `http://${state.registryServer}/v2/`]) await fetch(url);

        const again = await run("npm", ["run", "-s", "sandbox"], { env });
        assert.match(again.stdout, /already running/);
    });
});
