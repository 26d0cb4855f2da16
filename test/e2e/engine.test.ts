// The real Pulumi engine against a sandbox: providers run in the engine's own
// processes, state is stored (file backend, passphrase secrets), the policy pack
// runs. Prebuilt-image mode, so no docker/command provider plugin is needed.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { devFlyAppName } from "../../lib/identity";
import { EMULATOR_LABEL } from "../../sandbox/emulators/docker-machines";
import { assertDockerRunning, containersWithLabel, dockerBuild, FIXTURES_DIR, LocalRegistry, removeImages, run, runScript, startRegistry } from "../../sandbox/docker";
import { SandboxServices, startSandboxServices } from "../../sandbox/services";

const REPO = path.join(__dirname, "..", "..");
const USER = "e2e-developer";
const APP = "kiloclaw-e2e";
const INTERNAL_KEY = "e2e-internal-key-0d4c1f";
const STACK = "e2e";

interface Result {
    code: number;
    out: string;
}

describe("the Pulumi engine against the sandbox", function () {
    this.timeout(900_000);
    let registry: LocalRegistry;
    let services: SandboxServices;
    let work: string;
    let checkout: string;
    let project: string;
    let env: NodeJS.ProcessEnv;
    const tags = ["dev-e2e00000000a", "dev-e2e00000000b"];
    const refs: string[] = [];

    // Async on purpose: the emulators live in this process and must keep answering while pulumi runs.
    async function pulumi(args: string[], opts: { allowFail?: boolean; input?: string } = {}): Promise<Result> {
        const dashes = args.includes("--") ? args.indexOf("--") : args.length;
        const argv = [...args.slice(0, dashes), "--non-interactive", "--stack", STACK, ...args.slice(dashes)];
        const r = await run("pulumi", argv, { env: env as Record<string, string>, cwd: project, input: opts.input });
        const out = `${r.stdout}${r.stderr}`;
        if (r.code !== 0 && !opts.allowFail) throw new Error(`pulumi ${args.join(" ")} failed (${r.code}):\n${out}`);
        return { code: r.code ?? -1, out };
    }
    // Secrets go on stdin: never on a command line (nor into an error message).
    const config = (key: string, value: string, secret = false) =>
        secret ? pulumi(["config", "set", "--secret", `kiloclaw:${key}`], { input: value }) : pulumi(["config", "set", `kiloclaw:${key}`, "--", value]);
    const outputs = async () => JSON.parse((await pulumi(["stack", "output", "--json"])).out.replace(/^[^{]*/, ""));
    const exportState = async () => (await pulumi(["stack", "export"])).out;

    before(async () => {
        const which = spawnSync("pulumi", ["version"], { encoding: "utf8" }); // before any emulator starts
        if (which.error || which.status !== 0) {
            throw new Error("No pulumi CLI on PATH: install one, or `export PATH=\"$(bash bootstrap/install-pulumi.sh | tail -1):$PATH\"`.");
        }
        assertDockerRunning();
        registry = await startRegistry();
        // Two tags of the fixture image in the registry: a rollout, then an image change.
        const local = "kiloclaw-e2e:build";
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), local);
        for (const tag of tags) {
            const ref = `${registry.server}/${APP}:${tag}`;
            refs.push(ref);
            const push = await runScript("push-image.sh", [], {
                env: { SOURCE_IMAGE: local, TARGET_IMAGE: ref, REGISTRY_SERVER: registry.server },
                input: registry.token,
            });
            assert.equal(push.code, 0, push.stderr);
        }
        await removeImages([local, ...refs]);

        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-e2e-"));
        checkout = path.join(work, "cloud", "kiloclaw");
        fs.mkdirSync(checkout, { recursive: true });
        fs.cpSync(path.join(FIXTURES_DIR, "kiloclaw"), checkout, { recursive: true });
        fs.writeFileSync(
            path.join(checkout, ".dev.vars"),
            [
                `INTERNAL_API_SECRET=${INTERNAL_KEY}`,
                "GATEWAY_TOKEN_SECRET=e2e-gateway-secret",
                `FLY_API_TOKEN=${registry.token}`,
                "WORKER_ENV=development",
                `FLY_REGISTRY_APP=${APP}`,
                "",
            ].join("\n"),
        );
        services = await startSandboxServices({ registryServer: registry.server, token: registry.token, devVarsPath: path.join(checkout, ".dev.vars") });

        env = {
            ...process.env,
            PULUMI_HOME: path.join(work, "home"),
            PULUMI_BACKEND_URL: `file://${path.join(work, "state")}`,
            PULUMI_CONFIG_PASSPHRASE: "e2e-passphrase",
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        };
        fs.mkdirSync(path.join(work, "state"));
        // A project in the temp dir whose program is this repository: stack files stay out of the repo.
        project = path.join(work, "project");
        fs.mkdirSync(project);
        fs.writeFileSync(
            path.join(project, "Pulumi.yaml"),
            `name: kiloclaw-rollout\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.relative(project, REPO)}\n`,
        );
        await pulumi(["stack", "init", "--secrets-provider", "passphrase"]);
        await config("kiloclawDir", checkout);
        await config("userId", USER);
        await config("imageRef", refs[0]);
        await config("workerUrl", services.worker.url);
        await config("flyApiUrl", services.fly.url);
        await config("registryServer", registry.server);
        await config("registryApp", APP);
        await config("warmTimeoutSeconds", "120");
        await config("instanceTimeoutSeconds", "120");
        await config("internalApiKey", INTERNAL_KEY, true);
        await config("flyApiToken", registry.token, true);
    });

    after(async () => {
        if (project && fs.existsSync(path.join(project, `Pulumi.${STACK}.yaml`))) await pulumi(["destroy", "--yes", "--skip-preview"], { allowFail: true });
        await services?.close();
        await registry?.stop();
        // The warm and instance machines pulled these onto the engine.
        await removeImages(refs);
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. up from nothing reaches a running instance, with the gateway token secret and no secret in the state", async () => {
        await pulumi(["up", "--yes", "--skip-preview"]);
        const out = await outputs();
        assert.equal(out.status, "running");
        assert.equal(out.flyAppName, devFlyAppName(USER));
        assert.equal(out.flyMachineId, services.worker.instance(USER)?.flyMachineId);
        assert.equal(out.trackedImageTag, tags[0]);
        assert.equal(out.gatewayToken, "[secret]");
        const state = await exportState();
        const gatewayToken = JSON.parse((await pulumi(["stack", "output", "gatewayToken", "--show-secrets", "--json"])).out);
        assert.match(gatewayToken, /^[0-9a-f]{64}$/);
        for (const secret of [INTERNAL_KEY, registry.token, gatewayToken]) {
            assert.ok(!state.includes(secret), "a secret value is in plain text in the exported state");
        }
        assert.ok(services.fly.pulledImages.includes(refs[0]), "the warm machine did not pull the image");
    });

    it("2. a second preview reports no changes", async () => {
        await pulumi(["preview", "--expect-no-changes"]);
    });

    it("3. a new imageRef replaces the warm machine, worker image version and instance; up converges", async () => {
        await config("imageRef", refs[1]);
        const preview = (await pulumi(["preview", "--diff"])).out;
        for (const type of ["WarmMachine", "WorkerImageVersion", "WorkerInstance"]) {
            assert.match(preview, new RegExp(`\\+-pulumi-nodejs:dynamic/kiloclaw:${type}: \\(replace\\)`), `${type} is not replaced:\n${preview}`);
        }
        assert.match(preview, /\+-3 to replace/);
        await pulumi(["up", "--yes", "--skip-preview"]);
        const out = await outputs();
        assert.equal(out.trackedImageTag, tags[1]);
        assert.equal(out.status, "running");
        assert.match(fs.readFileSync(path.join(checkout, ".dev.vars"), "utf8"), new RegExp(`^FLY_IMAGE_TAG=${tags[1]}$`, "m"));
    });

    it("4. refresh notices an instance destroyed behind Pulumi's back, and up provisions it again", async () => {
        await services.worker.destroyOutOfBand(USER);
        await pulumi(["refresh", "--yes", "--skip-preview"]);
        assert.ok(!(await exportState()).includes("kiloclaw:WorkerInstance::instance-instance"), "refresh kept the destroyed instance");
        const provisionsBefore = services.worker.requests.filter((r) => r.path === "/api/platform/provision").length;
        await pulumi(["up", "--yes", "--skip-preview"]);
        assert.equal((await outputs()).status, "running");
        assert.equal(services.worker.requests.filter((r) => r.path === "/api/platform/provision").length, provisionsBefore + 1);
    });

    it("5. the policy pack passes a good configuration and stops a violating one with its messages", async () => {
        const good = await pulumi(["preview", "--policy-pack", path.join(REPO, "policy")]);
        assert.match(good.out, /kiloclaw-rollout/);
        await config("registryApp", "some-other-app");
        const bad = await pulumi(["preview", "--policy-pack", path.join(REPO, "policy")], { allowFail: true });
        await config("registryApp", APP);
        assert.notEqual(bad.code, 0, bad.out);
        assert.match(bad.out, /mandatory/);
        assert.match(bad.out, /registry-app-matches-worker/);
        assert.match(bad.out, /some-other-app/);
    });

    it("6. destroy leaves no instance and no machine, and only the worker deleted machines", async () => {
        const flyBefore = services.fly.requests.length;
        await pulumi(["destroy", "--yes", "--skip-preview"]);
        assert.equal(services.worker.instance(USER), undefined);
        const live = services.fly.machines().filter((m) => !["destroying", "destroyed"].includes(m.state));
        assert.deepEqual(live.map((m) => m.id), []);
        const deletes = services.fly.requests.slice(flyBefore).filter((r) => r.method === "DELETE");
        assert.ok(deletes.length > 0, "destroy made no Fly delete at all");
        // Every delete is the worker's: of the user's dev app machine/volume, after a /destroy call; no app delete.
        assert.ok(deletes.every((r) => r.path.startsWith(`/v1/apps/${devFlyAppName(USER)}/`)), deletes.map((r) => r.path).join(", "));
        assert.deepEqual(services.fly.deletedApps, []);
        assert.ok(services.worker.requests.some((r) => r.path === "/api/platform/destroy" && r.status === 200));
        let left: string[] = ["?"];
        for (let i = 0; i < 100 && left.length; i++) {
            left = await containersWithLabel(`${EMULATOR_LABEL}=1`);
            if (left.length) await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(left, []);
    });
});
