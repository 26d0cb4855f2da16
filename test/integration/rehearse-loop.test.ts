// `npm run rehearse` then `npm run rehearse -- --destroy`, N times in a row on one engine; every destroy must
// pass and leave nothing that carries the rehearsal's identity. Long (about 1-2 minutes a round), so it runs
// only when asked:  REHEARSE_DESTROY_LOOP=20 npx mocha --no-config -r ts-node/register/transpile-only \
//   --timeout 0 test/integration/rehearse-loop.test.ts
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { assertDockerRunning, freePort, run, RunResult } from "../../sandbox/docker";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";

const ROUNDS = Number(process.env.REHEARSE_DESTROY_LOOP ?? 0);

describe("rehearse then --destroy, many times in a row", function () {
    this.timeout(0);
    let work: string;
    let env: Record<string, string>;
    const instance = `t${randomBytes(5).toString("hex")}`;

    before(async function () {
        if (!(ROUNDS > 0)) {
            console.log("    SKIPPED: set REHEARSE_DESTROY_LOOP=<rounds> (e.g. 20) to run the loop");
            this.skip();
        }
        assertDockerRunning();
        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-rehearse-loop-"));
        env = {
            SANDBOX_DIR: path.join(work, "sandbox"),
            SANDBOX_REGISTRY_PORT: String(await freePort()),
            SANDBOX_FLY_PORT: String(await freePort()),
            SANDBOX_WORKER_PORT: String(await freePort()),
            PULUMI_HOME: path.join(work, "pulumi-home"),
        };
        fs.mkdirSync(env.SANDBOX_DIR, { recursive: true });
        fs.writeFileSync(path.join(env.SANDBOX_DIR, "instance-id"), `${instance}\n`);
    });

    after(() => {
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it(`passes every round (REHEARSE_DESTROY_LOOP=${ROUNDS})`, async () => {
        const registry = `127.0.0.1:${env.SANDBOX_REGISTRY_PORT}/`;
        const leftovers = async () => {
            const images = (await run("docker", ["images", "--format", "{{.Repository}}:{{.Tag}}"])).stdout.split("\n");
            const containers = (await run("docker", ["ps", "-aq", "--filter", `label=${INSTANCE_LABEL}=${instance}`])).stdout.split("\n");
            return [
                ...images.filter((ref) => ref.startsWith(`kiloclaw-kiloclaw-rollout-sandbox-${instance}:`) || ref.startsWith(registry)),
                ...containers.filter(Boolean),
            ];
        };
        const fail = (r: RunResult, what: string, round: number) =>
            assert.fail(`round ${round}: ${what} failed (exit ${r.code}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
        let passed = 0;
        for (let round = 1; round <= ROUNDS; round++) {
            const t0 = Date.now();
            const up = await run("npm", ["run", "-s", "rehearse"], { env });
            if (up.code !== 0) fail(up, "npm run rehearse", round);
            const down = await run("npm", ["run", "-s", "rehearse", "--", "--destroy"], { env });
            if (down.code !== 0) fail(down, "npm run rehearse -- --destroy", round);
            assert.deepEqual(await leftovers(), [], `round ${round}: the destroy left these`);
            passed++;
            console.log(`    round ${round}/${ROUNDS}: up + --destroy passed (${Math.round((Date.now() - t0) / 1000)} s)`);
        }
        console.log(`    rehearse -- --destroy: ${passed} of ${ROUNDS} in a row`);
        assert.equal(passed, ROUNDS);
    });
});
