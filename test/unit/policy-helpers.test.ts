// The pure helpers behind the policies, and the harness's engine-like behaviour.
import * as assert from "node:assert/strict";

import { StackValidationPolicy, unknownCheckingProxy } from "@pulumi/policy";
import {
    compileExtraPatterns,
    describePinProblem,
    expectedImagePrefix,
    findDestroyCalls,
    findSecretShapes,
    flyMachineRunEnv,
    isTunnelBaseUrl,
    looksLikeRandomSecret,
    parseAllowedOrigins,
    readArray,
    readEntries,
    readPath,
    readString,
    suggestTunnelBaseUrl,
    UNKNOWN,
} from "../../policy/policies";
import { goodStack, PREVIEW_UNKNOWN_STRING, resourceArgs, runPack } from "../policy-harness";
import { secretEnvelope, unwrapSecrets } from "../program-harness";

describe("policy helpers", () => {
    it("reads through the engine's unknown-checking proxy without throwing", () => {
        const props = unknownCheckingProxy({
            a: { b: PREVIEW_UNKNOWN_STRING, c: "known" },
            list: ["x", PREVIEW_UNKNOWN_STRING],
            env: { K: "v", U: PREVIEW_UNKNOWN_STRING },
        });
        assert.equal(readPath(props, "a", "b"), UNKNOWN);
        assert.equal(readPath(props, "a", "b", "deeper"), UNKNOWN);
        assert.equal(readString(props, "a", "c"), "known");
        assert.equal(readString(props, "missing", "c"), undefined);
        assert.deepEqual(readArray(props, "list"), ["x", UNKNOWN]);
        assert.deepEqual(readEntries(props, "env"), [
            ["K", "v"],
            ["U", UNKNOWN],
        ]);
        assert.equal(readArray(props, "env"), undefined);
    });

    it("describes what is wrong with a pin", () => {
        assert.equal(describePinProblem("2026.2.9"), undefined);
        assert.match(describePinProblem(undefined)!, /without a version/);
        assert.match(describePinProblem("")!, /without a version/);
        assert.match(describePinProblem("LATEST")!, /openclaw@LATEST/);
        assert.match(describePinProblem("1.2.3 - 1.3.0")!, /range/);
        assert.match(describePinProblem("2026.2.9-beta.1")!, /not an exact x\.y\.z/);
    });

    it("builds the image prefix the worker pulls", () => {
        assert.equal(expectedImagePrefix("registry.fly.io", "kiloclaw-machines"), "registry.fly.io/kiloclaw-machines:");
        assert.equal(expectedImagePrefix("127.0.0.1:5000/", "app"), "127.0.0.1:5000/app:");
        assert.equal(expectedImagePrefix(undefined, "app"), "registry.fly.io/app:");
    });

    it("reads allowed origins and tunnel URLs", () => {
        assert.deepEqual(parseAllowedOrigins(" http://localhost:3000 ,, https://dev-x.fly.dev "), ["http://localhost:3000", "https://dev-x.fly.dev"]);
        assert.ok(isTunnelBaseUrl("https://abc.ngrok-free.dev/api/openrouter/"));
        assert.ok(isTunnelBaseUrl("https://localhost:8443/api/openrouter/"));
        assert.ok(!isTunnelBaseUrl("https://abc.ngrok-free.dev/api/openrouter"));
        assert.equal(suggestTunnelBaseUrl("http://user:pw@abc.ngrok-free.dev/x"), "https://abc.ngrok-free.dev/api/openrouter/");
        assert.equal(suggestTunnelBaseUrl("abc"), "https://<your-tunnel-host>/api/openrouter/");
    });

    it("tells random secrets from ordinary values", () => {
        assert.ok(looksLikeRandomSecret("a3F9kQ2mZ7xW1pL8vB4nR6tY0cH5jD2s"));
        assert.ok(looksLikeRandomSecret("0f3e9c1a2b4d6e8f0a1b2c3d4e5f6a7b"));
        for (const ordinary of [
            "registry.fly.io/kiloclaw-machines:dev-0123456789ab",
            "dev-0123456789abcdef0123",
            "development",
            "https://abc.ngrok-free.dev/api/openrouter/",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        ]) {
            assert.ok(!looksLikeRandomSecret(ordinary), ordinary);
        }
    });

    it("finds secret shapes without returning the values", () => {
        assert.deepEqual(findSecretShapes("bash /repo/scripts/push-image.sh"), []);
        assert.deepEqual(findSecretShapes("docker login --password=abc registry"), ["a password on the `docker login` command line (--password/-p)"]);
        assert.deepEqual(findSecretShapes("docker login -u x --password-stdin registry"), []);
        assert.deepEqual(findSecretShapes("export FLY_API_TOKEN='abc def'"), ["a literal value for the secret-named variable FLY_API_TOKEN"]);
        assert.deepEqual(findSecretShapes('DB_PASSWORD="$(cat pw)" run'), []);
        assert.deepEqual(findSecretShapes("curl -H 'Authorization: FlyV1 fm2_abcdefgh1234'"), ["a Fly token (fm1_/fm2_ macaroon)"]);
        const { regexes, errors } = compileExtraPatterns(["tok_[0-9]+", "/ABC/i", "[", 5]);
        assert.deepEqual(errors, [
            "extraSecretPatterns[2] is not a valid JavaScript regular expression",
            "extraSecretPatterns[3] is not a non-empty string",
        ]);
        assert.deepEqual(findSecretShapes("x tok_123 abc", regexes), ["a match of extraSecretPatterns[0]", "a match of extraSecretPatterns[1]"]);
    });

    it("finds destroy calls and leaves other fly and curl calls alone", () => {
        assert.deepEqual(findDestroyCalls("fly status --app a; fly logs --app a --no-tail; fly machine stop 1 -a a"), []);
        assert.deepEqual(findDestroyCalls("curl -X DELETE http://127.0.0.1:8795/api/other"), []);
        assert.deepEqual(findDestroyCalls("curl -X GET https://api.machines.dev/v1/apps/dev-a/machines"), []);
        assert.deepEqual(findDestroyCalls("wget --method=DELETE https://api.machines.dev/v1/apps/dev-a"), [
            "an HTTP DELETE against the Fly Machines API",
        ]);
        assert.deepEqual(findDestroyCalls("http DELETE https://api.machines.dev/v1/apps/dev-a/machines/1"), [
            "an HTTP DELETE against the Fly Machines API",
        ]);
        assert.deepEqual(findDestroyCalls("true && fly apps destroy dev-a -y || fly machine destroy 1 --force"), [
            "`fly apps destroy`",
            "`fly machine destroy`",
        ]);
    });

    it("reads `fly machine run` env flags", () => {
        assert.deepEqual(flyMachineRunEnv("fly machine run img --env A=1 -e B='two words' --env=C=\"3\" --region iad"), [
            ["A", "1"],
            ["B", "two words"],
            ["C", "3"],
        ]);
        assert.deepEqual(flyMachineRunEnv("docker run -e A=1 img"), []);
    });
});

describe("policy harness", () => {
    it("unwraps secret envelopes and proxies props like the engine", () => {
        const wrapped = { a: secretEnvelope(["s"]) };
        assert.deepEqual(unwrapSecrets(wrapped), { a: ["s"] });
        const args = resourceArgs({ type: "t:m:R", name: "r", props: { x: PREVIEW_UNKNOWN_STRING } });
        assert.equal(args.urn, "urn:pulumi:test::kiloclaw-rollout::t:m:R::r");
        assert.throws(() => args.props.x, /can't be known during preview/);
    });

    it("reports a policy that trips over an unknown as advisory, like the engine", async () => {
        const careless: StackValidationPolicy = {
            name: "careless",
            description: "reads without care",
            enforcementLevel: "mandatory",
            validateStack: (args) => {
                for (const r of args.resources) void r.props.build?.platform;
            },
        };
        const stack = goodStack();
        stack.push({ type: "docker:index/image:Image", name: "other", props: { build: { platform: PREVIEW_UNKNOWN_STRING } } });
        const found = await runPack(stack, undefined, [careless]);
        assert.equal(found.length, 1);
        assert.equal(found[0].level, "advisory");
        assert.match(found[0].message, /^can't run policy 'careless' during preview: string value at \.build\.platform/);
    });
});
