// The whole pack over what the real program registers (under mocks), for a good
// configuration and for a bad one.
import * as assert from "node:assert/strict";
import { PushEnvironment, RESOURCE_TYPES, SmokeTestEnvironment } from "../../lib/contract";
import { devFlyAppName } from "../../lib/identity";
import { runPack } from "../policy-harness";
import { fakeCheckout, policyResources, resourcesOfType, runProgram } from "../program-harness";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c08";

const DEV_VARS = (extra: string[] = []) =>
    [
        "INTERNAL_API_SECRET=policy-internal",
        "FLY_API_TOKEN=policy-fly",
        "GATEWAY_TOKEN_SECRET=gw",
        "WORKER_ENV=development",
        "FLY_REGISTRY_APP=kiloclaw-dev",
        ...extra,
        "",
    ].join("\n");

describe("the policy pack over the mocked program", function () {
    this.timeout(120_000);

    it("finds nothing wrong with a good configuration", async () => {
        const checkout = fakeCheckout({
            devVars: DEV_VARS([
                "KILOCODE_API_BASE_URL=https://abc123.ngrok-free.dev/api/openrouter/",
                `OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000,https://${devFlyAppName(USER)}.fly.dev`,
            ]),
            envLocal: "DATABASE_URL=postgres://localhost/dev\n",
        });
        const run = await runProgram({ config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER } });
        assert.equal(run.error, undefined, run.error);
        const violations = await runPack(policyResources(run));
        assert.deepEqual(violations, []);
    });

    it("sees the scripts' environment under the names the contract gives them (the pack reads them)", async () => {
        const run = await runProgram({ config: { "kiloclaw:kiloclawDir": fakeCheckout().kiloclawDir, "kiloclaw:userId": USER } });
        assert.equal(run.error, undefined, run.error);
        const smoke: Array<keyof SmokeTestEnvironment> = [
            "IMAGE",
            "EXPECTED_OPENCLAW_VERSION",
            "STARTUP_DEADLINE_SECONDS",
            "GATEWAY_DEADLINE_SECONDS",
        ];
        const push: Array<keyof PushEnvironment> = ["SOURCE_IMAGE", "TARGET_IMAGE", "REGISTRY_SERVER", "REGISTRY_USERNAME"];
        const environments = resourcesOfType(run, RESOURCE_TYPES.command).map((c) => Object.keys(c.inputs.environment ?? {}));
        for (const names of [smoke, push]) {
            assert.ok(
                environments.some((env) => names.every((name) => env.includes(name))),
                `no Command sets ${names.join(", ")}: ${JSON.stringify(environments)}`,
            );
        }
    });

    it("reports the expected violations for a bad one", async () => {
        const checkout = fakeCheckout({
            devVars: DEV_VARS([
                "DEV_MODE=true",
                "KILOCODE_API_BASE_URL=https://abc123.ngrok-free.dev/api",
                "OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000",
            ]),
            envLocal: "NEXTAUTH_SECRET=override\nOPENROUTER_API_KEY=sk-or-override\n",
        });
        // Push to one app while the worker pulls from another (push-dev.sh's trap). lib/config.ts refuses this
        // as a config error first; the policy is the second line, so the loaded config is bent past that check.
        const config = { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER };
        const run = await runProgram({ config, adjust: (c) => ({ ...c, registryApp: "kiloclaw-other" }) });
        assert.equal(run.error, undefined, run.error);
        const violations = await runPack(policyResources(run));
        const byPolicy = (name: string) => violations.filter((v) => v.policy === name);
        assert.deepEqual([...new Set(violations.map((v) => v.policy))].sort(), [
            "allowed-origins-include-app",
            "dev-mode-matches-user",
            "no-secret-overrides-in-env-local",
            "registry-app-matches-worker",
            "tunnel-base-url",
        ]);
        assert.match(byPolicy("registry-app-matches-worker")[0].message, /kiloclaw-other/);
        assert.equal(byPolicy("registry-app-matches-worker")[0].level, "mandatory");
        assert.match(byPolicy("no-secret-overrides-in-env-local")[0].message, /NEXTAUTH_SECRET/);
        assert.match(byPolicy("allowed-origins-include-app")[0].message, new RegExp(`https://${devFlyAppName(USER)}\\.fly\\.dev`));
        assert.equal(byPolicy("dev-mode-matches-user")[0].level, "advisory");
        assert.ok(violations.every((v) => !v.message.includes("sk-or-override") && !v.message.includes("policy-internal")));
    });
});
