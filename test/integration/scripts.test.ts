// The real-Docker layer: our shell scripts against a real engine, the offline
// fixture images (sandbox/fixtures/kiloclaw*) and a real local registry.
// Needs: bootstrap/ci-deps.sh, bootstrap/start-docker.sh (which also imports the
// fixture base image). Fails, never skips, when Docker is not running.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import {
    FIXTURES_DIR,
    LocalRegistry,
    SMOKE_LABEL,
    assertDockerRunning,
    containersWithLabel,
    dockerBuild,
    freePort,
    removeImages,
    runScript,
    startRegistry,
    startScript,
} from "../../sandbox/docker";

const PIN = "2026.2.9";
const DIGEST_LINE = /^sha256:[0-9a-f]{64}$/;

/** Last non-empty line of a text. */
function lastLine(text: string): string {
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    return lines[lines.length - 1] ?? "";
}

/** Polls `check` every 200 ms until it returns true; throws after `seconds`. */
async function eventually(what: string, seconds: number, check: () => boolean | Promise<boolean>): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    while (!(await check())) {
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${seconds}s waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 200));
    }
}

describe("docker scripts against a real engine", function () {
    const runId = randomBytes(4).toString("hex");
    const images = {
        good: `kiloclaw-fixture-test:good-${runId}`,
        wrongVersion: `kiloclaw-fixture-test:wrong-version-${runId}`,
        exits: `kiloclaw-fixture-test:exits-${runId}`,
        noGateway: `kiloclaw-fixture-test:no-gateway-${runId}`,
    };
    const ourImages = Object.values(images);
    /** Every image reference the tests create, removed at the end. */
    const createdRefs: string[] = [...ourImages];

    before(async function () {
        assertDockerRunning();
        // Idempotent; normally already done by start-docker.sh.
        const base = await runScript("import-fixture-base.sh");
        assert.equal(base.code, 0, base.stderr);
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), images.good);
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw-wrong-version"), images.wrongVersion);
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw-exits"), images.exits);
        await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw-no-gateway"), images.noGateway);
    });

    after(async function () {
        await removeImages(createdRefs);
    });

    describe("setup scripts", function () {
        it("start-docker.sh leaves a running engine alone and keeps the base image", async function () {
            const r = await runScript("start-docker.sh");
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /engine already answering/);
            assert.match(r.stdout, /kiloclaw-fixture-base:1 already exists/);
        });

        it("ci-deps.sh finds everything installed and does not touch apt", async function () {
            const r = await runScript("ci-deps.sh");
            assert.equal(r.code, 0, r.stderr);
            assert.match(r.stdout, /all present/);
        });
    });

    describe("smoke-test.sh", function () {
        const smoke = (image: string, env: Record<string, string> = {}) =>
            runScript("smoke-test.sh", [], {
                env: { IMAGE: image, EXPECTED_OPENCLAW_VERSION: PIN, ...env },
            });

        afterEach(async function () {
            assert.deepEqual(await containersWithLabel(SMOKE_LABEL, ourImages), [], "smoke containers left behind");
        });

        it("passes all three checks on the good image", async function () {
            // A real-looking secret in our own environment must never reach output or containers.
            const r = await smoke(images.good, { KILOCODE_API_KEY: "sk-real-looking-secret-123" });
            assert.equal(r.code, 0, r.stdout + r.stderr);
            assert.match(r.stdout, new RegExp(`✔ openclaw --version = ${PIN.replace(/\./g, "\\.")}`));
            assert.match(r.stdout, /✔ startup: container still running after 3s/);
            assert.match(r.stdout, /✔ gateway: HTTP 200 on http:\/\/127\.0\.0\.1:\d+\//);
            assert.ok(!(r.stdout + r.stderr).includes("sk-real-looking-secret-123"));
        });

        it("fails the version check when the binary disagrees with the pin", async function () {
            const r = await smoke(images.wrongVersion);
            assert.equal(r.code, 1);
            assert.match(r.stderr, /openclaw --version printed '2026\.2\.8' but the expected version is '2026\.2\.9'/);
            assert.match(r.stderr, /align the Dockerfile pin/);
            assert.doesNotMatch(r.stdout, /✔ startup/);
        });

        it("fails the startup check at once when the container exits", async function () {
            // A generous deadline: the failure must come from the exit, not from waiting it out.
            const r = await smoke(images.exits, { STARTUP_DEADLINE_SECONDS: "300" });
            assert.equal(r.code, 1);
            assert.match(r.stdout, /✔ openclaw --version = 2026\.2\.9/);
            assert.match(r.stderr, /startup: the container exited with code 1/);
            assert.match(r.stderr, /config generation failed/, "shows the container's last log lines");
            assert.match(r.stderr, /bash -x \/usr\/local\/bin\/start-openclaw\.sh/, "names the runbook's debug step");
        });

        it("fails the gateway check when port 18789 never answers", async function () {
            const r = await smoke(images.noGateway, { GATEWAY_DEADLINE_SECONDS: "4" });
            assert.equal(r.code, 1);
            assert.match(r.stdout, /✔ startup: container still running/);
            assert.match(r.stderr, /gateway: no HTTP 2xx from http:\/\/127\.0\.0\.1:\d+\/ \(container port 18789\) within 4s/);
            assert.match(r.stderr, /Starting OpenClaw Gateway\.\.\./, "shows the container's last log lines");
            assert.match(r.stderr, /Gateway not responding/, "names the runbook's next step");
        });

        it("rejects a missing IMAGE or an image that was never built", async function () {
            const noImage = await runScript("smoke-test.sh", [], {
                env: { IMAGE: "", EXPECTED_OPENCLAW_VERSION: PIN },
            });
            assert.equal(noImage.code, 2);
            assert.match(noImage.stderr, /IMAGE is required/);

            const unknown = await smoke(`kiloclaw-fixture-test:never-built-${runId}`);
            assert.equal(unknown.code, 2);
            assert.match(unknown.stderr, /is not in the local Docker engine/);
        });

        for (const [signal, code, phase] of [
            ["SIGTERM", 143, "gateway"],
            ["SIGINT", 130, "startup"],
        ] as const) {
            it(`removes its containers when stopped with ${signal} during the ${phase} check`, async function () {
                const proc = startScript("smoke-test.sh", [], {
                    env: { IMAGE: images.noGateway, EXPECTED_OPENCLAW_VERSION: PIN, GATEWAY_DEADLINE_SECONDS: "300" },
                });
                await eventually(`a running ${phase} container`, 120, async () => {
                    const names = await containersWithLabel(SMOKE_LABEL, [images.noGateway]);
                    return names.some((n) => n.endsWith(`-${phase}`));
                });
                proc.child.kill(signal);
                const r = await proc.done;
                assert.equal(r.code, code, r.stdout + r.stderr);
                // afterEach asserts that no labelled container is left.
            });
        }

        it("sweeps up the containers of an earlier run that was SIGKILLed", async function () {
            const killed = startScript("smoke-test.sh", [], {
                env: { IMAGE: images.noGateway, EXPECTED_OPENCLAW_VERSION: PIN, GATEWAY_DEADLINE_SECONDS: "300" },
            });
            await eventually("a running gateway container", 120, async () =>
                (await containersWithLabel(SMOKE_LABEL, [images.noGateway])).some((n) => n.endsWith("-gateway")),
            );
            killed.child.kill("SIGKILL"); // no trap runs: the container stays behind
            await killed.done;
            const leftovers = await containersWithLabel(SMOKE_LABEL, [images.noGateway]);
            assert.equal(leftovers.length, 1);

            const next = await smoke(images.good);
            assert.equal(next.code, 0, next.stdout + next.stderr);
            assert.match(next.stdout, /removed leftover container \w+ of an earlier run/);
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

        const push = (server: string, target: string, token: string) => {
            createdRefs.push(target);
            return runScript("push-image.sh", [], {
                env: {
                    SOURCE_IMAGE: images.good,
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
            const r = await push(registry.server, `${registry.server}/kiloclaw-machines:${tag}`, registry.token);
            assert.equal(r.code, 0, r.stdout + r.stderr);
            const digest = lastLine(r.stdout);
            assert.match(digest, DIGEST_LINE);
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
            return send(401, { "www-authenticate": 'Basic realm="fake"' }, '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
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
