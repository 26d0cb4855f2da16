// Every policy of the pack: one passing and at least one violating case each,
// plus the good and bad fixture stacks through the whole pack.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { COMPONENT_TYPES } from "../../lib/contract";
import {
    allowedOriginsIncludeApp,
    destroyThroughWorker,
    devModeMatchesUser,
    imagePlatformAmd64,
    noSecretOverridesInEnvLocal,
    noSecretsInCommands,
    openclawVersionConsistent,
    openclawVersionPinned,
    policies,
    registryAppMatchesWorker,
    tunnelBaseUrl,
    TYPES,
    warmMachinePlaceholderKey,
} from "../../policy/policies";
import {
    ALL_SECRETS,
    badStack,
    expectedBadViolations,
    FLY_APP,
    FLY_TOKEN,
    goodStack,
    HarnessConfig,
    HarnessResource,
    IMAGE_TAG,
    KILOCODE_API_KEY,
    PREVIEW_UNKNOWN_OBJECT,
    PREVIEW_UNKNOWN_STRING,
    propsOf,
    runPack,
    Violation,
} from "../policy-harness";
import { secretEnvelope } from "../program-harness";

type AnyPolicy = (typeof policies)[number];

/** The violations one policy reports over a stack. */
async function violationsOf(policy: AnyPolicy, stack: HarnessResource[], config?: HarnessConfig): Promise<Violation[]> {
    return runPack(stack, config, [policy]);
}

async function onlyMessage(policy: AnyPolicy, stack: HarnessResource[], config?: HarnessConfig): Promise<string> {
    const found = await violationsOf(policy, stack, config);
    assert.equal(found.length, 1, `expected one violation, got ${JSON.stringify(found, null, 2)}`);
    return found[0].message;
}

function command(name: string, props: Record<string, unknown>): HarnessResource {
    return { type: TYPES.command, name, props };
}

describe("policy pack", () => {
    it("has the eleven policies with their levels, descriptions and fixes", () => {
        const expected: Record<string, string> = {
            "openclaw-version-pinned": "mandatory",
            "openclaw-version-consistent": "mandatory",
            "image-platform-amd64": "mandatory",
            "registry-app-matches-worker": "mandatory",
            "no-secret-overrides-in-env-local": "mandatory",
            "warm-machine-placeholder-key": "mandatory",
            "no-secrets-in-commands": "mandatory",
            "destroy-through-worker": "mandatory",
            "dev-mode-matches-user": "advisory",
            "tunnel-base-url": "advisory",
            "allowed-origins-include-app": "advisory",
        };
        assert.deepEqual(Object.fromEntries(policies.map((p) => [p.name, p.enforcementLevel])), expected);
        for (const p of policies) {
            assert.ok(p.description.length > 20, p.name);
            assert.ok((p.remediationSteps ?? "").length > 20, p.name);
        }
    });

    it("has a package.json the CLI accepts, pinned like the root", () => {
        const read = (file: string) => JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", file), "utf8"));
        const pack = read("policy/package.json");
        const root = read("package.json");
        assert.equal(pack.name, "kiloclaw-rollout-policy");
        assert.match(pack.version, /^\d+\.\d+\.\d+$/);
        for (const dep of ["@pulumi/policy", "@pulumi/pulumi"]) assert.equal(pack.dependencies[dep], root.dependencies[dep], dep);
    });

    it("ships a config example that names real policies, levels and valid patterns", async () => {
        const file = path.join(__dirname, "..", "..", "policy", "config.example.json");
        const config = JSON.parse(fs.readFileSync(file, "utf8")) as HarnessConfig;
        const names = new Set(policies.map((p) => p.name));
        for (const [name, entry] of Object.entries(config)) {
            assert.ok(names.has(name), name);
            const level = typeof entry === "string" ? entry : entry.enforcementLevel;
            assert.ok(level === undefined || ["advisory", "mandatory", "remediate", "disabled"].includes(level), `${name}: ${level}`);
        }
        const found = await runPack(goodStack(), config);
        assert.deepEqual(found, [], "the example's patterns must not flag the good configuration");
        const withKey = [...goodStack(), command("router", { create: "curl -d k=sk-or-v1-0123456789abcdef0123 http://127.0.0.1:3000" })];
        assert.deepEqual(
            (await runPack(withKey, config)).map((v) => [v.policy, v.level]),
            [["no-secrets-in-commands", "mandatory"]],
        );
    });

    it("finds nothing wrong with a good configuration", async () => {
        assert.deepEqual(await runPack(goodStack()), []);
    });

    it("reports exactly the expected violations for a bad configuration", async () => {
        const stack = badStack();
        const found = await runPack(stack);
        const nameOf = (urn?: string) => stack.find((r) => urn && urn.endsWith(`::${r.type}::${r.name}`))?.name ?? "(stack)";
        const actual = found.map((v) => [v.policy, nameOf(v.urn)]);
        const sort = (xs: string[][]) => xs.map((x) => x.join(" @ ")).sort();
        assert.deepEqual(sort(actual), sort(expectedBadViolations));
        for (const v of found) {
            assert.match(v.message, / Fix: /, `${v.policy} message names the fix`);
            for (const secret of ALL_SECRETS) assert.ok(!v.message.includes(secret), `${v.policy} echoes a secret`);
        }
        const levels = new Map(found.map((v) => [v.policy, v.level]));
        assert.equal(levels.get("tunnel-base-url"), "advisory");
        assert.equal(levels.get("destroy-through-worker"), "mandatory");
    });

    it("runs quietly in preview, when inputs are unknown", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.dockerImage).build.platform = PREVIEW_UNKNOWN_STRING;
        propsOf(stack, TYPES.command, "image-validation").environment.EXPECTED_OPENCLAW_VERSION = PREVIEW_UNKNOWN_STRING;
        propsOf(stack, TYPES.command, "registry-push").environment = PREVIEW_UNKNOWN_OBJECT;
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).imageDigest = PREVIEW_UNKNOWN_STRING;
        const version = propsOf(stack, COMPONENT_TYPES.workerImageVersion);
        version.openclawPin = PREVIEW_UNKNOWN_STRING;
        version.workerSettings.KILOCODE_API_BASE_URL = PREVIEW_UNKNOWN_STRING;
        propsOf(stack, TYPES.warmMachine).image = PREVIEW_UNKNOWN_STRING;
        propsOf(stack, TYPES.warmMachine).env.KILOCODE_API_KEY = PREVIEW_UNKNOWN_STRING;
        const instance = propsOf(stack, TYPES.workerInstance);
        instance.flyAppName = PREVIEW_UNKNOWN_STRING;
        instance.gatewayToken = PREVIEW_UNKNOWN_STRING;
        assert.deepEqual(await runPack(stack), []);
    });

    it("still reports what is known while other values are unknown", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.command, "image-validation").environment.EXPECTED_OPENCLAW_VERSION = PREVIEW_UNKNOWN_STRING;
        propsOf(stack, TYPES.workerInstance).openclawVersion = "2026.2.22";
        const message = await onlyMessage(openclawVersionConsistent, stack);
        assert.match(message, /instance \(WorkerInstance "instance"\.openclawVersion\) = 2026\.2\.22/);
        assert.doesNotMatch(message, /smoke test/);
    });

    it("sees secrets that arrive wrapped the way mocks receive them", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.workerInstance).kilocodeApiKey = secretEnvelope(KILOCODE_API_KEY);
        stack.push(command("debug", { create: `echo ${KILOCODE_API_KEY}` }));
        const message = await onlyMessage(noSecretsInCommands, stack);
        assert.match(message, /Command "debug" create contains the value of WorkerInstance "instance"\.kilocodeApiKey/);
    });
});

describe("openclaw-version-pinned", () => {
    it("passes an exact x.y.z pin", async () => {
        assert.deepEqual(await violationsOf(openclawVersionPinned, goodStack()), []);
    });

    for (const [pin, reason] of [
        ["latest", /`openclaw@latest` is not a pin/],
        ["^2026.2.9", /`openclaw@\^2026\.2\.9` is a version range/],
        ["~2026.2.9", /is a version range/],
        [">=2026.2.0", /is a version range/],
        ["2026.x", /is a version range/],
        ["2026.2", /`openclaw@2026\.2` is not an exact x\.y\.z version/],
    ] as const) {
        it(`rejects openclaw@${pin}`, async () => {
            const stack = goodStack();
            propsOf(stack, COMPONENT_TYPES.workerImageVersion).openclawPin = pin;
            const message = await onlyMessage(openclawVersionPinned, stack);
            assert.match(message, reason);
            assert.match(message, /^WorkerImageVersion "image-version": /);
            assert.match(message, /Fix: pin an exact version .*`RUN npm install -g openclaw@2026\.2\.9/);
        });
    }

    it("rejects a missing pin when the stack builds the image", async () => {
        const stack = goodStack();
        delete propsOf(stack, COMPONENT_TYPES.workerImageVersion).openclawPin;
        const message = await onlyMessage(openclawVersionPinned, stack);
        assert.match(message, /openclaw is installed without a version \(no pin\) while the stack builds Image "image"/);
    });

    it("does not apply in prebuilt-image mode (no pin, no docker Image)", async () => {
        const stack = goodStack().filter((r) => r.type !== TYPES.dockerImage);
        delete propsOf(stack, COMPONENT_TYPES.workerImageVersion).openclawPin;
        assert.deepEqual(await violationsOf(openclawVersionPinned, stack), []);
    });
});

describe("openclaw-version-consistent", () => {
    it("passes when all four sources agree", async () => {
        assert.deepEqual(await violationsOf(openclawVersionConsistent, goodStack()), []);
    });

    it("lists every source and its value when they disagree", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).openclawPin = "2026.2.22";
        propsOf(stack, TYPES.command, "image-validation").environment.EXPECTED_OPENCLAW_VERSION = "2026.2.22";
        const message = await onlyMessage(openclawVersionConsistent, stack);
        assert.equal(
            message.split(" Fix: ")[0],
            "OpenClaw versions disagree: " +
                'Dockerfile pin (WorkerImageVersion "image-version".openclawPin) = 2026.2.22; ' +
                'smoke test (Command "image-validation".environment.EXPECTED_OPENCLAW_VERSION) = 2026.2.22; ' +
                '.dev.vars OPENCLAW_VERSION / published version (WorkerImageVersion "image-version-dev-vars".openclawVersion) = 2026.2.9; ' +
                'instance (WorkerInstance "instance".openclawVersion) = 2026.2.9.',
        );
        assert.match(message, /Fix: make every one of them the Dockerfile's `openclaw@x\.y\.z` pin/);
    });

    it("compares what there is in prebuilt-image mode", async () => {
        const stack = goodStack().filter((r) => r.type !== TYPES.dockerImage && r.name !== "image-validation");
        delete propsOf(stack, COMPONENT_TYPES.workerImageVersion).openclawPin;
        assert.deepEqual(await violationsOf(openclawVersionConsistent, stack), []);
        propsOf(stack, TYPES.workerInstance).openclawVersion = "2026.1.1";
        assert.match(await onlyMessage(openclawVersionConsistent, stack), /published version .* = 2026\.2\.9; instance .* = 2026\.1\.1/);
    });
});

describe("image-platform-amd64", () => {
    it("passes linux/amd64", async () => {
        assert.deepEqual(await violationsOf(imagePlatformAmd64, goodStack()), []);
    });

    it("rejects another platform", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.dockerImage).build.platform = "linux/arm64";
        const message = await onlyMessage(imagePlatformAmd64, stack);
        assert.match(message, /^Image "image" builds for "linux\/arm64"\. Fix: set `build\.platform: "linux\/amd64"`/);
    });

    it("rejects a build without a platform", async () => {
        const stack = goodStack();
        delete propsOf(stack, TYPES.dockerImage).build.platform;
        assert.match(await onlyMessage(imagePlatformAmd64, stack), /sets no build\.platform \(docker then builds for the host's architecture\)/);
    });
});

describe("registry-app-matches-worker", () => {
    it("passes when push, warm and worker use one registry app", async () => {
        assert.deepEqual(await violationsOf(registryAppMatchesWorker, goodStack()), []);
    });

    it("generalises to any registry server", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).registryServer = "127.0.0.1:5000";
        const local = `127.0.0.1:5000/kiloclaw-machines:${IMAGE_TAG}`;
        propsOf(stack, TYPES.command, "registry-push").environment.TARGET_IMAGE = local;
        propsOf(stack, TYPES.warmMachine).image = local;
        assert.deepEqual(await violationsOf(registryAppMatchesWorker, stack), []);
    });

    it("rejects pushing to an app the worker does not pull from", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).registryApp = "kiloclaw-dev";
        const message = await onlyMessage(registryAppMatchesWorker, stack);
        assert.match(
            message,
            /^WorkerImageVersion "image-version" pushes to registry app "kiloclaw-dev" but the worker pulls from "kiloclaw-machines"/,
        );
        assert.match(message, /Fix: .*set the registry app to "kiloclaw-machines".*or set FLY_REGISTRY_APP=kiloclaw-dev in \.dev\.vars/);
        assert.match(message, /push-dev\.sh .* pushes to registry\.fly\.io\/\$FLY_APP_NAME/);
    });

    it("rejects a TARGET_IMAGE or warm image outside the worker's registry app", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.command, "registry-push").environment.TARGET_IMAGE = `registry.fly.io/kiloclaw-dev:${IMAGE_TAG}`;
        propsOf(stack, TYPES.warmMachine).image = `registry.fly.io/other:${IMAGE_TAG}`;
        const found = await violationsOf(registryAppMatchesWorker, stack);
        assert.deepEqual(
            found.map((v) => v.message.split(" Fix: ")[0]),
            [
                `Command "registry-push" environment.TARGET_IMAGE is "registry.fly.io/kiloclaw-dev:${IMAGE_TAG}", ` +
                    'which does not start with "registry.fly.io/kiloclaw-machines:" (the registry app the worker pulls from).',
                `WarmMachine "warm-machine" image is "registry.fly.io/other:${IMAGE_TAG}", ` +
                    'which does not start with "registry.fly.io/kiloclaw-machines:" (the registry app the worker pulls from).',
            ],
        );
    });
});

describe("no-secret-overrides-in-env-local", () => {
    it("passes other keys", async () => {
        assert.deepEqual(await violationsOf(noSecretOverridesInEnvLocal, goodStack()), []);
    });

    it("rejects NEXTAUTH_SECRET and OPENROUTER_API_KEY overrides", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).envLocalKeys = ["NEXTAUTH_SECRET", "DATABASE_URL", "OPENROUTER_API_KEY"];
        const message = await onlyMessage(noSecretOverridesInEnvLocal, stack);
        assert.match(message, /^\.env\.development\.local overrides NEXTAUTH_SECRET and OPENROUTER_API_KEY/);
        assert.match(message, /Fix: delete the NEXTAUTH_SECRET and OPENROUTER_API_KEY lines from \.env\.development\.local/);
    });

    it("rejects one override", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).envLocalKeys = ["OPENROUTER_API_KEY"];
        assert.match(await onlyMessage(noSecretOverridesInEnvLocal, stack), /Fix: delete the OPENROUTER_API_KEY line from/);
    });
});

describe("warm-machine-placeholder-key", () => {
    it("passes KILOCODE_API_KEY=warm", async () => {
        assert.deepEqual(await violationsOf(warmMachinePlaceholderKey, goodStack()), []);
    });

    it("rejects a real key, never echoing it", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.warmMachine).env = { KILOCODE_API_KEY };
        const message = await onlyMessage(warmMachinePlaceholderKey, stack);
        assert.match(message, /^WarmMachine "warm-machine" machine env: env\.KILOCODE_API_KEY is not the placeholder "warm"\./);
        assert.match(message, /Fix: give the machine env `\{KILOCODE_API_KEY: "warm"\}`/);
        assert.ok(!message.includes(KILOCODE_API_KEY));
    });

    it("rejects other key-like names, secret-looking values and a missing key", async () => {
        const stack = goodStack();
        propsOf(stack, TYPES.warmMachine).env = {
            OPENCLAW_GATEWAY_TOKEN: "test-token",
            NOTES: "a3F9kQ2mZ7xW1pL8vB4nR6tY0cH5jD2s",
            REGION_HINT: "iad",
        };
        const message = await onlyMessage(warmMachinePlaceholderKey, stack);
        assert.match(message, /env has no KILOCODE_API_KEY/);
        assert.match(message, /env\.OPENCLAW_GATEWAY_TOKEN has a key-like name/);
        assert.match(message, /env\.NOTES looks like a secret/);
        assert.doesNotMatch(message, /REGION_HINT/);
    });

    it("checks `fly machine run --env` in commands: placeholders pass, real values fail", async () => {
        const run = `fly machine run registry.fly.io/kiloclaw-machines:${IMAGE_TAG} --app kiloclaw-machines --region iad`;
        const ok = [...goodStack(), command("direct", { create: `${run} --env KILOCODE_API_KEY=test-key --env OPENCLAW_GATEWAY_TOKEN=test-token` })];
        assert.deepEqual(await violationsOf(warmMachinePlaceholderKey, ok), []);
        const bad = [...goodStack(), command("direct", { create: `${run} --env KILOCODE_API_KEY=${KILOCODE_API_KEY}` })];
        const message = await onlyMessage(warmMachinePlaceholderKey, bad);
        assert.match(
            message,
            /^Command "direct" machine env: `fly machine run` in create: env\.KILOCODE_API_KEY has a key-like name and no placeholder value/,
        );
        assert.ok(!message.includes(KILOCODE_API_KEY));
    });
});

describe("no-secrets-in-commands", () => {
    it("passes the program's commands (the registry token travels on stdin)", async () => {
        assert.deepEqual(await violationsOf(noSecretsInCommands, goodStack()), []);
    });

    it("passes placeholders, variable references and --password-stdin", async () => {
        const stack = [
            ...goodStack(),
            command("ok", {
                create:
                    "docker run -e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token kiloclaw:test && " +
                    "docker login registry.fly.io -u x --password-stdin && " +
                    'curl -H "Authorization: Bearer $FLY_API_TOKEN" http://127.0.0.1:4280/v1/apps',
                environment: { KILOCODE_API_KEY: "warm", API_TOKEN: "${API_TOKEN}" },
            }),
        ];
        assert.deepEqual(await violationsOf(noSecretsInCommands, stack), []);
    });

    it("rejects a value the stack holds as a secret, naming only its source", async () => {
        const stack = [...goodStack(), command("leak", { create: "bash run.sh", environment: { WORKER_HEADER: KILOCODE_API_KEY } })];
        const message = await onlyMessage(noSecretsInCommands, stack);
        assert.equal(
            message.split(" Fix: ")[0],
            'Command "leak" environment.WORKER_HEADER contains the value of WorkerInstance "instance".kilocodeApiKey.',
        );
        assert.match(message, /Fix: remove the secret from the command: pass it on the command's stdin/);
        assert.ok(!message.includes(KILOCODE_API_KEY));
    });

    it("rejects secret-shaped text in every field", async () => {
        const stack = [
            ...goodStack(),
            command("shapes", {
                create: "docker login registry.fly.io -u x -p hunter2hunter2",
                update: "curl -H 'Authorization: Bearer abcdef0123456789' https://example.invalid",
                delete: "GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a ./cleanup.sh",
                environment: { NEXTAUTH_SECRET: "s3cr3t-value", OTHER: "fm1_abcdefghijklmnop" },
            }),
        ];
        const found = await violationsOf(noSecretsInCommands, stack);
        assert.deepEqual(
            found.map((v) => v.message.split(" Fix: ")[0]),
            [
                'Command "shapes" create contains a password on the `docker login` command line (--password/-p).',
                'Command "shapes" update contains a literal `Bearer` token.',
                'Command "shapes" delete contains a literal value for the secret-named variable GITHUB_TOKEN.',
                'Command "shapes" environment.NEXTAUTH_SECRET contains a literal value for a secret-named variable.',
                'Command "shapes" environment.OTHER contains a Fly token (fm1_/fm2_ macaroon).',
            ],
        );
    });

    it("finds a Fly token by its shape (the stack keeps it only on the push's stdin)", async () => {
        const stack = [...goodStack(), command("login", { create: `echo '${FLY_TOKEN}' | docker login -u x --password-stdin registry.fly.io` })];
        const message = await onlyMessage(noSecretsInCommands, stack);
        assert.match(message, /^Command "login" create contains a Fly token \(fm1_\/fm2_ macaroon\)\. Fix: /);
        assert.ok(!message.includes(FLY_TOKEN) && !message.includes("fm2_lJPE"));
    });

    it("applies extraSecretPatterns from the policy config", async () => {
        const stack = [...goodStack(), command("router", { create: "OPENROUTER=sk-or-v1-0a1b2c3d4e5f ./call.sh" })];
        assert.deepEqual(await violationsOf(noSecretsInCommands, stack), []);
        const config: HarnessConfig = { "no-secrets-in-commands": { extraSecretPatterns: ["sk-or-v1-[0-9a-f]{8,}"] } };
        assert.match(await onlyMessage(noSecretsInCommands, stack, config), /create contains a match of extraSecretPatterns\[0\]/);
        const flagged: HarnessConfig = { "no-secrets-in-commands": { extraSecretPatterns: ["/SK-OR-V1-/i"] } };
        assert.match(await onlyMessage(noSecretsInCommands, stack, flagged), /extraSecretPatterns\[0\]/);
    });

    it("reports an invalid extraSecretPatterns entry", async () => {
        const config: HarnessConfig = { "no-secrets-in-commands": { extraSecretPatterns: ["(unclosed"] } };
        const message = await onlyMessage(noSecretsInCommands, goodStack(), config);
        assert.match(message, /^Policy config: extraSecretPatterns\[0\] is not a valid JavaScript regular expression\. Fix:/);
    });

    it("takes its level from the config", async () => {
        const stack = [...goodStack(), command("leak", { create: `echo ${FLY_TOKEN}` })];
        const [advisory] = await violationsOf(noSecretsInCommands, stack, { "no-secrets-in-commands": "advisory" });
        assert.equal(advisory.level, "advisory");
        const [viaObject] = await violationsOf(noSecretsInCommands, stack, { "no-secrets-in-commands": { enforcementLevel: "remediate" } });
        assert.equal(viaObject.level, "mandatory");
        assert.deepEqual(await violationsOf(noSecretsInCommands, stack, { "no-secrets-in-commands": "disabled" }), []);
    });
});

describe("destroy-through-worker", () => {
    it("passes commands that do not destroy Fly resources", async () => {
        const stack = [
            ...goodStack(),
            command("fine", {
                create: "fly machine run registry.fly.io/app:tag --rm --env KILOCODE_API_KEY=warm && fly machine stop 0805 --app app",
                delete: 'curl -X POST http://127.0.0.1:8795/api/platform/destroy -d \'{"userId":"u"}\'',
            }),
        ];
        assert.deepEqual(await violationsOf(destroyThroughWorker, stack), []);
    });

    it("rejects fly apps destroy", async () => {
        const stack = [...goodStack(), command("cleanup", { delete: "fly apps destroy dev-0123456789abcdef0123 --yes" })];
        const message = await onlyMessage(destroyThroughWorker, stack);
        assert.match(message, /^Command "cleanup" bypasses the worker: `fly apps destroy` in delete\./);
        assert.match(message, /Fix: remove it: instances are removed by the WorkerInstance resource .* POST \/api\/platform\/destroy/);
    });

    for (const [text, what] of [
        ["flyctl machine destroy 0805459b00d908 --app dev-abc --force", "`fly machine destroy`"],
        ["fly machines rm 0805459b00d908 -a dev-abc", "`fly machine destroy`"],
        ["fly m remove 0805459b00d908", "`fly machine destroy`"],
        ["/usr/local/bin/flyctl app delete dev-abc -y", "`fly apps destroy`"],
        ["fly volumes destroy vol_123 -y", "`fly volume destroy`"],
        ["flyctl -a dev-abc destroy", "`fly ... destroy`"],
        [
            "curl -s -X DELETE \\\n  -H 'Authorization: Bearer $T' 'https://api.machines.dev/v1/apps/dev-abc/machines/0805?force=true'",
            "an HTTP DELETE against the Fly Machines API",
        ],
        ["curl --request DELETE http://127.0.0.1:4280/v1/apps/dev-abc", "an HTTP DELETE against the Fly Machines API"],
    ] as const) {
        it(`rejects ${JSON.stringify(text.split(/\s/).slice(0, 3).join(" "))}`, async () => {
            const stack = [...goodStack(), command("cleanup", { create: text })];
            assert.match(
                await onlyMessage(destroyThroughWorker, stack),
                new RegExp(`bypasses the worker: ${what.replace(/[.*`]/g, "\\$&")} in create\\.`),
            );
        });
    }
});

describe("dev-mode-matches-user", () => {
    it("passes DEV_MODE=false with any user, and DEV_MODE=true with dev@kilocode.ai", async () => {
        assert.deepEqual(await violationsOf(devModeMatchesUser, goodStack()), []);
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).workerSettings.DEV_MODE = "true";
        propsOf(stack, TYPES.workerInstance).userId = "dev@kilocode.ai";
        assert.deepEqual(await violationsOf(devModeMatchesUser, stack), []);
    });

    it("advises when DEV_MODE=true and the instance is for another user", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).workerSettings.DEV_MODE = "true";
        const [v, ...rest] = await violationsOf(devModeMatchesUser, stack);
        assert.equal(rest.length, 0);
        assert.equal(v.level, "advisory");
        assert.match(
            v.message,
            /^DEV_MODE=true makes the worker treat every request as dev@kilocode\.ai, but WorkerInstance "instance" is for userId "test-user-fly"/,
        );
        assert.match(
            v.message,
            /Fix: set the instance's userId to "dev@kilocode\.ai", or set DEV_MODE=false in \.dev\.vars and restart the worker\./,
        );
    });
});

describe("tunnel-base-url", () => {
    it("passes https://<host>/api/openrouter/ and an unset URL", async () => {
        assert.deepEqual(await violationsOf(tunnelBaseUrl, goodStack()), []);
        const stack = goodStack();
        delete propsOf(stack, COMPONENT_TYPES.workerImageVersion).workerSettings.KILOCODE_API_BASE_URL;
        assert.deepEqual(await violationsOf(tunnelBaseUrl, stack), []);
    });

    for (const url of [
        "https://abc123.ngrok-free.dev/api/openrouter",
        "http://abc123.ngrok-free.dev/api/openrouter/",
        "https://abc123.ngrok-free.dev/",
    ]) {
        it(`advises on ${url}`, async () => {
            const stack = goodStack();
            propsOf(stack, COMPONENT_TYPES.workerImageVersion).workerSettings.KILOCODE_API_BASE_URL = url;
            const [v, ...rest] = await violationsOf(tunnelBaseUrl, stack);
            assert.equal(rest.length, 0);
            assert.equal(v.level, "advisory");
            assert.match(v.message, /is not of the form https:\/\/<host>\/api\/openrouter\/ \(trailing slash included\)/);
            assert.match(v.message, /Fix: set KILOCODE_API_BASE_URL=https:\/\/abc123\.ngrok-free\.dev\/api\/openrouter\/ in \.dev\.vars/);
        });
    }
});

describe("allowed-origins-include-app", () => {
    it("passes when the instance's app origin is listed, or origins are unset or *", async () => {
        assert.deepEqual(await violationsOf(allowedOriginsIncludeApp, goodStack()), []);
        const unset = goodStack();
        delete propsOf(unset, COMPONENT_TYPES.workerImageVersion).workerSettings.OPENCLAW_ALLOWED_ORIGINS;
        assert.deepEqual(await violationsOf(allowedOriginsIncludeApp, unset), []);
        const star = goodStack();
        propsOf(star, COMPONENT_TYPES.workerImageVersion).workerSettings.OPENCLAW_ALLOWED_ORIGINS = "*";
        assert.deepEqual(await violationsOf(allowedOriginsIncludeApp, star), []);
    });

    it("advises when the origin is missing, with the list to set", async () => {
        const stack = goodStack();
        propsOf(stack, COMPONENT_TYPES.workerImageVersion).workerSettings.OPENCLAW_ALLOWED_ORIGINS = "http://localhost:3000";
        const [v, ...rest] = await violationsOf(allowedOriginsIncludeApp, stack);
        assert.equal(rest.length, 0);
        assert.equal(v.level, "advisory");
        assert.match(
            v.message,
            new RegExp(`^OPENCLAW_ALLOWED_ORIGINS does not include https://${FLY_APP}\\.fly\\.dev, the Fly app of WorkerInstance "instance"`),
        );
        assert.match(
            v.message,
            new RegExp(`Fix: set OPENCLAW_ALLOWED_ORIGINS=http://localhost:3000,https://${FLY_APP}\\.fly\\.dev in \\.dev\\.vars`),
        );
    });

    it("falls back to the flyAppName output", async () => {
        const stack = goodStack();
        const instance = propsOf(stack, TYPES.workerInstance);
        delete instance.expectedFlyAppName;
        instance.flyAppName = "dev-ffffffffffffffffffff";
        assert.match(await onlyMessage(allowedOriginsIncludeApp, stack), /does not include https:\/\/dev-ffffffffffffffffffff\.fly\.dev/);
    });
});
