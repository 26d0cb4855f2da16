// The preflight ("Verify services") against the emulators on 127.0.0.1: each service
// that is down or refuses its credential is listed with its fix; secrets never appear.
import * as assert from "node:assert/strict";
import { freePort } from "../../sandbox/docker";
import { closeStage, FLY_TOKEN, INTERNAL_KEY, REGISTRY_APP, Stage, startStage } from "../../sandbox/stage";
import { PreflightTarget, preflightReport, verifyServices } from "../../preflight";

describe("preflight: the runbook's Verify services", function () {
    this.timeout(60_000);
    let stage: Stage;
    let target: PreflightTarget;

    before(async () => {
        stage = await startStage();
        target = {
            workerUrl: stage.workerUrl,
            internalApiKey: INTERNAL_KEY,
            userId: stage.userId,
            checkDocker: false,
            fly: { apiUrl: stage.fly.url, app: REGISTRY_APP, token: FLY_TOKEN },
        };
    });
    after(() => closeStage(stage));

    it("passes when the worker accepts the key and Fly the token, with one request each", async () => {
        const workerBefore = stage.worker.requests.length;
        const flyBefore = stage.fly.requests.length;
        const checks = await verifyServices(target);
        assert.deepEqual(
            checks.map((c) => [c.service, c.ok]),
            [
                ["worker", true],
                ["fly", true],
            ],
        );
        assert.equal(preflightReport(checks), undefined);
        assert.equal(stage.worker.requests.length - workerBefore, 1);
        assert.equal(stage.fly.requests.length - flyBefore, 1);
    });

    it("lists a worker that was never started with `pnpm start`, and still checks Fly", async () => {
        const checks = await verifyServices({ ...target, workerUrl: `http://127.0.0.1:${await freePort()}` });
        assert.deepEqual(
            checks.map((c) => [c.service, c.ok]),
            [
                ["worker", false],
                ["fly", true],
            ],
        );
        const report = preflightReport(checks)!;
        assert.match(report, /1 of 2 checks failed; nothing was built/);
        assert.match(report, /FAIL {2}worker: no answer from http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
        assert.match(report, /pnpm start/);
    });

    it("lists a refused internal key and a refused Fly token together, without either value", async () => {
        const checks = await verifyServices({
            ...target,
            internalApiKey: "wrong-internal-key",
            fly: { ...target.fly!, token: "fm2_wrong-fly-token" },
        });
        assert.deepEqual(
            checks.map((c) => c.ok),
            [false, false],
        );
        const report = preflightReport(checks)!;
        assert.match(report, /refused the internal API key \(403\)/);
        assert.match(report, /pulumi config set --secret kiloclaw:internalApiKey/);
        assert.match(report, /the Fly API refused the token \(401\)/);
        assert.match(report, /fly tokens deploy --app /);
        for (const secret of ["wrong-internal-key", "fm2_wrong-fly-token", INTERNAL_KEY, FLY_TOKEN])
            assert.ok(!report.includes(secret), "a secret is in the report");
    });

    it("in build mode, lists a Docker engine that does not answer", async () => {
        const saved = process.env.DOCKER_HOST;
        process.env.DOCKER_HOST = `tcp://127.0.0.1:${await freePort()}`;
        try {
            const checks = await verifyServices({ ...target, checkDocker: true, fly: undefined });
            assert.deepEqual(
                checks.map((c) => [c.service, c.ok]),
                [
                    ["worker", true],
                    ["docker", false],
                ],
            );
            assert.match(preflightReport(checks)!, /FAIL {2}docker: .*\n\s+fix: start Docker/);
        } finally {
            if (saved === undefined) delete process.env.DOCKER_HOST;
            else process.env.DOCKER_HOST = saved;
        }
    });
});
