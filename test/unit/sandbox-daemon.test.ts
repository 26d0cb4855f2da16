// The sandbox daemon serves every rollout on the machine: a child process that closes its stdin early
// or is killed, or any error nobody handled, must not take the emulators down with it.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { docker } from "../../sandbox/emulators/docker-machines";
import { scratchDir } from "../scratch";

const REPO = path.join(__dirname, "..", "..");

/** A `docker` on PATH that runs `script` instead of the real CLI. */
function fakeDocker(script: string): NodeJS.ProcessEnv {
    const dir = scratchDir("kiloclaw-fake-docker-");
    fs.writeFileSync(path.join(dir, "docker"), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return { ...process.env, PATH: `${dir}:${process.env.PATH}` };
}

describe("the sandbox daemon survives its children", function () {
    // More than a pipe's buffer: the write is still going when the child is gone, so it fails with EPIPE.
    const bigInput = "x".repeat(4 * 1024 * 1024);

    it("a docker child that exits without reading its stdin: its exit code, no unhandled EPIPE", async () => {
        const r = await docker(["login"], { env: fakeDocker("exit 3"), stdin: bigInput });
        assert.equal(r.code, 3);
    });

    it("a docker child killed while its stdin is written: -1 (the timeout's kill), no unhandled EPIPE", async () => {
        const r = await docker(["pull"], { env: fakeDocker("exec sleep 30"), stdin: bigInput, timeoutMs: 200 });
        assert.equal(r.code, -1);
    });

    it("the daemon's guard logs an error nobody handled and keeps serving", () => {
        const program = [
            "require('./sandbox/daemon').keepServingOnErrors((line) => console.log(line.split('\\n')[0]));",
            "setTimeout(() => { throw new Error('boom from a stray callback'); }, 0);",
            "setTimeout(() => Promise.reject(new Error('a lost rejection')), 0);",
            "setTimeout(() => console.log('still serving'), 100);",
        ].join("\n");
        const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", program], { cwd: REPO, encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /ignored an unhandled error: Error: boom from a stray callback/);
        assert.match(r.stdout, /ignored an unhandled rejection: Error: a lost rejection/);
        assert.match(r.stdout, /still serving/);
    });
});
