// Runs the policy pack's policies without the Pulumi CLI: builds validation
// args by hand, the way pulumi-policy's own tests do, and collects the
// reportViolation calls. Mirrors what the analyzer server does around a policy:
// props behind the unknown-checking proxy, per-policy config and enforcement
// level (config overrides the policy's own level; "disabled" skips it;
// "remediate" reports as "mandatory"), notApplicable swallowed, and an
// UnknownValueError turned into an advisory "can't run during preview".

import {
    EnforcementLevel,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
    UnknownValueError,
    unknownCheckingProxy,
} from "@pulumi/policy";
import * as pulumi from "@pulumi/pulumi";
import { COMPONENT_TYPES, PropsByType } from "../lib/contract";
import { devFlyAppName } from "../lib/identity";
import { PACK_ENFORCEMENT_LEVEL, TYPES, policies as allPolicies } from "../policy/policies";
import { ContractType } from "../policy/props";
import { unwrapSecrets } from "./program-harness";

type AnyPolicy = ResourceValidationPolicy | StackValidationPolicy;

/** A resource as the program registers it; `outputs` (default: props) is what stack policies see. */
export interface HarnessResource {
    type: string;
    name: string;
    props: Record<string, unknown>;
    urn?: string;
    outputs?: Record<string, unknown>;
}

export interface Violation {
    policy: string;
    message: string;
    level: EnforcementLevel;
    urn?: string;
}

/** Like a --policy-pack-config file: policy name → level, or {enforcementLevel?, ...properties}. */
export type HarnessConfig = Record<string, EnforcementLevel | ({ enforcementLevel?: EnforcementLevel } & Record<string, unknown>)>;

/** The engine's sentinel for a string that is unknown during preview. */
export const PREVIEW_UNKNOWN_STRING = pulumi.runtime.unknownValue;

/** The engine's sentinel for an object that is unknown during preview (@pulumi/policy exports it untyped). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const PREVIEW_UNKNOWN_OBJECT: string = require("@pulumi/policy/proxy").unknownObjectValue;

export function urnFor(type: string, name: string, stack = "test", project = "kiloclaw-rollout"): string {
    return `urn:pulumi:${stack}::${project}::${type}::${name}`;
}

export function emptyOptions(): PolicyResourceOptions {
    return {
        protect: false,
        ignoreChanges: [],
        aliases: [],
        customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
        additionalSecretOutputs: [],
    };
}

class NotApplicable extends Error {
    constructor(readonly reason?: string) {
        super(reason ?? "Policy does not apply");
    }
}

function throwNotApplicable(reason?: string): never {
    throw new NotApplicable(reason);
}

function policyConfig(policy: AnyPolicy, config: HarnessConfig = {}): { level: EnforcementLevel; properties: Record<string, unknown> } {
    const entry = config[policy.name];
    const properties: Record<string, unknown> = {};
    // Defaults from the policy's schema, as the CLI fills them in.
    for (const [key, schema] of Object.entries(policy.configSchema?.properties ?? {})) {
        if (schema.default !== undefined) properties[key] = schema.default;
    }
    let level = policy.enforcementLevel ?? PACK_ENFORCEMENT_LEVEL;
    if (typeof entry === "string") {
        level = entry;
    } else if (entry) {
        const { enforcementLevel, ...rest } = entry;
        if (enforcementLevel) level = enforcementLevel;
        Object.assign(properties, rest);
    }
    return { level, properties };
}

function typeChecks(type: string, props: Record<string, unknown>) {
    const pulumiType = (cls: unknown) => (cls as { __pulumiType?: string }).__pulumiType;
    return {
        isType: (cls: unknown) => pulumiType(cls) === type,
        asType: (cls: unknown) => (pulumiType(cls) === type ? props : undefined),
    };
}

/** The args a resource policy gets for one resource (its inputs, behind the unknown-checking proxy). */
export function resourceArgs(resource: HarnessResource, policy?: AnyPolicy, config?: HarnessConfig): ResourceValidationArgs {
    const props = unknownCheckingProxy(unwrapSecrets(resource.props) as Record<string, unknown>);
    const properties = policy ? policyConfig(policy, config).properties : {};
    return {
        type: resource.type,
        props,
        urn: resource.urn ?? urnFor(resource.type, resource.name),
        name: resource.name,
        opts: emptyOptions(),
        stackTags: new Map<string, string>(),
        ...typeChecks(resource.type, props),
        getConfig: <T extends object>() => properties as T,
        notApplicable: throwNotApplicable,
    } as ResourceValidationArgs;
}

/** One stack resource as a stack policy sees it (its outputs, behind the proxy). */
export function policyResource(resource: HarnessResource): PolicyResource {
    const props = unknownCheckingProxy(unwrapSecrets(resource.outputs ?? resource.props) as Record<string, unknown>);
    return {
        type: resource.type,
        props,
        urn: resource.urn ?? urnFor(resource.type, resource.name),
        name: resource.name,
        opts: emptyOptions(),
        dependencies: [],
        propertyDependencies: {},
        ...typeChecks(resource.type, props),
    } as PolicyResource;
}

/** The args a stack policy gets. */
export function stackArgs(resources: HarnessResource[], policy?: AnyPolicy, config?: HarnessConfig): StackValidationArgs {
    const properties = policy ? policyConfig(policy, config).properties : {};
    return {
        resources: resources.map(policyResource),
        stackTags: new Map<string, string>(),
        getConfig: <T extends object>() => properties as T,
        notApplicable: throwNotApplicable,
    };
}

/** The outcome of one policy run: its violations, or why it did not apply. */
export interface PolicyRun {
    violations: Array<{ message: string; urn?: string }>;
    notApplicable?: string;
    /** The message of an UnknownValueError that escaped the policy (the engine reports it as advisory). */
    unknown?: string;
}

async function collect(run: (report: (message: string, urn?: string) => void) => unknown): Promise<PolicyRun> {
    const result: PolicyRun = { violations: [] };
    try {
        await run((message, urn) => result.violations.push({ message, urn }));
    } catch (e) {
        if (e instanceof NotApplicable) result.notApplicable = e.reason ?? "";
        else if (e instanceof UnknownValueError) result.unknown = (e as Error).message;
        else throw e;
    }
    return result;
}

export async function runResourcePolicy(policy: ResourceValidationPolicy, args: ResourceValidationArgs): Promise<PolicyRun> {
    const v = policy.validateResource;
    const validations: ResourceValidation[] = v === undefined ? [] : Array.isArray(v) ? v : [v];
    const result: PolicyRun = { violations: [] };
    for (const validate of validations) {
        // The engine reports a resource's violations against that resource, whatever urn is passed.
        const one = await collect((report) => validate(args, (message) => report(message, args.urn)));
        result.violations.push(...one.violations);
        result.notApplicable ??= one.notApplicable;
        result.unknown ??= one.unknown;
    }
    return result;
}

export async function runStackPolicy(policy: StackValidationPolicy, args: StackValidationArgs): Promise<PolicyRun> {
    return collect((report) => policy.validateStack(args, report));
}

function isResourcePolicy(policy: AnyPolicy): policy is ResourceValidationPolicy {
    return "validateResource" in policy && policy.validateResource !== undefined;
}

/**
 * Runs every policy over the resources (resource policies once per resource, stack policies once)
 * and returns what the CLI would print: one entry per violation, with the policy's effective level.
 */
export async function runPack(resources: HarnessResource[], config?: HarnessConfig, policies: AnyPolicy[] = allPolicies): Promise<Violation[]> {
    const out: Violation[] = [];
    for (const policy of policies) {
        let { level } = policyConfig(policy, config);
        if (level === "disabled") continue;
        if (level === "remediate") level = "mandatory";
        const runs: Array<{ run: PolicyRun; urn?: string }> = [];
        if (isResourcePolicy(policy)) {
            for (const resource of resources) {
                const args = resourceArgs(resource, policy, config);
                runs.push({ run: await runResourcePolicy(policy, args), urn: args.urn });
            }
        } else {
            runs.push({ run: await runStackPolicy(policy as StackValidationPolicy, stackArgs(resources, policy, config)) });
        }
        for (const { run, urn } of runs) {
            for (const v of run.violations) out.push({ policy: policy.name, message: v.message, level, urn: v.urn });
            if (run.unknown !== undefined) {
                out.push({
                    policy: policy.name,
                    message: `can't run policy '${policy.name}' during preview: ${run.unknown}`,
                    level: "advisory",
                    urn,
                });
            }
        }
    }
    return out;
}

// ---------------------------------------------------------------------------
// Fixtures: resources as the program registers them (see "Resource shapes" in
// the shared contracts). Each call returns fresh objects, so a test can break
// one property without touching the others.
// ---------------------------------------------------------------------------

export const PIN = "2026.2.9";
export const USER_ID = "test-user-fly";
export const FLY_APP = devFlyAppName(USER_ID);
export const IMAGE_TAG = "dev-0123456789ab";
export const WORKER_REGISTRY_APP = "kiloclaw-machines";
export const TARGET_IMAGE = `registry.fly.io/${WORKER_REGISTRY_APP}:${IMAGE_TAG}`;

// Made-up secrets shaped like the real ones; no message may ever contain them.
export const FLY_TOKEN = "FlyV1 fm2_lJPECAAAAAAAAMr0xBDzZl7q9Qc3s1gVb0m1Jp0kwrVodHRwczovL2FwaS5mbHkuaW8vdjE";
export const KILOCODE_API_KEY = "kc-live-5b8d1e4f9a77";
export const GATEWAY_TOKEN = "gw-4c1d9e7a2b8f3e6d";
export const ALL_SECRETS = [FLY_TOKEN, KILOCODE_API_KEY, GATEWAY_TOKEN];

/** A fixture resource of a contract type: its props are checked against lib/contract.ts (a renamed prop fails typecheck). */
function resource<T extends ContractType>(type: T, name: string, props: Partial<PropsByType[T]>): HarnessResource {
    return { type, name, props: props as Record<string, unknown> };
}

/** A stack that follows every rule. */
export function goodStack(): HarnessResource[] {
    return [
        { type: COMPONENT_TYPES.kiloclawImage, name: "image", props: {} },
        resource(TYPES.dockerImage, "image", {
            imageName: `kiloclaw:${IMAGE_TAG}`,
            build: { context: "/repo/kiloclaw", dockerfile: "/repo/kiloclaw/Dockerfile", platform: "linux/amd64" },
            skipPush: true,
        }),
        resource(TYPES.command, "image-validation", {
            create: "bash /repo/scripts/smoke-test.sh",
            environment: {
                IMAGE: `kiloclaw:${IMAGE_TAG}`,
                EXPECTED_OPENCLAW_VERSION: PIN,
                STARTUP_DEADLINE_SECONDS: "60",
                GATEWAY_DEADLINE_SECONDS: "90",
            },
            triggers: ["sha256:0f3e9c1a2b"],
        }),
        resource(TYPES.command, "registry-push", {
            create: "bash /repo/scripts/push-image.sh",
            environment: {
                SOURCE_IMAGE: `kiloclaw:${IMAGE_TAG}`,
                TARGET_IMAGE,
                REGISTRY_SERVER: "registry.fly.io",
                REGISTRY_USERNAME: "x",
            },
            stdin: FLY_TOKEN,
            triggers: ["sha256:0f3e9c1a2b", TARGET_IMAGE],
        }),
        resource(TYPES.warmMachine, "warm-machine", {
            appName: WORKER_REGISTRY_APP,
            region: "iad",
            image: TARGET_IMAGE,
            env: { KILOCODE_API_KEY: "warm" },
            owner: "dev",
            timeoutSeconds: 300,
        }),
        // The facts only the policy pack reads sit on the component; its provider resource gets what it writes.
        resource(COMPONENT_TYPES.workerImageVersion, "image-version", {
            imageTag: IMAGE_TAG,
            openclawVersion: PIN,
            openclawPin: PIN,
            registryServer: "registry.fly.io",
            registryApp: WORKER_REGISTRY_APP,
            workerRegistryApp: WORKER_REGISTRY_APP,
            workerSettings: {
                WORKER_ENV: "development",
                DEV_MODE: "false",
                KILOCODE_API_BASE_URL: "https://abc123.ngrok-free.dev/api/openrouter/",
                OPENCLAW_ALLOWED_ORIGINS: `http://localhost:3000,https://${FLY_APP}.fly.dev`,
            },
            envLocalKeys: ["DATABASE_URL", "NEXTAUTH_URL"],
        }),
        resource(TYPES.workerImageVersion, "image-version-dev-vars", {
            imageTag: IMAGE_TAG,
            imageDigest: "sha256:9d2c4b7e1f",
            openclawVersion: PIN,
            publish: true,
        }),
        resource(TYPES.workerInstance, "instance", {
            userId: USER_ID,
            imageTag: IMAGE_TAG,
            openclawVersion: PIN,
            region: "iad",
            kilocodeApiKey: KILOCODE_API_KEY,
            expectedFlyAppName: FLY_APP,
            timeoutSeconds: 600,
            // outputs
            status: "running",
            sandboxId: Buffer.from(USER_ID).toString("base64url"),
            flyAppName: FLY_APP,
            flyMachineId: "0805459b00d908",
            flyVolumeId: "vol_4y5k8m2n",
            flyRegion: "iad",
            trackedImageTag: IMAGE_TAG,
            gatewayToken: GATEWAY_TOKEN,
        }),
    ];
}

/** The props of the named resource of that type (throws when the fixture has none). */
export function propsOf(stack: HarnessResource[], type: string, name?: string): Record<string, any> {
    const found = stack.find((r) => r.type === type && (name === undefined || r.name === name));
    if (!found) throw new Error(`fixture has no ${type} ${name ?? ""}`);
    return found.props as Record<string, any>;
}

/** A stack that breaks every rule once; `expectedBadViolations` lists what the pack must say. */
export function badStack(): HarnessResource[] {
    const stack = goodStack();
    propsOf(stack, TYPES.dockerImage).build.platform = "linux/arm64";
    const version = propsOf(stack, COMPONENT_TYPES.workerImageVersion);
    version.openclawPin = "^2026.2.9";
    version.registryApp = "kiloclaw-dev";
    version.envLocalKeys = ["DATABASE_URL", "NEXTAUTH_SECRET", "OPENROUTER_API_KEY"];
    version.workerSettings = {
        WORKER_ENV: "development",
        DEV_MODE: "true",
        KILOCODE_API_BASE_URL: "https://abc123.ngrok-free.dev/api/openrouter",
        OPENCLAW_ALLOWED_ORIGINS: "http://localhost:3000",
    };
    propsOf(stack, TYPES.command, "image-validation").environment.EXPECTED_OPENCLAW_VERSION = "2026.2.22";
    propsOf(stack, TYPES.command, "registry-push").environment.TARGET_IMAGE = `registry.fly.io/kiloclaw-dev:${IMAGE_TAG}`;
    const warm = propsOf(stack, TYPES.warmMachine);
    warm.image = `registry.fly.io/kiloclaw-dev:${IMAGE_TAG}`;
    warm.env = { KILOCODE_API_KEY: "warm", FLY_API_TOKEN: FLY_TOKEN };
    stack.push(
        {
            type: TYPES.command,
            name: "registry-login",
            props: { create: `docker login registry.fly.io -u x -p '${FLY_TOKEN}'` },
        },
        {
            type: TYPES.command,
            name: "cleanup",
            props: { create: "echo ok", delete: "fly apps destroy dev-0123456789abcdef0123 --yes" },
        },
    );
    return stack;
}

/** [policy, resource name or "(stack)"] for every violation badStack() must produce. */
export const expectedBadViolations: Array<[string, string]> = [
    ["openclaw-version-pinned", "image-version"],
    ["openclaw-version-consistent", "image-version"],
    ["image-platform-amd64", "image"],
    ["registry-app-matches-worker", "image-version"],
    ["registry-app-matches-worker", "registry-push"],
    ["registry-app-matches-worker", "warm-machine"],
    ["no-secret-overrides-in-env-local", "image-version"],
    ["warm-machine-placeholder-key", "warm-machine"],
    ["no-secrets-in-commands", "registry-login"],
    ["destroy-through-worker", "cleanup"],
    ["dev-mode-matches-user", "instance"],
    ["tunnel-base-url", "image-version"],
    ["allowed-origins-include-app", "instance"],
];
