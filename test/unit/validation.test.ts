// The image validation's pure parts: pins, deadlines under emulation, what is
// read from doctor and the runtime config, the report and its hints.
import * as assert from "node:assert/strict";
import { resolveSettings } from "../../lib/config";
import { findNodePin } from "../../lib/nodePin";
import { firstFileInTar } from "../../validation/docker";
import { nextSteps } from "../../validation/hints";
import { formatReport, parseValidationOutput, summaryLine } from "../../validation/report";
import {
    CHECK_NAMES,
    describeListeners,
    doctorConfigInvalid,
    doctorItems,
    doctorWarnings,
    engineFacts,
    listeningSockets,
    overallDeadlineSeconds,
    formatBytes,
    formatChange,
    readRuntimeConfig,
    redact,
    sameNodeVersion,
    shebangShell,
    ValidationReport,
} from "../../validation/validate";

describe("image validation (pure parts)", () => {
    describe("findNodePin", () => {
        it("reads the real Dockerfile's ENV NODE_VERSION, an ARG, or a node: base image", () => {
            assert.equal(findNodePin("FROM debian:bookworm-slim\n\n# Install Node.js 22\nENV NODE_VERSION=22.13.1\nRUN curl …"), "22.13.1");
            assert.equal(findNodePin("ARG NODE_VERSION=v20.18.1"), "20.18.1");
            assert.equal(findNodePin('ENV NODE_VERSION "22.1.0"'), "22.1.0");
            assert.equal(findNodePin("FROM --platform=linux/amd64 node:22.13.1-bookworm-slim"), "22.13.1");
        });
        it("finds no pin in comments, ranges or images without one", () => {
            assert.equal(findNodePin("# ENV NODE_VERSION=22.13.1\nFROM debian:bookworm-slim"), undefined);
            assert.equal(findNodePin("ENV NODE_VERSION=22"), undefined);
            assert.equal(findNodePin("FROM node:22-slim"), undefined);
        });
    });

    describe("kiloclaw:expectedNodeVersion", () => {
        const files = (dockerfile: string) => (file: string) =>
            file.endsWith("Dockerfile") ? dockerfile : file.endsWith(".dev.vars") ? "FLY_APP_NAME=kiloclaw-dev\n" : undefined;
        const raw = { kiloclawDir: "/k", userId: "44792035-0fb0-45e1-9115-ac6575f1ffa7" };
        const pinned = "FROM debian\nENV NODE_VERSION=22.13.1\nRUN npm install -g openclaw@2026.2.9 \\\n    && openclaw --version\n";
        it("defaults to the Dockerfile's pin, is overridden by config, and is absent without a pin", () => {
            assert.equal(resolveSettings(raw, files(pinned)).expectedNodeVersion, "22.13.1");
            assert.equal(resolveSettings({ ...raw, expectedNodeVersion: "v22.14.0" }, files(pinned)).expectedNodeVersion, "22.14.0");
            assert.equal(resolveSettings(raw, files(pinned.replace("ENV NODE_VERSION=22.13.1\n", ""))).expectedNodeVersion, undefined);
        });
        it("rejects an override that is not x.y.z", () => {
            assert.throws(
                () => resolveSettings({ ...raw, expectedNodeVersion: "22" }, files(pinned)),
                /kiloclaw:expectedNodeVersion "22" is not an exact x\.y\.z/,
            );
        });
    });

    it("lengthens both deadlines ×3 when the engine emulates the image's CPU, and only then", () => {
        assert.deepEqual(engineFacts("aarch64", "linux", "amd64", 60, 90), {
            architecture: "aarch64",
            imagePlatform: "linux/amd64",
            emulated: true,
            deadlineFactor: 3,
            startupDeadlineSeconds: 180,
            gatewayDeadlineSeconds: 270,
        });
        assert.equal(engineFacts("x86_64", "linux", "amd64", 60, 90).emulated, false);
        assert.equal(engineFacts("arm64", "linux", "arm64", 60, 90).gatewayDeadlineSeconds, 90);
    });

    it("compares Node versions with or without the v", () => {
        assert.ok(sameNodeVersion("v22.13.1\n", "22.13.1"));
        assert.ok(!sameNodeVersion("v22.13.10", "22.13.1"));
    });

    it("picks doctor's warnings out of its output", () => {
        const out = "OpenClaw doctor 2026.2.9\n⚠ Config: missing\nSessions: no session directories found\nGateway: not running\nDoctor complete";
        assert.deepEqual(doctorWarnings(out), ["⚠ Config: missing", "Sessions: no session directories found", "Gateway: not running"]);
    });

    // Doctor frames its notes (clack) and wraps them at the terminal width.
    const framed = [
        "┌  OpenClaw doctor 2026.3.13",
        "│",
        "◇  State ───────────────────────────────╮",
        "│                                        │",
        "│  - Sessions: no session directories    │",
        "│    found under /root/.openclaw/agents  │",
        "│                                        │",
        "├────────────────────────────────────────╯",
        "◇  Security ────────────────────────────╮",
        "│  - No channel security warnings detected.  │",
        "├────────────────────────────────────────╯",
        "◇  Config ──────────────────────────────╮",
        "│  Config invalid; doctor will run with  │",
        "│    best-effort config.                 │",
        "│  - gateway.bind: Invalid enum value    │",
        "├────────────────────────────────────────╯",
        "└  Doctor complete: 0 errors",
    ].join("\n");

    it("shows doctor's warnings as whole lines, and only real ones", () => {
        assert.ok(doctorItems(framed).includes("- Sessions: no session directories found under /root/.openclaw/agents"));
        assert.deepEqual(doctorWarnings(framed), [
            "- Sessions: no session directories found under /root/.openclaw/agents",
            "Config invalid; doctor will run with best-effort config.",
            "- gateway.bind: Invalid enum value",
        ]);
        assert.ok(!doctorWarnings(framed).some((w) => /No channel security warnings|0 errors/.test(w)), "reports of nothing are not warnings");
    });

    it('hears "Config invalid" from doctor (which exits 0 on it)', () => {
        assert.deepEqual(doctorConfigInvalid(framed), ["Config invalid; doctor will run with best-effort config."]);
        assert.deepEqual(doctorConfigInvalid(framed.replace(/Config invalid.*\n.*best-effort config\..*\n/, "")), []);
    });

    it("tells dead from slow: what listens on the gateway's port inside the container", () => {
        const tcp = [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "   0: 00000000:4965 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
            "   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1",
            "   2: 0100007F:4965 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1",
        ].join("\n");
        assert.deepEqual(listeningSockets(tcp), [
            { address: "0.0.0.0", port: 18789 },
            { address: "127.0.0.1", port: 3000 },
        ]);
        assert.match(describeListeners(listeningSockets(tcp), 18789), /^something listens on 18789 .* \(0\.0\.0\.0\) but did not answer/);
        assert.match(describeListeners([{ address: "127.0.0.1", port: 18789 }], 18789), /loopback only \(127\.0\.0\.1\)/);
        assert.equal(
            describeListeners([{ address: "127.0.0.1", port: 3000 }], 18789),
            "nothing listens on 18789 inside the container (listening inside: 3000)",
        );
        assert.match(describeListeners([], 18789), /nothing listens on 18789 .*nothing listens inside at all/);
        assert.match(describeListeners(undefined, 18789), /could not tell/);
    });

    it("bounds the whole run by the gateway's deadline, doctor's after it, and setup", () => {
        assert.equal(overallDeadlineSeconds(60, 90), 180);
        assert.equal(overallDeadlineSeconds(3, 2), 35);
        assert.equal(overallDeadlineSeconds(60, 90, 120), 240);
    });

    it("reads only the gateway port and the model base URL from the runtime config", () => {
        const text = JSON.stringify({
            gateway: { port: 18789, auth: { token: "test-token" } },
            models: { providers: { kilocode: { baseUrl: "https://api.kilo.ai/api/openrouter/", apiKey: "test-key" } } },
        });
        assert.deepEqual(readRuntimeConfig(text), { gatewayPort: 18789, modelBaseUrl: "https://api.kilo.ai/api/openrouter/" });
        assert.throws(() => readRuntimeConfig("Starting with empty config\n{"), SyntaxError);
        assert.throws(() => readRuntimeConfig("[1]"), /not a JSON object/);
    });

    it("reads the start script's shell from its shebang", () => {
        assert.equal(shebangShell("#!/bin/bash\nset -e"), "bash");
        assert.equal(shebangShell("#!/usr/bin/env sh\n"), "sh");
        assert.equal(shebangShell("#!/usr/bin/env node\n"), undefined);
        assert.equal(shebangShell("echo no shebang"), undefined);
    });

    it("redacts the placeholder token and key from text read inside a container", () => {
        assert.equal(redact('{"auth":{"token":"test-token"},"apiKey":"test-key"'), '{"auth":{"token":"***"},"apiKey":"***"');
    });

    it("finds the file in the tar stream `docker cp … -` prints", () => {
        const header = Buffer.alloc(512);
        header.write("openclaw.json", 0, "latin1");
        header.write("00000000002\0", 124, "latin1");
        header.write("0", 156, "latin1");
        const body = Buffer.alloc(512);
        body.write("{}");
        const file = firstFileInTar(Buffer.concat([header, body, Buffer.alloc(1024)]));
        assert.deepEqual({ name: file?.name, content: file?.content.toString() }, { name: "openclaw.json", content: "{}" });
        assert.equal(firstFileInTar(Buffer.alloc(1024)), undefined);
    });

    it("prints sizes as docker does, with the change's sign", () => {
        assert.equal(formatBytes(1_534_000_000), "1.53GB");
        assert.equal(formatBytes(999), "999B");
        assert.equal(formatChange(-12_300_000), "-12.3MB");
        assert.equal(formatChange(2_000), "+2.00kB");
        assert.equal(formatChange(0), "no change");
    });

    describe("report", () => {
        const engine = engineFacts("aarch64", "linux", "amd64", 60, 90);
        const report: ValidationReport = {
            image: "kiloclaw:dev-1",
            imageId: "sha256:1",
            expectedOpenclawVersion: "2026.2.9",
            expectedNodeVersion: "22.13.1",
            passed: false,
            totalMs: 21_400,
            checks: CHECK_NAMES.map((name) => ({
                name,
                status: name === "gateway" ? "failed" : name === "runtime config" ? "skipped" : "passed",
                atMs: 2_500,
                summary: name === "gateway" ? "no HTTP 2xx" : "ok",
                details: name === "openclaw doctor" ? ["⚠ Gateway: not running"] : [],
                nextSteps: [],
            })),
            engine,
            imageSizeBytes: 1_500_000_000,
            previousImage: "kiloclaw:dev-0",
            previousImageSizeBytes: 1_400_000_000,
            imageSizeChangeBytes: 100_000_000,
            sweptContainers: ["abc (pid 12)"],
            stopped: "the gateway check failed",
            runId: "kiloclaw-smoke-1",
            doctorMode: "exec",
        };

        it("has one line per check with result and time, the emulation note and the verdict", () => {
            const lines = formatReport(report);
            assert.match(lines[0], /^image validation: kiloclaw:dev-1 \(expecting openclaw 2026\.2\.9, node 22\.13\.1\)$/);
            assert.match(lines[1], /runs emulated, so the deadlines are ×3 \(checks 180s, gateway 270s\)/);
            assert.match(lines[2], /removed leftover container abc \(pid 12\) of an earlier run/);
            assert.equal(lines.filter((l) => /^ {2}[✔✘–] /.test(l)).length, CHECK_NAMES.length);
            assert.ok(lines.includes("  ✘ gateway             2.5s  no HTTP 2xx"), lines.join("\n"));
            assert.ok(lines.includes("  – runtime config            ok"));
            assert.ok(lines.includes("      ! ⚠ Gateway: not running"));
            assert.match(lines[lines.length - 1], /^FAILED: gateway \(after 21\.4s; nothing was pushed\)$/);
        });

        it("names the checks that did not finish, and an interrupt as the reason when nothing failed", () => {
            const cut = {
                ...report,
                stopped: "interrupted (SIGTERM)",
                checks: report.checks.map((c) =>
                    c.name === "gateway" || c.name === "runtime config"
                        ? { ...c, status: "skipped" as const, summary: `did not finish: interrupted (SIGTERM)` }
                        : c,
                ),
            };
            assert.equal(
                formatReport(cut).at(-1),
                "STOPPED: interrupted (SIGTERM) (after 21.4s; did not finish: gateway, runtime config; nothing was pushed)",
            );
        });

        it("round-trips the summary the component turns into outputs", () => {
            const stdout = [...formatReport(report), summaryLine(report), ""].join("\n");
            const parsed = parseValidationOutput(stdout);
            assert.equal(parsed.report, formatReport(report).join("\n"));
            assert.deepEqual(parsed.summary, {
                passed: false,
                totalMs: 21_400,
                imageSizeBytes: 1_500_000_000,
                previousImage: "kiloclaw:dev-0",
                imageSizeChangeBytes: 100_000_000,
            });
            assert.deepEqual(parseValidationOutput("no summary\n"), { report: "no summary" });
        });
    });

    describe("next steps", () => {
        const FEB26 = ["/usr/local/bin/start-openclaw.sh"];
        const NEWEST = ["node", "/usr/local/bin/kiloclaw-controller.js"];
        const ctx = (tools: string[], command = FEB26, scriptShell?: "bash" | "sh") => ({
            image: "kiloclaw:t",
            tools: new Set(tools),
            engine: engineFacts("x86_64", "linux", "amd64", 60, 90),
            expectedOpenclawVersion: "2026.2.9",
            command,
            scriptShell,
            doctorMode: "exec" as const,
        });
        it("start from the image's own command: a start script, or the newest shape's controller", () => {
            const feb26 = nextSteps("startup", ctx(["bash"], FEB26, "bash")).join("\n");
            assert.match(feb26, /--entrypoint bash kiloclaw:t -x \/usr\/local\/bin\/start-openclaw\.sh$/m);
            const newest = nextSteps("startup", ctx(["bash"], NEWEST)).join("\n");
            assert.match(newest, /run the image's own command \(node \/usr\/local\/bin\/kiloclaw-controller\.js\)/);
            assert.match(newest, /docker run --rm .* kiloclaw:t$/m);
            for (const check of ["startup", "gateway", "runtime config", "openclaw doctor"] as const) {
                const text = nextSteps(check, ctx(["bash", "sh", "curl", "cat"], NEWEST)).join("\n");
                assert.doesNotMatch(text, /start-openclaw/, `${check}: names a script the newest image does not have`);
            }
            assert.match(nextSteps("runtime config", ctx(["cat"], NEWEST)).join("\n"), /docker exec kiloclaw-config openclaw doctor/);
        });
        it("use only commands the image has (the real image: bash and curl, no ps)", () => {
            const real = nextSteps("gateway", ctx(["bash", "sh", "curl", "cat"])).join("\n");
            assert.match(real, /docker exec kiloclaw-test curl http:\/\/localhost:18789\//);
            assert.doesNotMatch(real, /ps aux/);
            const busybox = nextSteps("gateway", ctx(["sh", "ps", "wget", "cat"])).join("\n");
            assert.match(busybox, /ps aux \| grep openclaw/);
            assert.match(busybox, /wget -qO- http:\/\/localhost:18789\//);
            assert.match(
                nextSteps("startup", ctx(["bash"], FEB26, "bash")).join("\n"),
                /--entrypoint bash kiloclaw:t -x \/usr\/local\/bin\/start-openclaw\.sh/,
            );
            const noShell = nextSteps("startup", ctx([])).join("\n");
            assert.doesNotMatch(noShell, /-x \/usr\/local\/bin/);
            assert.match(noShell, /docker logs -f kiloclaw-test/);
            assert.match(
                nextSteps("runtime config", ctx([])).join("\n"),
                /docker cp kiloclaw-config:\/root\/\.openclaw\/openclaw\.json - \| tar -xO/,
            );
        });
    });
});
