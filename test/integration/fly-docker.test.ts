// The Fly emulator in docker mode: machines are real containers of the offline
// fixture image, in each of the real image's shapes (the Feb-26 start script as CMD, the
// newest controller as CMD). Needs a running engine (bootstrap/start-docker.sh) and the
// base image kiloclaw-fixture-base:2; fails with a clear message otherwise.
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { assertDockerRunning, docker, DockerMachines, EMULATOR_LABEL, INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";
import { buildFixture, FIXTURE_SHAPES, FixtureShape, FixtureVariant, freePort } from "../../sandbox/docker";

const SHAPES = Object.keys(FIXTURE_SHAPES) as FixtureShape[];
const image = (shape: FixtureShape, variant: FixtureVariant) => `kiloclaw-fly-emu-${variant}:${shape}`;
const GOOD_IMAGE = image("feb26", "good");
const ENV = { KILOCODE_API_KEY: "warm", OPENCLAW_GATEWAY_TOKEN: "fixture-gateway-token" };
// A service makes the emulator wait for the port to answer before "started".
const SERVICES = [{ protocol: "tcp", internal_port: 18789 }];

/** A fixture shape as one of its variants (FIXTURE_FAULT build arg), with a hint when the base image is missing. */
async function build(shape: FixtureShape, variant: FixtureVariant): Promise<void> {
    try {
        await buildFixture(image(shape, variant), variant, { shape });
    } catch (err) {
        throw new Error(`${(err as Error).message} (is kiloclaw-fixture-base:2 imported? bootstrap/start-docker.sh)`);
    }
}

async function containersFor(id: string): Promise<string[]> {
    const r = await docker(["ps", "-a", "--filter", `name=^fly-emu-${id}$`, "--format", "{{.Names}} {{.State}}"]);
    return r.stdout.split("\n").filter(Boolean);
}

const REGISTRY_SH = path.resolve(__dirname, "..", "..", "sandbox", "registry.sh");

/** Runs sandbox/registry.sh with the given env; secrets travel in env, never argv. */
function registryScript(action: string, env: NodeJS.ProcessEnv): Promise<void> {
    return new Promise((resolve, reject) => {
        const child = spawn("bash", [REGISTRY_SH, action], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`registry.sh ${action} failed: ${stderr.trim()}`))));
    });
}

/** Logins left in ~/.docker, or anything left in the emulator's scratch dir. */
function leftoverLogins(server: string, scratchDir: string): string[] {
    const found: string[] = [];
    const home = path.join(os.homedir(), ".docker", "config.json");
    if (fs.existsSync(home) && fs.readFileSync(home, "utf8").includes(server)) found.push(home);
    return found.concat(fs.readdirSync(scratchDir));
}

function httpGet(port: number): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        http.get({ host: "127.0.0.1", port, path: "/" }, (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        }).on("error", reject);
    });
}

describe("FlyEmulator in docker mode", function () {
    this.timeout(300_000);
    let fly: FlyEmulator;

    before(async () => {
        await assertDockerRunning();
        for (const shape of SHAPES) for (const variant of ["good", "exits"] as const) await build(shape, variant);
    });

    after(async () => {
        await docker(["rmi", "-f", ...SHAPES.flatMap((shape) => [image(shape, "good"), image(shape, "exits")])]);
    });

    afterEach(async () => {
        await fly?.close();
    });

    async function call(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
        const res = await fetch(`${fly.url}/v1${p}`, {
            method,
            headers: { "content-type": "application/json" },
            body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined };
    }

    async function waitFor(app: string, id: string, state: string): Promise<void> {
        for (let i = 0; i < 20; i++) {
            const r = await call("GET", `/apps/${app}/machines/${id}/wait?state=${state}&timeout=10`);
            if (r.status === 200) return;
            assert.equal(r.status, 408, JSON.stringify(r.body));
        }
        throw new Error(`machine ${id} never reached ${state}; now ${fly.machine(app, id)?.state}`);
    }

    for (const shape of SHAPES) {
        it(`${shape} shape: runs a machine as a container: started once HTTP answers, stop, start, force delete`, async () => {
            fly = await FlyEmulator.start({ docker: { pull: "missing" } });
            const created = await call("POST", "/apps/warm/machines", { config: { image: image(shape, "good"), env: ENV, services: SERVICES } });
            assert.equal(created.status, 200, JSON.stringify(created.body));
            const id = created.body.id as string;
            await waitFor("warm", id, "started");

            const port = fly.hostPort("warm", id);
            assert.ok(port, "a started machine has a host port");
            const page = await httpGet(port);
            assert.equal(page.status, 200);
            assert.match(page.body, /OpenClaw Control/);
            const [container] = await containersFor(id);
            assert.equal(container, `fly-emu-${id} running`);
            const labels = await docker(["inspect", "--format", `{{index .Config.Labels "${EMULATOR_LABEL}"}}`, `fly-emu-${id}`]);
            assert.equal(labels.stdout.trim(), "1");

            assert.equal((await call("POST", `/apps/warm/machines/${id}/stop`, { timeout: "1s" })).status, 200);
            await waitFor("warm", id, "stopped");
            assert.equal((await containersFor(id))[0], `fly-emu-${id} exited`);

            assert.equal((await call("POST", `/apps/warm/machines/${id}/start`)).status, 200);
            await waitFor("warm", id, "started");
            assert.equal((await httpGet(fly.hostPort("warm", id)!)).status, 200);

            assert.equal((await call("DELETE", `/apps/warm/machines/${id}`)).status, 412);
            assert.equal((await call("DELETE", `/apps/warm/machines/${id}?force=true`)).status, 200);
            assert.ok(await until(() => fly.machine("warm", id)?.state === "destroyed", 60_000, 100));
            assert.deepEqual(await containersFor(id), []);
            assert.equal((await call("GET", `/apps/warm/machines/${id}`)).status, 404);
        });

        it(`${shape} shape: marks a machine whose container exits as failed, and a wait for started times out`, async () => {
            fly = await FlyEmulator.start({ docker: { pull: "missing" }, msPerSecond: 100 });
            const created = await call("POST", "/apps/warm/machines", { config: { image: image(shape, "exits"), env: ENV, services: SERVICES } });
            const id = created.body.id as string;
            assert.ok(await until(() => fly.machine("warm", id)?.state === "failed", 120_000, 100), `state ${fly.machine("warm", id)?.state}`);
            const w = await call("GET", `/apps/warm/machines/${id}/wait?state=started&timeout=1`);
            assert.equal(w.status, 408);
            assert.match(w.body.error, /currently failed$/);
            const exit = fly.machine("warm", id)!.events.find((e) => e.type === "exit");
            assert.deepEqual(exit?.request, { exit_event: { exit_code: 1 } });
        });

        it(`${shape} shape: destroys an auto_destroy machine (restart no) whose container exits, removes the container, and answers 404`, async () => {
            fly = await FlyEmulator.start({ docker: { pull: "missing" }, msPerSecond: 100 });
            const config = { image: image(shape, "exits"), env: ENV, services: SERVICES, auto_destroy: true, restart: { policy: "no" } };
            const id = (await call("POST", "/apps/warm/machines", { config })).body.id as string;
            assert.ok(await until(() => fly.machine("warm", id)?.state === "destroyed", 120_000, 100), `state ${fly.machine("warm", id)?.state}`);
            // `destroyed` only once the container is gone: a client may remove the image the moment it reads it.
            assert.deepEqual(await containersFor(id), []);
            assert.equal((await call("GET", `/apps/warm/machines/${id}`)).status, 404);
            const w = await call("GET", `/apps/warm/machines/${id}/wait?state=started&timeout=60`);
            assert.equal(w.status, 408, "a wait for started on a destroyed machine answers at once");
        });
    }

    it("marks a machine failed when its image cannot be pulled", async () => {
        fly = await FlyEmulator.start({ docker: {} });
        const created = await call("POST", "/apps/warm/machines", { config: { image: "127.0.0.1:1/nothing-here:1", env: ENV, services: SERVICES } });
        const id = created.body.id as string;
        assert.ok(await until(() => fly.machine("warm", id)?.state === "failed", 120_000, 100));
        assert.ok(fly.machine("warm", id)!.events.some((e) => JSON.stringify(e.request ?? "").includes("docker pull")));
        assert.deepEqual(fly.pulledImages, []);
    });

    it("labels its containers with its instance; a sweep for that instance removes them, another instance's sweep does not", async () => {
        const instance = `t${randomBytes(5).toString("hex")}`;
        fly = await FlyEmulator.start({ docker: { pull: "missing", instance } });
        const id = (await call("POST", "/apps/warm/machines", { config: { image: GOOD_IMAGE, env: ENV } })).body.id as string;
        await waitFor("warm", id, "started");
        const label = await docker(["inspect", "--format", `{{index .Config.Labels "${INSTANCE_LABEL}"}}`, `fly-emu-${id}`]);
        assert.equal(label.stdout.trim(), instance);
        // As after a crash of the emulator: a sweep of another instance touches nothing, its own removes its containers.
        assert.equal(await DockerMachines.removeStrayContainers(`other${instance}`), 0);
        assert.equal((await containersFor(id)).length, 1);
        assert.equal(await DockerMachines.removeStrayContainers(instance), 1);
        assert.deepEqual(await containersFor(id), []);
    });

    it("a machine destroyed while its container is being created leaves no container", async () => {
        // As a destroy that reaches the emulator during the machine's create: remove() begins before `docker run` returns.
        const host = new DockerMachines({ instance: `t${randomBytes(5).toString("hex")}` });
        const id = randomBytes(7).toString("hex");
        try {
            const running = host.run(id, "warm", GOOD_IMAGE, ENV, 18789);
            assert.equal(await host.remove(id), true);
            await running;
            assert.deepEqual(await containersFor(id), []);
        } finally {
            await host.removeAll();
        }
    });

    it("removes every container it created on close", async () => {
        fly = await FlyEmulator.start({ docker: { pull: "missing" } });
        const created = await call("POST", "/apps/warm/machines", { config: { image: GOOD_IMAGE, env: ENV, services: SERVICES } });
        const id = created.body.id as string;
        await waitFor("warm", id, "started");
        await fly.close();
        assert.deepEqual(await containersFor(id), []);
    });

    describe("with a password-protected registry", () => {
        const token = randomBytes(16).toString("hex");
        let stateDir = "";
        let scratchDir = "";
        let server = "";
        let image = "";
        let env: NodeJS.ProcessEnv = {};

        before(async () => {
            stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "fly-emu-registry-"));
            scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), "fly-emu-scratch-"));
            const port = await freePort();
            server = `127.0.0.1:${port}`;
            image = `${server}/kiloclaw-machines:emu-${randomBytes(3).toString("hex")}`;
            env = { REGISTRY_PORT: String(port), REGISTRY_STATE_DIR: stateDir, REGISTRY_TOKEN: token };
            await registryScript("start", env);
            // Push the fixture with a throwaway login, then drop the local tag so the emulator really pulls.
            const config = fs.mkdtempSync(path.join(os.tmpdir(), "fly-emu-test-push-"));
            try {
                const dockerEnv = { ...process.env, DOCKER_CONFIG: config };
                const login = await docker(["login", server, "--username", "x", "--password-stdin"], { env: dockerEnv, stdin: token });
                assert.equal(login.code, 0, login.stderr);
                assert.equal((await docker(["tag", GOOD_IMAGE, image])).code, 0);
                const push = await docker(["push", image], { env: dockerEnv, timeoutMs: 120_000 });
                assert.equal(push.code, 0, push.stderr);
                assert.equal((await docker(["rmi", image])).code, 0);
            } finally {
                fs.rmSync(config, { recursive: true, force: true });
            }
        });

        after(async () => {
            if (stateDir) await registryScript("stop", env).catch(() => undefined);
            for (const dir of [stateDir, scratchDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
            if (image) await docker(["rmi", image]);
        });

        it("pulls with the registry credentials, shows replacing while pulling, and leaves no login behind", async () => {
            fly = await FlyEmulator.start({ docker: { registryAuth: { server, username: "x", password: token }, scratchDir } });
            const created = await call("POST", "/apps/warm/machines", { config: { image, env: ENV, services: SERVICES } });
            const id = created.body.id as string;
            await waitFor("warm", id, "started");
            const m = fly.machine("warm", id)!;
            assert.ok(
                m.events.some((e) => e.status === "replacing"),
                "the first pull shows as replacing",
            );
            assert.match(m.image_ref.digest, /^sha256:[0-9a-f]{64}$/);
            assert.equal(m.image_ref.registry, server);
            assert.deepEqual(fly.pulledImages, [image]);
            assert.deepEqual(leftoverLogins(server, scratchDir), []);
            // What this "host" pulled is its own: gone with it.
            await fly.close();
            assert.notEqual((await docker(["image", "inspect", image])).code, 0, `${image} is still in the engine`);
        });

        it("fails the machine when the registry refuses the credentials", async () => {
            await docker(["rmi", image]);
            fly = await FlyEmulator.start({ docker: { registryAuth: { server, username: "x", password: "wrong" }, scratchDir } });
            const created = await call("POST", "/apps/warm/machines", { config: { image, env: ENV, services: SERVICES } });
            const id = created.body.id as string;
            assert.ok(await until(() => fly.machine("warm", id)?.state === "failed", 120_000, 100));
            const failure = JSON.stringify(fly.machine("warm", id)!.events);
            assert.match(failure, /docker login .* failed/);
            assert.ok(!failure.includes(token));
            assert.deepEqual(leftoverLogins(server, scratchDir), []);
        });
    });
});
