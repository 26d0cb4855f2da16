// Secret hygiene: a rollout with known, distinctive secrets, and everything it
// emits captured — error messages, script output, docker command lines, the env
// smoke containers get, provider outputs, the mocked program's plain values and
// the emulators' request logs. No secret may appear in any of them.
//
// Two things legitimately carry a secret and are left out, each exactly:
// - the `kilocodeApiKey` field of the provision request body (the platform API's contract);
// - the worker's own requests to Fly (its machines' env holds the kilocode key and the
//   gateway token: that is the worker's doing). Our warm machine's requests ARE scanned.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { devFlyAppName } from "../../lib/identity";
import { RequestLogEntry } from "../../sandbox/emulators/server";
import {
    assertDockerRunning,
    buildFixture,
    dockerBuild,
    FIXTURES_DIR,
    freePort,
    LocalRegistry,
    removeImages,
    RunResult,
    runScript,
    startRegistry,
} from "../../sandbox/docker";
import { fakeCheckout, isSecretValue, runProgram } from "../program-harness";
import { findLeaks } from "./leaks";
import {
    closeStage,
    configureStage,
    destroyRollout,
    instance,
    instanceInputs,
    PROVISION_409,
    REGISTRY_APP,
    rollout,
    RolloutResult,
    Stage,
    startStage,
    TAG,
    warm,
    warmInputs,
    workerVersion,
    versionInputs,
} from "./rollout";

const SECRET_FIELDS = new Set(["internalApiKey", "flyApiToken", "kilocodeApiKey", "gatewayToken"]);

/** Text captured from one place the rollout writes to. */
interface Capture {
    place: string;
    text: string;
}

/** Plain (not secret-wrapped) strings of a mocked-program value, with where they sit. */
function plainStrings(value: unknown, at: string, out: Capture[]): void {
    if (isSecretValue(value)) return;
    if (typeof value === "string") out.push({ place: at, text: value });
    else if (Array.isArray(value)) value.forEach((v, i) => plainStrings(v, `${at}[${i}]`, out));
    else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) plainStrings(v, `${at}.${k}`, out);
}

/** Provider outputs without the fields that are secrets by name. */
function nonSecretOuts(outs: Record<string, unknown> | undefined): Record<string, unknown> {
    return Object.fromEntries(Object.entries(outs ?? {}).filter(([k]) => !SECRET_FIELDS.has(k)));
}

/** A request log entry as scanned: everything but the auth header itself. */
function scannable(entry: RequestLogEntry, dropBodyField?: string): string {
    const headers = { ...entry.headers };
    delete headers.authorization;
    delete headers["x-internal-api-key"];
    let body = entry.body;
    if (dropBodyField && body && typeof body === "object") {
        body = { ...(body as Record<string, unknown>) };
        delete (body as Record<string, unknown>)[dropBodyField];
    }
    return JSON.stringify({ method: entry.method, path: entry.path, query: entry.query, headers, body, status: entry.status });
}

describe("secret hygiene", function () {
    this.timeout(600_000);
    const hex = randomBytes(6).toString("hex");
    const image = `kiloclaw-secrets-${hex}:good`;
    const exitsImage = `kiloclaw-secrets-${hex}:exits`;
    const captures: Capture[] = [];
    const secrets: Record<string, string> = {
        internalApiKey: `int-SECRET-${hex}`,
        kilocodeApiKey: `kc-SECRET-${hex}`,
        gatewayTokenSecret: `gws-SECRET-${hex}`,
        envLocalSecret: `envlocal-SECRET-${hex}`,
        // Secrets a developer typed wrong are still secrets.
        wrongInternalApiKey: `int-WRONG-${hex}`,
        wrongFlyToken: `fm2_WRONG-${hex}`,
        wrongRegistryToken: `reg-WRONG-${hex}`,
    };
    let registry: LocalRegistry;
    let scratch: string;
    let shimLog: string;
    let shimPath: string;
    const target = () => `${registry.server}/${REGISTRY_APP}:${TAG}`;
    const capture = (place: string, text: string) => captures.push({ place, text });
    const captureRun = (what: string, r: RunResult) => {
        capture(`${what}: stdout`, r.stdout);
        capture(`${what}: stderr`, r.stderr);
    };

    before(async function () {
        assertDockerRunning();
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-secrets-"));
        registry = await startRegistry();
        // The Fly token is the registry password, as `fly auth docker` uses it.
        secrets.flyApiToken = registry.token;
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), image);
        await buildFixture(exitsImage, "exits");
        // A `docker` first on PATH that records every command line the scripts run.
        const realDocker = spawnSync("bash", ["-c", "command -v docker"], { encoding: "utf8" }).stdout.trim();
        const bin = path.join(scratch, "bin");
        fs.mkdirSync(bin);
        shimLog = path.join(scratch, "docker-argv.log");
        fs.writeFileSync(
            path.join(bin, "docker"),
            `#!/usr/bin/env bash\n{ printf '%s\\0' "$@"; printf '\\n'; } >>'${shimLog}'\nexec '${realDocker}' "$@"\n`,
            { mode: 0o755 },
        );
        shimPath = `${bin}:${process.env.PATH}`;
    });

    after(async function () {
        await registry?.stop();
        await removeImages([image, exitsImage, ...(registry ? [target()] : [])]);
        if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    });

    const scriptEnv = (env: Record<string, string>) => ({ PATH: shimPath, TMPDIR: scratch, ...env });

    describe("the scripts on real Docker", () => {
        it("push-image.sh takes the token on stdin only, and prints none", async () => {
            const env = scriptEnv({ SOURCE_IMAGE: image, TARGET_IMAGE: target(), REGISTRY_SERVER: registry.server, REGISTRY_USERNAME: "x" });
            const ok = await runScript("push-image.sh", [], { env, input: secrets.flyApiToken });
            assert.equal(ok.code, 0, ok.stderr);
            captureRun("push-image.sh (accepted token)", ok);
            const refused = await runScript("push-image.sh", [], { env, input: secrets.wrongRegistryToken });
            assert.equal(refused.code, 1);
            captureRun("push-image.sh (refused token)", refused);
            const leaks = await findLeaks({ registries: [registry.server], scratchDirs: [scratch] });
            assert.deepEqual(leaks, [], "no login outlives the push");
        });

        it("smoke-test.sh gives containers placeholders only, even with real keys in its environment", async () => {
            // A developer's shell may export the real keys: the script must not pass them on.
            const env = scriptEnv({
                IMAGE: image,
                EXPECTED_OPENCLAW_VERSION: "2026.2.9",
                STARTUP_DEADLINE_SECONDS: "60",
                GATEWAY_DEADLINE_SECONDS: "60",
                KILOCODE_API_KEY: secrets.kilocodeApiKey,
                OPENCLAW_GATEWAY_TOKEN: secrets.gatewayTokenSecret,
            });
            const ok = await runScript("smoke-test.sh", [], { env });
            assert.equal(ok.code, 0, ok.stderr);
            captureRun("smoke-test.sh (good image)", ok);
            const failed = await runScript("smoke-test.sh", [], { env: { ...env, IMAGE: exitsImage } });
            assert.equal(failed.code, 1);
            captureRun("smoke-test.sh (image that exits, with its logs)", failed);

            const invocations = fs
                .readFileSync(shimLog, "utf8")
                .split("\0\n")
                .filter(Boolean)
                .map((rec) => rec.split("\0"));
            const runs = invocations.filter((args) => args[0] === "run");
            assert.ok(runs.length >= 5, `expected the smoke tests' docker runs, saw ${runs.length}`);
            for (const args of runs) {
                assert.ok(!args.some((a) => a === "--env-file" || a.startsWith("--env-file=")), `env file in: docker ${args.join(" ")}`);
                args.forEach((a, i) => {
                    if (a !== "-e" && a !== "--env") return;
                    assert.ok(
                        ["KILOCODE_API_KEY=test-key", "OPENCLAW_GATEWAY_TOKEN=test-token"].includes(args[i + 1]),
                        `container env: ${args[i + 1]}`,
                    );
                });
            }
            const logins = invocations.filter((args) => args[0] === "login");
            assert.equal(logins.length, 2);
            for (const args of logins) {
                assert.ok(args.includes("--password-stdin"));
                assert.ok(!args.some((a) => a === "-p" || a === "--password" || a.startsWith("--password=")), `docker ${args.join(" ")}`);
            }
            invocations.forEach((args, i) => capture(`docker command line #${i + 1} (docker ${args[0]})`, args.join(" ")));
            const leaks = await findLeaks({ docker: true, images: [image, exitsImage], scratchDirs: [scratch] });
            assert.deepEqual(leaks, []);
        });
    });

    describe("the providers against the emulators", () => {
        let stage: Stage;
        let done: RolloutResult;
        /** The stack config the providers read their access from: this run's secrets, or wrong ones for the error cases. */
        const useKeys = (over: Record<string, string> = {}) =>
            configureStage(stage, { "kiloclaw:internalApiKey": secrets.internalApiKey, "kiloclaw:flyApiToken": secrets.flyApiToken, ...over });

        before(async () => {
            stage = await startStage({
                fly: { token: secrets.flyApiToken },
                devVars: {
                    INTERNAL_API_SECRET: secrets.internalApiKey,
                    GATEWAY_TOKEN_SECRET: secrets.gatewayTokenSecret,
                    FLY_API_TOKEN: secrets.flyApiToken,
                },
            });
            await useKeys();
        });

        after(async () => {
            if (stage) await closeStage(stage);
        });

        const errorOf = async (what: string, p: Promise<unknown>) => {
            try {
                await p;
            } catch (err) {
                capture(`error: ${what}`, (err as Error).message);
                return (err as Error).message;
            }
            throw new Error(`${what}: expected an error`);
        };

        it("a rollout and its destroy emit no secret in their non-secret outputs", async () => {
            done = await rollout(stage, { instanceOver: { kilocodeApiKey: secrets.kilocodeApiKey } });
            assert.ok(done.completed, done.error?.message);
            const gatewayToken = done.instance!.outs.gatewayToken;
            assert.match(String(gatewayToken), /^[0-9a-f]{64}$/);
            secrets.gatewayToken = String(gatewayToken);
            capture("outputs: WarmMachine", JSON.stringify(nonSecretOuts(done.warm as unknown as Record<string, unknown>)));
            capture("outputs: WorkerImageVersion", JSON.stringify(nonSecretOuts(done.version as unknown as Record<string, unknown>)));
            capture("outputs: WorkerInstance", JSON.stringify(nonSecretOuts(done.instance!.outs as unknown as Record<string, unknown>)));
            const read = await instance.read(done.instance!.id, done.instance!.outs);
            capture("outputs: WorkerInstance read", JSON.stringify(nonSecretOuts(read.props as unknown as Record<string, unknown>)));
            await destroyRollout(done);
        });

        it("error messages carry no secret (403, 401, worker down, tag mismatch, 409, Fly 503, worker 500)", async () => {
            const withKey = { kilocodeApiKey: secrets.kilocodeApiKey };
            await useKeys({ "kiloclaw:internalApiKey": secrets.wrongInternalApiKey, "kiloclaw:flyApiToken": secrets.wrongFlyToken });
            assert.match(await errorOf("403 publishing", workerVersion.create(versionInputs(stage))), /403/);
            assert.match(await errorOf("403 provisioning", instance.create(instanceInputs(stage, withKey))), /403/);
            assert.match(await errorOf("401 from Fly", warm.create(warmInputs(stage))), /401/);
            await useKeys({ "kiloclaw:workerUrl": `http://127.0.0.1:${await freePort()}` });
            assert.match(await errorOf("worker down", instance.create(instanceInputs(stage, withKey))), /not reachable/);
            await useKeys();

            // Tag mismatch: .dev.vars moved to a new tag, the running worker did not.
            await workerVersion.create(versionInputs(stage, { imageTag: "dev-5ec2e75ec2e7" }));
            const newRef = `registry.fly.io/${REGISTRY_APP}:dev-5ec2e75ec2e7`;
            assert.match(
                await errorOf("tag mismatch", instance.create(instanceInputs(stage, { ...withKey, imageTag: "dev-5ec2e75ec2e7", imageRef: newRef }))),
                /not registry\.fly\.io\/[\w-]+:dev-5ec2e75ec2e7/,
            );
            await workerVersion.create(versionInputs(stage));

            stage.worker.inject({ ...PROVISION_409, times: 2 });
            assert.match(await errorOf("409 twice", instance.create(instanceInputs(stage, withKey))), /409/);
            stage.fly.inject({ method: "POST", path: new RegExp(`^/v1/apps/${REGISTRY_APP}/machines$`), status: 503, times: Infinity });
            assert.match(await errorOf("Fly 503 on every create", warm.create(warmInputs(stage))), /503/);
            stage.fly.clearFaults();
            // Every machine create fails, so the start after the provision fails too (a single failure is recovered by that start).
            stage.fly.inject({
                method: "POST",
                path: new RegExp(`^/v1/apps/${devFlyAppName(stage.userId)}/machines$`),
                status: 500,
                body: { error: "internal" },
                times: Infinity,
            });
            assert.match(await errorOf("worker 500 mid-provision", instance.create(instanceInputs(stage, withKey))), /500/);
            stage.fly.clearFaults();
            const leaks = await findLeaks({ flies: [stage.fly], workers: [{ worker: stage.worker, userIds: [stage.userId] }] });
            assert.deepEqual(leaks, []);
        });

        it("the emulators' request logs hold no secret outside the auth headers", () => {
            // Controls: the two exclusions really hold secrets, so the scan would see one that escaped.
            const provision = stage.worker.requests.find((r) => r.method === "POST" && r.path === "/api/platform/provision" && r.status === 201);
            assert.ok(scannable(provision!).includes(secrets.kilocodeApiKey), "the provision body carries the kilocode key");
            const workerMachine = stage.fly.requests.find(
                (r) => r.method === "POST" && r.path === `/v1/apps/${devFlyAppName(stage.userId)}/machines`,
            );
            assert.ok(scannable(workerMachine!).includes(secrets.gatewayToken), "the worker's machine env carries the gateway token");
            for (const [i, entry] of stage.worker.requests.entries()) {
                // The provision body's kilocodeApiKey is what the platform API asks for.
                const drop = entry.method === "POST" && entry.path === "/api/platform/provision" ? "kilocodeApiKey" : undefined;
                capture(`worker request #${i + 1} ${entry.method} ${entry.path}`, scannable(entry, drop));
            }
            const ours = new RegExp(`^/v1/apps/${REGISTRY_APP}(/|$)`);
            const warmCreates = stage.fly.requests.filter((r) => r.method === "POST" && ours.test(r.path) && r.path.endsWith("/machines"));
            assert.ok(warmCreates.length > 0, "the warm machine's create body is scanned");
            for (const [i, entry] of stage.fly.requests.entries()) {
                if (!ours.test(entry.path)) continue; // the worker's own calls to Fly (see the file comment)
                capture(`fly request #${i + 1} ${entry.method} ${entry.path}`, scannable(entry));
            }
        });
    });

    describe("the program under mocks", () => {
        it("the program registers secrets only as secrets: plain inputs and outputs hold none", async () => {
            const checkout = fakeCheckout({
                devVars: [
                    `INTERNAL_API_SECRET=${secrets.internalApiKey}`,
                    `FLY_API_TOKEN=${secrets.flyApiToken}`,
                    `GATEWAY_TOKEN_SECRET=${secrets.gatewayTokenSecret}`,
                    "WORKER_ENV=development",
                    `FLY_REGISTRY_APP=${REGISTRY_APP}`,
                    "",
                ].join("\n"),
                envLocal: `NEXTAUTH_SECRET=${secrets.envLocalSecret}\n`,
            });
            try {
                const program = await runProgram({
                    config: {
                        "kiloclaw:kiloclawDir": checkout.kiloclawDir,
                        "kiloclaw:userId": "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c03",
                        "kiloclaw:kilocodeApiKey": secrets.kilocodeApiKey,
                    },
                    secretKeys: ["kiloclaw:kilocodeApiKey"],
                });
                assert.equal(program.error, undefined, program.error);
                for (const r of program.resources) {
                    const found: Capture[] = [];
                    plainStrings(r.inputs, `${r.type}::${r.name}`, found);
                    captures.push(...found.map((c) => ({ place: `program input ${c.place}`, text: c.text })));
                }
                for (const [name, out] of Object.entries(program.outputs)) {
                    // An output left undefined (e.g. no previous image to compare sizes with) has nothing to scan.
                    if (!out.secret && out.value !== undefined) capture(`program output ${name}`, JSON.stringify(out.value));
                }
                assert.equal(program.outputs.gatewayToken?.secret, true, "the gateway token output is a secret");
                // How the scripts are invoked: commands and env hold no secret, the push token is stdin (a secret).
                const push = program.resources.find((r) => r.type === "command:local:Command" && r.name.endsWith("-push"));
                assert.ok(push, "the registry push command");
                assert.ok(
                    isSecretValue(push.inputs.stdin) && push.inputs.stdin.value === secrets.flyApiToken,
                    "the Fly token reaches push-image.sh on stdin, as a secret",
                );
                const smoke = program.resources.find((r) => r.type === "command:local:Command" && r.name.endsWith("-smoke"));
                assert.ok(smoke && smoke.inputs.stdin === undefined, "the smoke test gets no stdin");
            } finally {
                fs.rmSync(checkout.root, { recursive: true, force: true });
            }
        });
    });

    // Last, once every place above is captured (mocha runs nested describes in order).
    describe("the scan", () => {
        it("no secret appears in any captured place", () => {
            const variants = Object.entries(secrets).flatMap(([name, value]) => [
                [name, value],
                [`${name} (base64)`, Buffer.from(value).toString("base64")],
                [`${name} (basic auth)`, Buffer.from(`x:${value}`).toString("base64")],
            ]);
            const leaks: string[] = [];
            for (const { place, text } of captures) {
                for (const [name, value] of variants) if (text.includes(value)) leaks.push(`${name} in ${place}`);
            }
            console.log(`\nsecret hygiene: ${captures.length} places scanned, ${leaks.length} leaks found`);
            for (const leak of leaks) console.log(`  leak: ${leak}`);
            assert.ok(captures.length > 50, `too few places captured (${captures.length}): did an earlier test fail?`);
            assert.deepEqual(leaks, []);
        });
    });
});
