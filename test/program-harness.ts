// Runs `rollout(config)` in this process under Pulumi's mocks and records what
// it registers (type, name, URN, parent, dependencies, inputs) and its outputs.
//
// The mocks API shows a mock only a resource's type, name and inputs; parent and
// dependencies sit on the register request. `setMocks(mocks)` is
// `setMockOptions(new MockMonitor(mocks))` plus feature flags, so the harness
// installs a subclass of the SDK's MockMonitor with `setMockOptions`, and runs
// the program inside `runInPulumiStack`, which reads the monitor's features the
// way the language host does. Each run gets a fresh monitor, config and root
// stack; runs are serialized because the runtime's state is process-wide.
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import { loadRolloutConfig, RolloutConfig } from "../lib/config";
import { rollout, RolloutOutputs } from "../rollout";
import { mockOutputs } from "./mock-outputs";
import type { HarnessResource } from "./policy-harness";
import { scratchDir } from "./scratch";

export const PROJECT = "kiloclaw-rollout";

export interface RegisteredResource {
    type: string;
    name: string;
    urn: string;
    custom: boolean;
    /** The parent's URN ("" for the root stack). */
    parent: string;
    /** URNs this resource depends on (explicit dependsOn and the resources behind its Output inputs). */
    dependencies: string[];
    /** As a provider would receive them: secrets stay wrapped (see isSecretValue / unwrapSecrets). */
    inputs: Record<string, any>;
    /** What the engine would store: the mocked provider's state, or what a component passed to registerOutputs. */
    outputs: Record<string, any>;
}

export interface ProgramRun {
    /** The message of the error the program threw (a configuration error, say); unset when it ran. */
    error?: string;
    resources: RegisteredResource[];
    /** The stack outputs (undefined while unknown during a preview) and whether each is secret. */
    outputs: Record<string, { value: unknown; secret: boolean }>;
    /** The directory the program ran in (the project directory: relative paths in inputs resolve against it). */
    projectDir: string;
}

/** What a mocked provider answers for one resource: its output state (merged over its inputs). */
export type MockOutputs = (type: string, inputs: Record<string, any>, name: string) => Record<string, unknown>;

export interface ProgramOptions {
    /** `pulumi config` values, e.g. {"kiloclaw:userId": "…"}. */
    config?: Record<string, string>;
    /** Keys of `config` that are secrets. */
    secretKeys?: string[];
    stack?: string;
    /** Run as `pulumi preview` does: outputs the mocks leave out are unknown. */
    preview?: boolean;
    /** Default: mockOutputs from mock-outputs.ts. */
    outputs?: MockOutputs;
    /** Adjust the loaded config before the program runs (the config still comes from `config`). */
    adjust?: (config: RolloutConfig) => RolloutConfig;
    /** The cwd the program runs in, as the engine runs it in the project directory. Default: one scratch dir per process. */
    projectDir?: string;
    /** The program's modules, e.g. from a copy of the project elsewhere (loadProgram). Default: this checkout's. */
    program?: ProgramModules;
}

/** What index.ts runs: the config loader and the rollout. */
export interface ProgramModules {
    loadRolloutConfig: typeof loadRolloutConfig;
    rollout: typeof rollout;
}

/** The program of a copy of this project at `projectDir` (its node_modules resolving to this checkout's, so the SDK is shared). */
export function loadProgram(projectDir: string): ProgramModules {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { loadRolloutConfig } = require(path.join(projectDir, "lib", "config.ts")) as ProgramModules;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { rollout } = require(path.join(projectDir, "rollout.ts")) as ProgramModules;
    return { loadRolloutConfig, rollout };
}

class RecordingMonitor extends MockMonitor {
    readonly registered: RegisteredResource[] = [];

    async registerResource(req: any, callback: (err: any, response: any) => void): Promise<void> {
        const entry: RegisteredResource = {
            type: req.getType(),
            name: req.getName(),
            urn: "",
            custom: req.getCustom(),
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            inputs: pulumi.runtime.deserializeProperties(req.getObject()),
            outputs: {},
        };
        this.registered.push(entry);
        return super.registerResource(req, (err, response) => {
            if (response) {
                entry.urn = response.getUrn();
                if (entry.custom) entry.outputs = pulumi.runtime.deserializeProperties(response.getObject());
            }
            callback(err, response);
        });
    }

    registerResourceOutputs(req: any, callback: (err: any, response: any) => void): void {
        const entry = this.registered.find((r) => r.urn === req.getUrn());
        if (entry) entry.outputs = pulumi.runtime.deserializeProperties(req.getOutputs());
        super.registerResourceOutputs(req, callback);
    }
}

let queue: Promise<unknown> = Promise.resolve();
let harnessProjectDir: string | undefined;

/** Runs the rollout as `pulumi up` (or preview) would, against mocked providers. Safe to call many times in one process. */
export function runProgram(options: ProgramOptions = {}): Promise<ProgramRun> {
    const run = queue.then(() => runOnce(options));
    queue = run.catch(() => undefined);
    return run;
}

async function runOnce(options: ProgramOptions): Promise<ProgramRun> {
    const answer = options.outputs ?? mockOutputs;
    const monitor = new RecordingMonitor({
        newResource: (args) => ({
            id: args.custom ? `${args.name}-id` : undefined,
            state: { ...args.inputs, ...answer(args.type, args.inputs, args.name) },
        }),
        call: (args) => args.inputs,
    });
    pulumi.runtime.setMockOptions(monitor, PROJECT, options.stack ?? "test", options.preview ?? false);
    // The engine runs the program in the project directory; KiloclawImage stages its build context there.
    // A scratch dir by default keeps the staged contexts out of this checkout.
    const projectDir = options.projectDir ?? (harnessProjectDir ??= scratchDir("kiloclaw-harness-project-"));
    const savedCwd = process.cwd();
    process.chdir(projectDir);
    // The preflight asks the real worker, Docker and Fly; under mocks only a test that points it at emulators turns it on.
    pulumi.runtime.setAllConfig({ "kiloclaw:preflight": "false", ...options.config }, options.secretKeys ?? []);
    try {
        // Configuration errors come before the first resource, as in index.ts.
        let config: RolloutConfig;
        try {
            config = (options.program?.loadRolloutConfig ?? loadRolloutConfig)();
            if (options.adjust) config = options.adjust(config);
        } catch (err) {
            return { error: (err as Error).message, resources: [], outputs: {}, projectDir };
        }
        let returned: Record<string, pulumi.Output<unknown>> = {};
        const outputs: ProgramRun["outputs"] = {};
        try {
            await pulumi.runtime.runInPulumiStack(async () => {
                const declared: RolloutOutputs = (options.program?.rollout ?? rollout)(config);
                returned = Object.fromEntries(Object.entries(declared).map(([name, value]) => [name, pulumi.output<unknown>(value)]));
                for (const [name, output] of Object.entries(returned)) {
                    outputs[name] = { value: undefined, secret: false };
                    // Fires once the value is known: during a preview an unknown output stays undefined.
                    output.apply((known) => (outputs[name].value = known));
                }
                return declared;
            });
        } catch (err) {
            return { error: String((err as Error)?.stack ?? err), resources: monitor.registered, outputs: {}, projectDir };
        }
        for (const [name, output] of Object.entries(returned)) outputs[name].secret = await pulumi.isSecret(output);
        return { resources: monitor.registered, outputs, projectDir };
    } finally {
        // Waits for every outstanding registration, then drops the monitor.
        await pulumi.runtime.disconnect();
        process.chdir(savedCwd);
    }
}

/** True for the SDK's secret envelope, as mocks and providers receive a secret input. */
export function isSecretValue(v: unknown): v is { value: any } {
    return !!v && typeof v === "object" && (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig;
}

/** A secret as mocks and providers receive it: the SDK's secret envelope. */
export function secretEnvelope(value: unknown): Record<string, unknown> {
    return { [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value };
}

/** Replaces secret envelopes with their plain values (what a policy sees). */
export function unwrapSecrets(v: any): any {
    if (isSecretValue(v)) return unwrapSecrets(v.value);
    if (Array.isArray(v)) return v.map(unwrapSecrets);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
    return v;
}

/** Registered resources of one type. */
export function resourcesOfType(run: ProgramRun, type: string): RegisteredResource[] {
    return run.resources.filter((r) => r.type === type);
}

/** The one registered resource of a type; fails with what was registered instead. */
export function findResource(run: ProgramRun, type: string): RegisteredResource {
    const found = resourcesOfType(run, type);
    if (found.length !== 1) {
        throw new Error(`expected one ${type}, got ${found.length}; registered: ${run.resources.map((x) => x.type).join(", ")}`);
    }
    return found[0];
}

/** The resources of a run as the policy pack sees them: plain inputs for resource policies, outputs for stack policies. */
export function policyResources(run: ProgramRun): HarnessResource[] {
    const plain = (values: Record<string, any>) => {
        const { __provider, ...rest } = unwrapSecrets(values);
        return rest;
    };
    return run.resources
        .filter((r) => r.type !== "pulumi:pulumi:Stack")
        .map((r) => ({ type: r.type, name: r.name, urn: r.urn, props: plain(r.inputs), outputs: plain(r.outputs) }));
}

/** The resource a resource was registered under (undefined for the root stack). */
export function parentOf(run: ProgramRun, child: RegisteredResource): RegisteredResource | undefined {
    return run.resources.find((r) => r.urn === child.parent);
}

export interface FakeCheckout {
    kiloclawDir: string;
    root: string;
}

/** A cloud/ checkout with kiloclaw/{Dockerfile,.dev.vars} and an optional .env.development.local. */
export function fakeCheckout(opts: { dockerfile?: string; devVars?: string; envLocal?: string } = {}): FakeCheckout {
    const root = scratchDir("kiloclaw-cloud-");
    const kiloclawDir = path.join(root, "kiloclaw");
    fs.mkdirSync(kiloclawDir);
    fs.writeFileSync(
        path.join(kiloclawDir, "Dockerfile"),
        opts.dockerfile ?? "FROM debian:bookworm-slim\nRUN npm install -g openclaw@2026.2.9 && openclaw --version\nEXPOSE 18789\n",
    );
    fs.writeFileSync(path.join(kiloclawDir, "start-openclaw.sh"), "#!/bin/bash\n");
    fs.writeFileSync(
        path.join(kiloclawDir, ".dev.vars"),
        opts.devVars ??
            [
                "INTERNAL_API_SECRET=internal-secret-from-dev-vars",
                "FLY_API_TOKEN=fly-token-from-dev-vars",
                "GATEWAY_TOKEN_SECRET=gw-secret",
                "WORKER_ENV=development",
                "FLY_REGISTRY_APP=kiloclaw-dev",
                "FLY_IMAGE_TAG=dev-1771448521",
                "OPENCLAW_VERSION=2026.2.9",
                "",
            ].join("\n"),
    );
    if (opts.envLocal !== undefined) fs.writeFileSync(path.join(root, ".env.development.local"), opts.envLocal);
    return { kiloclawDir, root };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const requireFromString: (code: string, filename: string) => { handler(): unknown } = require("require-from-string");

/** Loads a provider from the text Pulumi stores in the state (`__provider`), the way the dynamic-provider host does. */
export function loadSerializedProvider(text: string, name: string): any {
    return requireFromString(text, `${name}.js`).handler();
}
