// The real-Docker layer: our shell scripts against a real engine, the offline
// fixture image (sandbox/fixtures/kiloclaw) and a real local registry. The image
// validation (smoke-test.sh) has its own suite: validation.test.ts.
// Needs: bootstrap/ci-deps.sh, bootstrap/start-docker.sh (which also imports the
// fixture base image). Fails, never skips, when Docker is not running.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { LocalRegistry, assertDockerRunning, buildFixture, freePort, removeImages, run, runScript, startRegistry } from "../../sandbox/docker";

const DIGEST_LINE = /^sha256:[0-9a-f]{64}$/;

/** Last non-empty line of a text. */
function lastLine(text: string): string {
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    return lines[lines.length - 1] ?? "";
}

describe("docker scripts against a real engine", function () {
    const runId = randomBytes(4).toString("hex");
    const images = {
        good: `kiloclaw-fixture-test:good-${runId}`,
        /** Built for arm64: what a laptop builds without --platform, and Fly cannot run. */
        arm64: `kiloclaw-fixture-test:arm64-${runId}`,
    };
    const ourImages = Object.values(images);
    /** Every image reference the tests create, removed at the end. */
    const createdRefs: string[] = [...ourImages];

    before(async function () {
        assertDockerRunning();
        // Idempotent; normally already done by start-docker.sh.
        const base = await runScript("import-fixture-base.sh");
        assert.equal(base.code, 0, base.stderr);
        await buildFixture(images.good);
        // No RUN step, so the engine builds it without emulation: FROM scratch + one file, for linux/arm64.
        const armContext = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-arm64-"));
        try {
            fs.writeFileSync(path.join(armContext, "Dockerfile"), "FROM scratch\nCOPY marker /marker\n");
            fs.writeFileSync(path.join(armContext, "marker"), "arm64\n");
            const r = await run("docker", ["build", "--platform", "linux/arm64", "-t", images.arm64, armContext]);
            assert.equal(r.code, 0, r.stderr);
        } finally {
            fs.rmSync(armContext, { recursive: true, force: true });
        }
    });

    after(async function () {
        await removeImages(createdRefs);
    });

    describe("setup scripts", function () {
        it("start-docker.sh leaves a running engine alone and keeps the base image", async function () {
            const r = await runScript("start-docker.sh");
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /engine already answering/);
            assert.match(r.stdout, /kiloclaw-fixture-base:2 already exists/);
        });

        it("ci-deps.sh finds everything installed and does not touch apt", async function () {
            const r = await runScript("ci-deps.sh");
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /all present/);
        });
    });

    describe("registry.sh", function () {
        it("starts idempotently, refuses another token, reports status and stops", async function () {
            const registry = await startRegistry();
            const env = {
                REGISTRY_PORT: String(registry.port),
                REGISTRY_STATE_DIR: registry.stateDir,
                REGISTRY_TOKEN: registry.token,
            };
            try {
                const anonymous = await fetch(`http://${registry.server}/v2/`);
                assert.equal(anonymous.status, 401);
                assert.equal((await registry.request("/v2/")).status, 200);

                const again = await runScript("registry.sh", ["start"], { env });
                assert.equal(again.code, 0, again.stderr);
                assert.match(again.stdout, /already running/);

                const otherToken = await runScript("registry.sh", ["start"], { env: { ...env, REGISTRY_TOKEN: "other" } });
                assert.equal(otherToken.code, 1);
                assert.match(otherToken.stderr, /does not accept this REGISTRY_TOKEN/);

                const status = await runScript("registry.sh", ["status"], { env });
                assert.equal(status.code, 0);
                assert.match(status.stdout, /running on 127\.0\.0\.1/);
                assert.ok(!fs.readFileSync(path.join(registry.stateDir, "registry.log"), "utf8").includes(registry.token));
            } finally {
                await registry.stop();
            }
            const stopped = await runScript("registry.sh", ["status"], { env });
            assert.equal(stopped.code, 3);
        });
    });

    describe("push-image.sh", function () {
        let registry: LocalRegistry;
        let tmpDir: string; // the scripts' TMPDIR, to see that no DOCKER_CONFIG is left behind

        before(async function () {
            registry = await startRegistry();
        });
        after(async function () {
            await registry?.stop();
        });
        beforeEach(function () {
            tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-push-test-"));
        });
        afterEach(function () {
            assert.deepEqual(fs.readdirSync(tmpDir), [], "a temporary DOCKER_CONFIG was left behind");
            fs.rmSync(tmpDir, { recursive: true, force: true });
            const userConfig = path.join(os.homedir(), ".docker", "config.json");
            if (fs.existsSync(userConfig)) {
                const text = fs.readFileSync(userConfig, "utf8");
                assert.ok(!text.includes(registry.server), `a registry login was left in ${userConfig}`);
            }
        });

        const push = (server: string, target: string, token: string, source = images.good) => {
            createdRefs.push(target);
            return runScript("push-image.sh", [], {
                env: {
                    SOURCE_IMAGE: source,
                    TARGET_IMAGE: target,
                    REGISTRY_SERVER: server,
                    REGISTRY_USERNAME: "x",
                    TMPDIR: tmpDir,
                },
                input: `${token}\n`,
            });
        };

        it("pushes with the right token and prints the digest the registry serves", async function () {
            const tag = `dev-${runId}`;
            const target = `${registry.server}/kiloclaw-machines:${tag}`;
            const r = await push(registry.server, target, registry.token);
            assert.equal(r.code, 0, r.stdout + r.stderr);
            // The pushed name is not one stack's alone: the engine keeps only the source's name.
            assert.notEqual((await run("docker", ["image", "inspect", target])).code, 0, `${target} was left in the engine`);
            const digest = lastLine(r.stdout);
            assert.match(digest, DIGEST_LINE);
            assert.match(
                r.stdout,
                new RegExp(`the registry serves ${registry.server.replace(/\./g, "\\.")}/kiloclaw-machines:${tag} for linux/amd64`),
            );
            assert.ok(!(r.stdout + r.stderr).includes(registry.token), "the token was printed");

            const manifest = await registry.request(`/v2/kiloclaw-machines/manifests/${tag}`, {
                method: "HEAD",
                headers: {
                    accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
                },
            });
            assert.equal(manifest.status, 200);
            assert.equal(manifest.headers.get("docker-content-digest"), digest);
        });

        it("refuses an image the registry serves for another platform than linux/amd64 (the runbook's manifest check)", async function () {
            const target = `${registry.server}/kiloclaw-machines:arm64-${runId}`;
            const r = await push(registry.server, target, registry.token, images.arm64);
            assert.equal(r.code, 1, r.stdout + r.stderr);
            assert.match(
                r.stderr,
                new RegExp(`the registry serves ${target.replace(/\./g, "\\.")} for linux/arm64, but Fly machines run linux/amd64`),
            );
            assert.match(r.stderr, /docker build --platform linux\/amd64/);
            assert.doesNotMatch(lastLine(r.stdout), DIGEST_LINE, "no digest: the rollout must not go on with this tag");
            // afterEach: the temporary DOCKER_CONFIG is gone here too.
        });

        it("explains a refused token", async function () {
            const r = await push(registry.server, `${registry.server}/kiloclaw-machines:refused-${runId}`, "not-the-token");
            assert.equal(r.code, 1);
            assert.match(r.stderr, new RegExp(`the Fly token was refused by ${registry.server.replace(/\./g, "\\.")}`));
            assert.match(r.stderr, /fly auth token/);
            assert.match(r.stderr, /pulumi config set --secret kiloclaw:flyApiToken/);
            assert.match(r.stderr, /fly auth docker/);
            assert.doesNotMatch(r.stdout, /sha256:/);
            assert.ok(!(r.stdout + r.stderr).includes("not-the-token"), "the token was printed");
        });

        it("explains an unreachable registry", async function () {
            const server = `127.0.0.1:${await freePort()}`; // nothing listens there
            const r = await push(server, `${server}/kiloclaw-machines:gone-${runId}`, "any-token");
            assert.equal(r.code, 1);
            assert.match(r.stderr, new RegExp(`registry ${server.replace(/\./g, "\\.")} is unreachable`));
        });

        it("explains NAME_UNKNOWN", async function () {
            const fake = await startNameUnknownRegistry();
            try {
                const server = `127.0.0.1:${fake.port}`;
                const r = await push(server, `${server}/no-such-app:dev-${runId}`, "any-token");
                assert.equal(r.code, 1, r.stdout + r.stderr);
                assert.match(r.stderr, /does not know the repository 'no-such-app' \(NAME_UNKNOWN\)/);
            } finally {
                await fake.close();
            }
        });

        it("refuses to run without a token on stdin", async function () {
            const r = await push(registry.server, `${registry.server}/kiloclaw-machines:empty-${runId}`, "");
            assert.equal(r.code, 1);
            assert.match(r.stderr, /no registry token on stdin/);
        });
    });
});

/**
 * A registry that accepts any login and any layer upload, then answers the
 * manifest PUT with NAME_UNKNOWN, as a registry does for a repository (Fly: an
 * app) that does not exist. (Failing the layer uploads instead would make the
 * engine retry them with back-off for ~50 s before giving up.)
 */
async function startNameUnknownRegistry(): Promise<{ port: number; close(): Promise<void> }> {
    const jsonHeaders = { "content-type": "application/json", "docker-distribution-api-version": "registry/2.0" };
    const blobSizes = new Map<string, number>(); // digest -> bytes received
    let uploadedBytes = 0;

    const handle = (req: http.IncomingMessage, res: http.ServerResponse, bodyBytes: number) => {
        const send = (status: number, headers: Record<string, string> = {}, body = "") => {
            res.writeHead(status, { ...jsonHeaders, ...headers });
            res.end(body);
        };
        const url = new URL(req.url ?? "/", "http://registry");
        if (!req.headers.authorization) {
            return send(
                401,
                { "www-authenticate": 'Basic realm="fake"' },
                '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
            );
        }
        if (url.pathname === "/v2/") {
            return send(200, {}, "{}");
        }
        const blob = url.pathname.match(/^\/v2\/(.+)\/blobs\/(.+)$/);
        if (blob && req.method === "HEAD") {
            const size = blobSizes.get(blob[2]);
            return size === undefined ? send(404) : send(200, { "docker-content-digest": blob[2], "content-length": String(size) });
        }
        if (blob && blob[2].startsWith("uploads")) {
            const location = `/v2/${blob[1]}/blobs/uploads/upload-1`;
            if (req.method === "POST") {
                uploadedBytes = 0;
                return send(202, { location, "docker-upload-uuid": "upload-1", range: "0-0" });
            }
            uploadedBytes += bodyBytes;
            if (req.method === "PATCH") {
                return send(202, { location, "docker-upload-uuid": "upload-1", range: `0-${Math.max(uploadedBytes - 1, 0)}` });
            }
            if (req.method === "PUT") {
                const digest = url.searchParams.get("digest") ?? "";
                blobSizes.set(digest, uploadedBytes);
                return send(201, { location: `/v2/${blob[1]}/blobs/${digest}`, "docker-content-digest": digest });
            }
        }
        return send(404, {}, JSON.stringify({ errors: [{ code: "NAME_UNKNOWN", message: "repository name not known to registry" }] }));
    };

    const server = http.createServer((req, res) => {
        let bodyBytes = 0;
        req.on("data", (chunk: Buffer) => (bodyBytes += chunk.length));
        req.on("end", () => handle(req, res, bodyBytes));
    });
    // The engine's https attempt arrives as garbage on this plain-http port; drop it quietly.
    server.on("clientError", (_err, socket: net.Socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
        port,
        close: () =>
            new Promise<void>((resolve) => {
                server.closeAllConnections();
                server.close(() => resolve());
            }),
    };
}
