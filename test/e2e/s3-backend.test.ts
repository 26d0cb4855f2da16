// A team's stack on an S3-compatible backend: the real engine, through the Automation API, with its
// state in a bucket of a real MinIO server on 127.0.0.1 (data in a temp dir, removed). Prebuilt-image
// mode (no docker/command plugin needed). up; a no-op preview; a state with no path of this machine;
// a second clone at another path (config and passphrase copied, as a teammate or CI gets them)
// previews no changes; a concurrent up is refused by the backend's lock while the first completes;
// destroy and `stack rm --remove-backups` leave nothing of the stack in the bucket.
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { CommandError, ConfigMap, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { assertDockerRunning, LocalRegistry, removeImages, startRegistry } from "../../sandbox/docker";
import { SandboxServices } from "../../sandbox/services";
import { findPulumi, openRehearsalStack } from "../../sandbox/workspace";
import { copyProject } from "../project-copy";
import { findMinio, MinioServer, startMinio } from "./minio";
import { pushFixtureTags, startE2eWorld } from "./world";

const REPO = path.join(__dirname, "..", "..");
const PROJECT = "kiloclaw-rollout";
const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c13";
const APP = "kiloclaw-e2e-s3";
const INTERNAL_KEY = "e2e-s3-internal-key-51b3";
const STACK = "s3-team";
const BUCKET = "kiloclaw-state";
const PUBLISH = "/api/platform/publish-image-version";

/**
 * A pass-through proxy in front of the worker that can hold one kind of request: while an `up`
 * waits on it, that `up` holds the stack's lock, whatever the machine's speed.
 */
class WorkerGate {
    private held: Array<() => void> = [];
    private holding?: { method: string; path: string; arrived: () => void };
    private readonly server: http.Server;
    url = "";

    private constructor(private readonly target: string) {
        this.server = http.createServer((req, res) => {
            const forward = () => {
                const upstream = http.request(new URL(req.url ?? "/", this.target), { method: req.method, headers: req.headers }, (answer) => {
                    res.writeHead(answer.statusCode ?? 502, answer.headers);
                    answer.pipe(res);
                });
                upstream.on("error", () => res.destroy());
                req.pipe(upstream);
            };
            const h = this.holding;
            if (h && req.method === h.method && (req.url ?? "").startsWith(h.path)) {
                this.held.push(forward);
                h.arrived();
            } else forward();
        });
    }

    static async start(target: string): Promise<WorkerGate> {
        const gate = new WorkerGate(target);
        await new Promise<void>((resolve) => gate.server.listen(0, "127.0.0.1", resolve));
        gate.url = `http://127.0.0.1:${(gate.server.address() as { port: number }).port}`;
        return gate;
    }

    /** Holds requests of `method path…` from now on; resolves when the first one arrives. */
    hold(method: string, route: string): Promise<void> {
        return new Promise((arrived) => (this.holding = { method, path: route, arrived }));
    }

    /** Lets every held request through and stops holding. */
    release(): void {
        this.holding = undefined;
        for (const forward of this.held.splice(0)) forward();
    }

    close(): Promise<void> {
        this.release();
        this.server.closeAllConnections();
        return new Promise((resolve) => this.server.close(() => resolve()));
    }
}

/** Runs the workspace's `pulumi` CLI with its environment, in its project directory. */
function cli(ws: LocalWorkspace, args: string[]): Promise<{ code: number; output: string }> {
    return new Promise((resolve) => {
        const env = { ...process.env, ...ws.envVars, ...(ws.pulumiHome ? { PULUMI_HOME: ws.pulumiHome } : {}) };
        execFile(ws.pulumiCommand.command, [...args, "--non-interactive"], { cwd: ws.workDir, env }, (err, stdout, stderr) =>
            resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
        );
    });
}

describe("a team's stack on an S3-compatible backend (MinIO)", function () {
    this.timeout(900_000);
    let minio: MinioServer;
    let registry: LocalRegistry;
    let services: SandboxServices;
    let gate: WorkerGate;
    let work: string;
    let checkout: string;
    let stack: Stack;
    let clone: Stack;
    const tags = ["dev-e2es3000000a", "dev-e2es3000000b"];
    const refs: string[] = [];

    const stackKeys = async () => (await minio.listKeys(BUCKET, ".pulumi/")).filter((k) => k.includes(`/${PROJECT}/${STACK}`));

    before(async () => {
        const pulumi = await findPulumi();
        minio = await startMinio(await findMinio());
        await minio.makeBucket(BUCKET);
        assertDockerRunning();
        registry = await startRegistry();
        refs.push(...(await pushFixtureTags(registry, APP, "kiloclaw-e2e-s3:build", tags)));

        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-e2e-s3-"));
        ({ checkout, services } = await startE2eWorld({
            work,
            registry,
            app: APP,
            internalKey: INTERNAL_KEY,
            gatewaySecret: "e2e-s3-gateway-secret",
        }));
        gate = await WorkerGate.start(services.worker.url);

        // The README's form of an S3-compatible backend URL; the credentials come from the environment.
        const env = {
            PULUMI_BACKEND_URL: `s3://${BUCKET}?endpoint=${minio.host}&disableSSL=true&s3ForcePathStyle=true&region=us-east-1`,
            AWS_ACCESS_KEY_ID: minio.accessKey,
            AWS_SECRET_ACCESS_KEY: minio.secretKey,
            AWS_EC2_METADATA_DISABLED: "true",
        };
        // Each machine runs its own clone of this project, with the engine's project dir inside it (as Pulumi.yaml
        // sits in a real checkout): the state's source positions are then relative to the clone, never a path of the
        // machine.
        // kiloclaw:kiloclawDir is relative (../cloud/kiloclaw beside the clone), as the README advises: the stack's
        // config is stored with the state (the dynamic providers' inputs), so an absolute one would be a machine path.
        const program = copyProject(path.join(work, "kiloclaw-rollout"), "own");
        const engineDir = (clonePath: string) => path.join(clonePath, ".sandbox", "engine");
        stack = await openRehearsalStack({
            dir: engineDir(program),
            stackName: STACK,
            pulumi,
            pulumiHome: path.join(work, "home"),
            program,
            env,
        });
        const plain: Record<string, string> = {
            kiloclawDir: path.relative(program, checkout),
            userId: USER,
            imageRef: refs[0],
            workerUrl: gate.url,
            flyApiUrl: services.fly.url,
            registryServer: registry.server,
            registryApp: APP,
            warm: "false",
            instanceTimeoutSeconds: "120",
        };
        const config: ConfigMap = Object.fromEntries(Object.entries(plain).map(([k, value]) => [`kiloclaw:${k}`, { value }]));
        config["kiloclaw:internalApiKey"] = { value: INTERNAL_KEY, secret: true };
        config["kiloclaw:flyApiToken"] = { value: registry.token, secret: true };
        await stack.setAllConfig(config);

        // A teammate's machine: another clone of this project at another path, another engine dir, PULUMI_HOME
        // and cache dir; what it gets from the first is the stack's config file and the passphrase.
        const elsewhere = path.join(work, "teammate", "src", "elsewhere");
        const program2 = copyProject(path.join(elsewhere, "kiloclaw-rollout"), "own");
        fs.cpSync(checkout, path.join(elsewhere, "cloud", "kiloclaw"), { recursive: true, verbatimSymlinks: true });
        const engine2 = engineDir(program2);
        fs.mkdirSync(path.join(engine2, "project"), { recursive: true });
        fs.copyFileSync(path.join(engineDir(program), "passphrase"), path.join(engine2, "passphrase"));
        const settings = path.join("project", `Pulumi.${STACK}.yaml`);
        fs.copyFileSync(path.join(engineDir(program), settings), path.join(engine2, settings));
        clone = await openRehearsalStack({
            dir: engine2,
            stackName: STACK,
            pulumi,
            pulumiHome: path.join(elsewhere, "home"),
            program: program2,
            env: { ...env, XDG_CACHE_HOME: path.join(elsewhere, "cache") },
        });
    });

    after(async () => {
        if (stack) await stack.destroy().catch(() => undefined);
        if (stack) await cli(stack.workspace as LocalWorkspace, ["stack", "rm", "--yes", "--remove-backups", STACK]);
        await gate?.close();
        await services?.close();
        await registry?.stop();
        await removeImages(refs);
        await minio?.stop();
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. up runs the rollout with its state in the bucket", async () => {
        const up = await stack.up();
        assert.equal(up.summary.result, "succeeded");
        assert.equal(up.outputs.status.value, "running");
        assert.equal(up.outputs.trackedImageTag.value, tags[0]);
        assert.ok((await stackKeys()).includes(`.pulumi/stacks/${PROJECT}/${STACK}.json`), `no stack file: ${await stackKeys()}`);
    });

    it("2. the next preview is a no-op", async () => {
        const preview = await stack.preview({ expectNoChanges: true });
        assert.deepEqual(Object.keys(preview.changeSummary), ["same"]);
    });

    it("3. `pulumi stack export` names no path of this machine", async () => {
        const state = JSON.stringify(await stack.exportStack());
        for (const p of [REPO, work, checkout, os.homedir(), os.tmpdir(), path.join(os.homedir(), ".cache")]) {
            const at = state.indexOf(p);
            assert.equal(at, -1, `the state contains ${p}: …${state.slice(Math.max(0, at - 300), at + 100)}…`);
        }
    });

    it("4. a second clone at another path, with the config and passphrase copied, previews no changes", async () => {
        const preview = await clone.preview({ expectNoChanges: true });
        assert.deepEqual(Object.keys(preview.changeSummary), ["same"]);
    });

    it("5. an up started while another holds the lock is refused with the lock message; the first completes", async () => {
        await stack.setConfig("kiloclaw:imageRef", { value: refs[1] });
        const publishing = gate.hold("POST", PUBLISH);
        const first = stack.up();
        let firstDone = false;
        void first.then(
            () => (firstDone = true),
            () => (firstDone = true),
        );
        // The first up is inside its update (its publish waits at the gate): it holds the lock now.
        await Promise.race([publishing, first.then(() => assert.fail("the first up finished without publishing"))]);
        let refused: unknown;
        try {
            await clone.up();
        } catch (err) {
            refused = err;
        }
        assert.equal(firstDone, false, "the first up ended before the second was refused");
        gate.release();
        assert.ok(refused instanceof CommandError, `the second up was not refused: ${refused}`);
        assert.match(refused.message, /the stack is currently locked by 1 lock\(s\)/);
        assert.match(refused.message, /pulumi cancel/);
        const up = await first;
        assert.equal(up.summary.result, "succeeded");
        assert.equal(up.outputs.trackedImageTag.value, tags[1]);
    });

    it("6. destroy, then `stack rm --remove-backups` leaves nothing of the stack in the bucket", async () => {
        await stack.destroy();
        assert.equal(services.worker.instance(USER)?.flyMachineId ?? null, null);
        const before = await stackKeys();
        assert.ok(
            before.some((k) => k.startsWith(`.pulumi/backups/${PROJECT}/${STACK}/`)),
            `no backups to remove: ${before.join(", ")}`,
        );
        const rm = await cli(stack.workspace as LocalWorkspace, ["stack", "rm", "--yes", "--remove-backups", STACK]);
        assert.equal(rm.code, 0, rm.output);
        assert.deepEqual(await stackKeys(), []);
    });
});
