import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import { parseDevVars, updateDevVars } from "../../lib/devVars";
import { flyAuthorizationHeader } from "../../lib/flyAuth";
import { decodeInstanceId, devFlyAppName, sandboxIdFor } from "../../lib/identity";
import { findOpenclawPin, parseOpenclawPin } from "../../lib/openclawPin";

describe("openclaw pin parsing", () => {
    it("reads the version from the npm install -g line, like the worker's CI sed", () => {
        const text = "FROM debian:bookworm-slim\n# openclaw@1.0.0 in a comment\nRUN npm install -g openclaw@2026.2.9 && openclaw --version\n";
        const pin = parseOpenclawPin(text);
        assert.equal(pin.version, "2026.2.9");
        assert.equal(pin.lineNumber, 3);
        const sed = execFileSync("sed", ["-n", "s/.*openclaw@\\([0-9]*\\.[0-9]*\\.[0-9]*\\).*/\\1/p"], { input: text.split("\n")[2] })
            .toString()
            .trim();
        assert.equal(pin.version, sed);
    });

    it("rejects latest, ranges and a missing version, naming the line", () => {
        for (const spec of ["openclaw@latest", "openclaw@^2026.2.9", "openclaw@~2026.2", "openclaw"]) {
            const text = `FROM x\n\nRUN npm install -g ${spec} && true\n`;
            assert.throws(() => parseOpenclawPin(text, "kiloclaw/Dockerfile"), /kiloclaw\/Dockerfile:3: .*(not an exact version|without a version)/);
        }
    });

    it("rejects a Dockerfile with no pin at all", () => {
        assert.equal(findOpenclawPin("FROM x\nRUN echo hi\n"), undefined);
        assert.throws(() => parseOpenclawPin("FROM x\n"), /no `npm install -g openclaw@x.y.z` line/);
    });
});

describe("identity", () => {
    it("derives the dev app name as dev- + sha256(userId)[:20] (the runbook's shasum pipeline)", () => {
        const userId = "44792035-0fb0-45e1-9115-ac6575f1ffa7";
        const shasum = execFileSync("sh", ["-c", 'printf %s "$1" | sha256sum | cut -c1-20', "sh", userId]).toString().trim();
        assert.equal(devFlyAppName(userId), `dev-${shasum}`);
        assert.equal(devFlyAppName(userId), `dev-${crypto.createHash("sha256").update(userId).digest("hex").slice(0, 20)}`);
    });

    it("decodes the Cloud UI's Instance ID (the runbook's example) like base64 -d", () => {
        const instanceId = "NDQ3OTIwMzUtMGZiMC00NWUxLTkxMTUtYWM2NTc1ZjFmZmE3";
        const viaShell = execFileSync("sh", ["-c", 'echo "$1" | base64 -d', "sh", instanceId]).toString();
        assert.equal(decodeInstanceId(instanceId), viaShell);
        assert.equal(decodeInstanceId(instanceId), "44792035-0fb0-45e1-9115-ac6575f1ffa7");
    });

    it("refuses an Instance ID that is not base64 of a userId", () => {
        assert.throws(() => decodeInstanceId("not base64!"), /not base64/);
        assert.throws(() => decodeInstanceId(""), /not base64/);
        assert.throws(() => decodeInstanceId(Buffer.from([0xff, 0x00, 0x01]).toString("base64")), /does not decode/);
    });

    it("computes the sandboxId as base64url of the userId", () => {
        assert.equal(sandboxIdFor("dev@kilocode.ai"), Buffer.from("dev@kilocode.ai").toString("base64url"));
    });
});

describe(".dev.vars editing", () => {
    const original = [
        "# KiloClaw worker settings",
        "INTERNAL_API_SECRET=abc",
        "",
        "# image",
        "FLY_IMAGE_TAG=dev-1771448521",
        "OPENCLAW_VERSION=2026.2.9 # keep in sync",
        'CUSTOM_THING="quoted value"',
        "",
    ].join("\n");

    it("replaces values in place and keeps every other line and comment", () => {
        const next = updateDevVars(original, { FLY_IMAGE_TAG: "dev-abcdef012345", OPENCLAW_VERSION: "2026.2.22" });
        const lines = next.split("\n");
        assert.equal(lines[0], "# KiloClaw worker settings");
        assert.equal(lines[3], "# image");
        assert.equal(lines[4], "FLY_IMAGE_TAG=dev-abcdef012345");
        assert.equal(lines[5], "OPENCLAW_VERSION=2026.2.22 # keep in sync");
        const vars = parseDevVars(next);
        assert.equal(vars.INTERNAL_API_SECRET, "abc");
        assert.equal(vars.CUSTOM_THING, "quoted value");
        assert.equal(lines.length, original.split("\n").length);
    });

    it("appends missing keys and leaves commented-out ones alone", () => {
        const text = "# FLY_IMAGE_TAG=old\nWORKER_ENV=development";
        const next = updateDevVars(text, { FLY_IMAGE_TAG: "dev-1", OPENCLAW_VERSION: "1.2.3" });
        assert.equal(next, "# FLY_IMAGE_TAG=old\nWORKER_ENV=development\nFLY_IMAGE_TAG=dev-1\nOPENCLAW_VERSION=1.2.3\n");
    });

    it("keeps CRLF line endings and is a no-op when values already match", () => {
        const crlf = "A=1\r\nFLY_IMAGE_TAG=dev-1\r\n";
        assert.equal(updateDevVars(crlf, { FLY_IMAGE_TAG: "dev-1" }), crlf);
        assert.equal(updateDevVars(crlf, { FLY_IMAGE_TAG: "dev-2" }), "A=1\r\nFLY_IMAGE_TAG=dev-2\r\n");
    });
});

describe("Fly token header rule", () => {
    it("sends macaroons as FlyV1, classic tokens as Bearer, and schemed tokens as they are", () => {
        assert.equal(flyAuthorizationHeader("fm2_lJPECAAAAAAAA"), "FlyV1 fm2_lJPECAAAAAAAA");
        assert.equal(flyAuthorizationHeader("fm1r_abc,fm2_def"), "FlyV1 fm1r_abc,fm2_def");
        assert.equal(flyAuthorizationHeader("fm1a_x"), "FlyV1 fm1a_x");
        assert.equal(flyAuthorizationHeader("classic-token"), "Bearer classic-token");
        assert.equal(flyAuthorizationHeader("FlyV1 fm2_x"), "FlyV1 fm2_x");
        assert.equal(flyAuthorizationHeader("Bearer abc"), "Bearer abc");
        assert.equal(flyAuthorizationHeader("  classic\n"), "Bearer classic");
    });
});
