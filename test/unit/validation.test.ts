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
    doctorWarnings,
    engineFacts,
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
        const ctx = (tools: string[]) => ({
            image: "kiloclaw:t",
            tools: new Set(tools),
            engine: engineFacts("x86_64", "linux", "amd64", 60, 90),
            expectedOpenclawVersion: "2026.2.9",
        });
        it("use only commands the image has (the real image: bash and curl, no ps)", () => {
            const real = nextSteps("gateway", ctx(["bash", "sh", "curl", "cat"])).join("\n");
            assert.match(real, /docker exec kiloclaw-test curl http:\/\/localhost:18789\//);
            assert.doesNotMatch(real, /ps aux/);
            const busybox = nextSteps("gateway", ctx(["sh", "ps", "wget", "cat"])).join("\n");
            assert.match(busybox, /ps aux \| grep openclaw/);
            assert.match(busybox, /wget -qO- http:\/\/localhost:18789\//);
            assert.match(nextSteps("startup", ctx(["bash"])).join("\n"), /bash -x \/usr\/local\/bin\/start-openclaw\.sh/);
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
