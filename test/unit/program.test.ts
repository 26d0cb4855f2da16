import * as assert from "node:assert/strict";
import * as path from "node:path";
import { devFlyAppName } from "../../lib/identity";
import {
    fakeCheckout,
    findResource as find,
    isSecretValue,
    parentOf,
    ProgramRun,
    RegisteredResource,
    runProgram,
    unwrapSecrets,
} from "../program-harness";

const USER = "44792035-0fb0-45e1-9115-ac6575f1ffa7";
const SECRETS = {
    "kiloclaw:internalApiKey": "internal-key-configured",
    "kiloclaw:flyApiToken": "fm2_configuredflytoken",
    "kiloclaw:kilocodeApiKey": "kilocode-key-configured",
};

/** Every plain (non-secret-wrapped) string anywhere in a value. */
function plainStrings(v: unknown, out: string[] = []): string[] {
    if (isSecretValue(v)) return out;
    if (typeof v === "string") out.push(v);
    else if (Array.isArray(v)) v.forEach((x) => plainStrings(x, out));
    else if (v && typeof v === "object") Object.values(v).forEach((x) => plainStrings(x, out));
    return out;
}

/** The build-mode steps, in the runbook's order. */
function buildSteps(run: ProgramRun) {
    const named = (n: string) => run.resources.find((r) => r.name === n)!;
    return {
        image: find(run, "docker:index/image:Image"),
        smoke: named("smoke-tests-smoke"),
        push: named("registry-push"),
        warm: find(run, "pulumi-nodejs:dynamic/kiloclaw:WarmMachine"),
        version: find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerImageVersion"),
        instance: find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance"),
    };
}

function assertDependsOn(r: RegisteredResource, on: RegisteredResource): void {
    assert.ok(r.dependencies.includes(on.urn), `${r.name} does not depend on ${on.name}: ${r.dependencies.join(", ")}`);
}

/** Whether `from` waits for `to`, directly or through other resources (what the engine schedules by). */
function reaches(run: ProgramRun, from: RegisteredResource, to: RegisteredResource): boolean {
    const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
    const seen = new Set<string>();
    const stack = [...from.dependencies];
    while (stack.length) {
        const urn = stack.pop()!;
        if (urn === to.urn) return true;
        if (seen.has(urn)) continue;
        seen.add(urn);
        stack.push(...(byUrn.get(urn)?.dependencies ?? []));
    }
    return false;
}

describe("the program under mocks", function () {
    this.timeout(120_000);
    let run: ProgramRun;
    let config: Record<string, string>;
    before(async () => {
        config = { "kiloclaw:kiloclawDir": fakeCheckout().kiloclawDir, "kiloclaw:userId": USER, ...SECRETS };
        run = await runProgram({ config, secretKeys: Object.keys(SECRETS), stack: "alice" });
        assert.equal(run.error, undefined, run.error);
    });

    it("registers one component per step, each owning its child, under kiloclaw:index types", () => {
        const components = run.resources.filter((r) => r.type.startsWith("kiloclaw:index:")).map((r) => r.type);
        assert.deepEqual(components.sort(), [
            "kiloclaw:index:ImageValidation",
            "kiloclaw:index:KiloclawImage",
            "kiloclaw:index:LocalImages",
            "kiloclaw:index:RegistryPush",
            "kiloclaw:index:WarmMachine",
            "kiloclaw:index:WorkerImageVersion",
            "kiloclaw:index:WorkerInstance",
        ]);
        const stack = find(run, "pulumi:pulumi:Stack");
        for (const component of run.resources.filter((r) => r.type.startsWith("kiloclaw:index:"))) {
            assert.equal(component.parent, stack.urn, `${component.type} is not a child of the stack`);
        }
        const parentType = (child: RegisteredResource) => parentOf(run, child)?.type;
        assert.equal(parentType(find(run, "docker:index/image:Image")), "kiloclaw:index:KiloclawImage");
        for (const t of ["WarmMachine", "WorkerImageVersion", "WorkerInstance"]) {
            assert.equal(parentType(find(run, `pulumi-nodejs:dynamic/kiloclaw:${t}`)), `kiloclaw:index:${t}`);
        }
        const commands = run.resources.filter((r) => r.type === "command:local:Command");
        assert.deepEqual(commands.map(parentType).sort(), ["kiloclaw:index:ImageValidation", "kiloclaw:index:RegistryPush"]);
    });

    it("pushes and warms beside the validation; the worker and the instance wait for both", () => {
        const steps = buildSteps(run);
        const { image, smoke, push, warm, version, instance } = steps;
        assertDependsOn(smoke, image);
        assertDependsOn(push, image);
        assertDependsOn(warm, push);
        assertDependsOn(version, warm);
        assertDependsOn(version, smoke);
        assertDependsOn(instance, version);
        // Beside: neither waits for the other, however indirectly.
        assert.ok(!reaches(run, push, smoke), "the push waits for the validation");
        assert.ok(!reaches(run, warm, smoke), "the warm-up waits for the validation");
        assert.ok(!reaches(run, smoke, push), "the validation waits for the push");
        assert.ok(reaches(run, instance, smoke), "the instance does not wait for the validation");
        // A failed validation names the tag that was pushed beside it (validation/cli.ts prints the note).
        assert.equal(unwrapSecrets(smoke.inputs).environment.PUSHED_BESIDE, unwrapSecrets(push.inputs).environment.TARGET_IMAGE);
    });

    it("kiloclaw:strictOrder true: image → validation → push → warm → worker version → instance, one after another", async () => {
        const strict = await runProgram({ config: { ...config, "kiloclaw:strictOrder": "true" }, secretKeys: Object.keys(SECRETS), stack: "alice" });
        assert.equal(strict.error, undefined, strict.error);
        const { image, smoke, push, warm, version, instance } = buildSteps(strict);
        assertDependsOn(smoke, image);
        assertDependsOn(push, smoke);
        assertDependsOn(warm, push);
        assertDependsOn(version, warm);
        assertDependsOn(instance, version);
        assert.ok(!reaches(strict, smoke, push), "the validation waits for the push");
        assert.equal(unwrapSecrets(smoke.inputs).environment.PUSHED_BESIDE, undefined);
        // Same resources as the default, only the edges differ; the preview's tree (one row per step's component, in the
        // order they register) reads the same in both modes.
        const components = (r: ProgramRun) => r.resources.filter((x) => !x.custom).map((x) => `${x.type}::${x.name}`);
        const all = (r: ProgramRun) => r.resources.map((x) => `${x.type}::${x.name}`).sort();
        assert.deepEqual(components(strict), components(run));
        assert.deepEqual(all(strict), all(run));
    });

    it("builds linux/amd64 locally under a content-hash tag, and pushes that tag to the registry app", () => {
        const image = find(run, "docker:index/image:Image");
        assert.equal(image.inputs.build.platform, "linux/amd64");
        assert.equal(image.inputs.skipPush, true);
        const tag = run.outputs.tag.value as string;
        assert.match(tag, /^dev-[0-9a-f]{12}$/);
        // Named by the stack's identity (project kiloclaw-rollout, stack alice): another stack never shares the name.
        assert.equal(image.inputs.imageName, `kiloclaw-kiloclaw-rollout-alice:${tag}`);
        // Its staged context lives under the stack's own directory, and goes with the image (LocalImages).
        assert.equal(path.basename(path.dirname(image.inputs.build.context)), "kiloclaw-rollout-alice");
        const local = find(run, "pulumi-nodejs:dynamic/kiloclaw:LocalImages");
        assert.deepEqual(local.inputs.images, [image.inputs.imageName]);
        assert.deepEqual(local.inputs.contexts, [image.inputs.build.context]);
        // The ref carries the digest the push printed (mock-outputs.ts): the warm machine pulls exactly what was pushed.
        const pushed = `registry.fly.io/kiloclaw-dev:${tag}@sha256:${"2".repeat(64)}`;
        assert.equal(run.outputs.imageRef.value, pushed);
        const warm = find(run, "pulumi-nodejs:dynamic/kiloclaw:WarmMachine");
        assert.equal(warm.inputs.image, pushed);
        assert.deepEqual(warm.inputs.env, { KILOCODE_API_KEY: "warm" });
        assert.equal(warm.inputs.owner, "kiloclaw-rollout.alice");
    });

    it("expects the Dockerfile's pin in the smoke test, .dev.vars and the instance", () => {
        const smoke = run.resources.find((r) => r.name === "smoke-tests-smoke")!;
        assert.equal(smoke.inputs.environment.EXPECTED_OPENCLAW_VERSION, "2026.2.9");
        const version = find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerImageVersion");
        assert.equal(version.inputs.openclawVersion, "2026.2.9");
        assert.equal(version.inputs.imageDigest, `sha256:${"2".repeat(64)}`);
        // The pin is a fact for the policy pack: the component's props and outputs, never its provider's input.
        const facts = find(run, "kiloclaw:index:WorkerImageVersion");
        assert.equal(facts.inputs.openclawPin, "2026.2.9");
        assert.equal(facts.outputs.openclawPin, "2026.2.9");
        assert.equal(version.inputs.openclawPin, undefined);
        const instance = find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance");
        assert.equal(instance.inputs.openclawVersion, "2026.2.9");
        assert.equal(instance.inputs.expectedFlyAppName, devFlyAppName(USER));
    });

    it("keeps every secret a secret (provider inputs, push stdin, the gateway token) and access out of the state", () => {
        const instance = find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance");
        const push = run.resources.find((r) => r.name === "registry-push")!;
        assert.ok(isSecretValue(instance.inputs.kilocodeApiKey));
        // The worker key is read from the stack config when a provider runs: no resource carries it, wrapped or not.
        const stored = JSON.stringify(run.resources.map((r) => unwrapSecrets(r.inputs)));
        assert.ok(!stored.includes(SECRETS["kiloclaw:internalApiKey"]), "the internal API key is stored in a resource");
        assert.ok(isSecretValue(push.inputs.stdin));
        assert.equal(unwrapSecrets(push.inputs.stdin), "fm2_configuredflytoken");
        assert.equal(run.outputs.gatewayToken.secret, true);
        const plain = run.resources.flatMap((r) => plainStrings(r.inputs));
        for (const value of Object.values(SECRETS)) {
            assert.ok(!plain.some((s) => s.includes(value)), `secret ${value.slice(0, 4)}… appears in plain inputs`);
        }
    });

    it("exports what a developer checks by hand", () => {
        assert.equal(run.outputs.status.value, "running");
        assert.equal(run.outputs.flyAppName.value, devFlyAppName(USER));
        assert.equal(run.outputs.flyMachineId.value, "e2865013b79786");
        assert.equal(run.outputs.openclawVersion.value, "2026.2.9");
        assert.equal(run.outputs.userId.value, USER);
        assert.equal(run.outputs.gatewayState.value, "running");
        assert.match(String(run.outputs.runningImage.value), /:dev-[0-9a-f]{12}$/);
    });

    it("previews the same graph: values the providers have not computed yet stay unknown", async () => {
        const preview = await runProgram({ config, secretKeys: Object.keys(SECRETS), stack: "alice", preview: true, outputs: () => ({}) });
        assert.equal(preview.error, undefined, preview.error);
        const graph = (r: ProgramRun) => r.resources.map((x) => `${x.type}::${x.name}`).sort();
        assert.deepEqual(graph(preview), graph(run));
        assert.equal(preview.outputs.status.value, undefined);
        assert.equal(preview.outputs.userId.value, USER);
    });

    it("serializes a provider text into each dynamic resource", () => {
        for (const t of ["WarmMachine", "WorkerImageVersion", "WorkerInstance"]) {
            const r = find(run, `pulumi-nodejs:dynamic/kiloclaw:${t}`);
            assert.equal(typeof r.inputs.__provider, "string");
            assert.match(r.inputs.__provider, /exports\.handler/);
        }
    });
});

describe("program modes and config errors", function () {
    this.timeout(120_000);

    it("rolls out a prebuilt imageRef without building, testing or pushing", async () => {
        const checkout = fakeCheckout();
        const imageRef = "registry.fly.io/kiloclaw-dev:dev-teammate01";
        const config = { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER, "kiloclaw:imageRef": imageRef, ...SECRETS };
        const run = await runProgram({ config, secretKeys: Object.keys(SECRETS) });
        assert.equal(run.error, undefined, run.error);
        assert.ok(!run.resources.some((r) => r.type === "docker:index/image:Image" || r.type === "command:local:Command"));
        // The image is pulled and its openclaw version checked first; the warm machine pulls the checked digest (mock-outputs.ts).
        const check = find(run, "pulumi-nodejs:dynamic/kiloclaw:PrebuiltImage");
        assert.equal(check.inputs.imageRef, imageRef);
        assert.equal(check.inputs.expectedOpenclawVersion, "2026.2.9");
        assert.equal(check.inputs.versionSource, "the Dockerfile pin");
        const warm = find(run, "pulumi-nodejs:dynamic/kiloclaw:WarmMachine");
        assert.equal(warm.inputs.image, `${imageRef}@sha256:${"3".repeat(64)}`);
        assert.ok(warm.dependencies.includes(check.urn), "the warm machine does not wait for the image check");
        assert.equal(find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance").inputs.imageTag, "dev-teammate01");
    });

    it("decodes instanceId into the userId, and keeps the .dev.vars secrets out of the state", async () => {
        const checkout = fakeCheckout();
        const instanceId = Buffer.from(USER).toString("base64");
        const run = await runProgram({
            config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:instanceId": instanceId, "kiloclaw:warm": "false" },
        });
        assert.equal(run.error, undefined, run.error);
        const instance = find(run, "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance");
        assert.equal(instance.inputs.userId, USER);
        assert.ok(!JSON.stringify(run.resources.map((r) => unwrapSecrets(r.inputs))).includes("internal-secret-from-dev-vars"));
        assert.ok(!run.resources.some((r) => r.type.endsWith("WarmMachine")), "warm=false still registered a warm machine");
    });

    it("two stacks, or one stack in two clones' sandboxes, never share a local image name or context directory", async () => {
        const checkout = fakeCheckout();
        const base = { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER, ...SECRETS };
        const image = async (stack: string, over: Record<string, string> = {}) => {
            const run = await runProgram({ stack, config: { ...base, ...over }, secretKeys: Object.keys(SECRETS) });
            assert.equal(run.error, undefined, run.error);
            return find(run, "docker:index/image:Image").inputs as { imageName: string; build: { context: string } };
        };
        const [a, b, sandboxA, sandboxB] = [
            await image("alice"),
            await image("bob"),
            await image("sandbox", { "kiloclaw:sandboxInstance": "0a1b2c" }),
            await image("sandbox", { "kiloclaw:sandboxInstance": "3d4e5f" }),
        ];
        // The same checkout gives the same tag; the identity tells the names apart.
        const tag = a.imageName.split(":")[1];
        assert.deepEqual(
            [a, b, sandboxA, sandboxB].map((i) => i.imageName),
            ["alice", "bob", "sandbox-0a1b2c", "sandbox-3d4e5f"].map((s) => `kiloclaw-kiloclaw-rollout-${s}:${tag}`),
        );
        assert.equal(new Set([a, b, sandboxA, sandboxB].map((i) => i.build.context)).size, 4);
        const bad = await runProgram({
            stack: "sandbox",
            config: { ...base, "kiloclaw:sandboxInstance": "Not/Valid" },
            secretKeys: Object.keys(SECRETS),
        });
        assert.match(bad.error ?? "", /kiloclaw:sandboxInstance "Not\/Valid" is not 1-32 lowercase letters and digits/);
    });

    it("lists every problem with the command that fixes it", async () => {
        const checkout = fakeCheckout({ dockerfile: "FROM x\nRUN npm install -g openclaw@latest\n", devVars: "WORKER_ENV=development\n" });
        const run = await runProgram({ config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:region": "iad" } });
        assert.ok(run.error, "expected a configuration error");
        assert.match(run.error!, /kiloclaw:userId <your userId>/);
        assert.match(run.error!, /Dockerfile:2: `openclaw@latest` is not an exact version/);
        assert.equal(run.resources.length, 0);
    });

    it("names a missing checkout and missing secrets", async () => {
        const run = await runProgram({ config: { "kiloclaw:userId": USER } });
        assert.match(run.error!, /kiloclaw:kiloclawDir is not set/);
        const checkout = fakeCheckout({ devVars: "WORKER_ENV=development\n" });
        const run2 = await runProgram({ config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": USER } });
        assert.match(run2.error!, /pulumi config set --secret kiloclaw:internalApiKey/);
        assert.match(run2.error!, /pulumi config set --secret kiloclaw:flyApiToken/);
    });
});
