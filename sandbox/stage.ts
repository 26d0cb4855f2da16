// One developer's world for driving the dynamic providers without the engine:
// a Fly emulator, a worker emulator reading its own .dev.vars, a user, and the
// provider inputs a rollout would pass. Shared by the fault suite and the benchmarks.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { warmMachineProvider, WarmMachineInputs } from "../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider, WorkerImageVersionInputs } from "../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider, WorkerInstanceInputs } from "../dynamic-providers/workerInstanceProvider";
import { configureFromStack } from "../dynamic-providers/settings";
import { devFlyAppName } from "../lib/identity";
import { FlyEmulator, FlyEmulatorOptions } from "./emulators/fly";
import { WorkerEmulator, WorkerEmulatorOptions } from "./emulators/worker";

export const FLY_TOKEN = "fm2_faults-fly-token";
export const INTERNAL_KEY = "faults-internal-key";
export const GATEWAY_SECRET = "faults-gateway-secret";
export const REGISTRY_APP = "kiloclaw-faults";
export const TAG = "dev-fa0175fa0175";
export const VERSION = "2026.2.9";
/** Emulator seconds in real ms: one Fly wait of 60 "seconds" lasts 1.2 s. */
export const MS_PER_SECOND = 20;
export const ONE_WAIT_MS = 60 * MS_PER_SECOND;

export const warm = warmMachineProvider as Required<typeof warmMachineProvider>;
export const workerVersion = workerImageVersionProvider as Required<typeof workerImageVersionProvider>;
export const instance = workerInstanceProvider as Required<typeof workerInstanceProvider>;

/** One developer's world: a Fly, a worker reading its own .dev.vars, a user. */
export interface Stage {
    fly: FlyEmulator;
    worker: WorkerEmulator;
    workerUrl: string;
    devVarsPath: string;
    userId: string;
    /** A private scratch dir (TMPDIR of scripts, scratchDir of a Docker-mode Fly). */
    dir: string;
    /** Extra workers started by the test (e.g. a restarted `pnpm start`), closed with the stage. */
    extraWorkers: WorkerEmulator[];
}

export interface StageOptions {
    fly?: FlyEmulatorOptions;
    worker?: Partial<WorkerEmulatorOptions>;
    /** Extra or overriding .dev.vars lines. */
    devVars?: Record<string, string>;
    userId?: string;
}

export function uniqueUser(prefix = "fault-user"): string {
    return `${prefix}-${randomBytes(4).toString("hex")}`;
}

export function writeDevVars(file: string, vars: Record<string, string>): void {
    fs.writeFileSync(
        file,
        Object.entries(vars)
            .map(([k, v]) => `${k}=${v}`)
            .join("\n") + "\n",
    );
}

export async function startStage(opts: StageOptions = {}): Promise<Stage> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-stage-"));
    const devVarsPath = path.join(dir, ".dev.vars");
    writeDevVars(devVarsPath, {
        INTERNAL_API_SECRET: INTERNAL_KEY,
        GATEWAY_TOKEN_SECRET: GATEWAY_SECRET,
        FLY_API_TOKEN: FLY_TOKEN,
        WORKER_ENV: "development",
        FLY_REGISTRY_APP: REGISTRY_APP,
        FLY_IMAGE_TAG: "dev-000000000000",
        OPENCLAW_VERSION: "2026.2.8",
        ...opts.devVars,
    });
    // A Docker-mode Fly keeps its short-lived login and env files in the stage's dir, where the leak check looks.
    const flyOpts: FlyEmulatorOptions = { token: FLY_TOKEN, msPerSecond: MS_PER_SECOND, ...opts.fly };
    if (flyOpts.docker) flyOpts.docker = { scratchDir: dir, ...flyOpts.docker };
    const fly = await FlyEmulator.start(flyOpts);
    const worker = await WorkerEmulator.start({ devVarsPath, flyApiUrl: fly.url, msPerSecond: MS_PER_SECOND, ...opts.worker });
    const stage: Stage = { fly, worker, workerUrl: worker.url, devVarsPath, userId: opts.userId ?? uniqueUser(), dir, extraWorkers: [] };
    await configureStage(stage);
    return stage;
}

/**
 * What the engine does before a provider runs: hands it the stack config (`configure`), from
 * which it reads the worker's and Fly's URLs and credentials. `over` sets other `kiloclaw:` values.
 */
export async function configureStage(stage: Stage, over: Record<string, string> = {}): Promise<void> {
    const values: Record<string, string> = {
        "kiloclaw:workerUrl": stage.workerUrl,
        "kiloclaw:internalApiKey": INTERNAL_KEY,
        "kiloclaw:flyApiUrl": stage.fly.url,
        "kiloclaw:flyApiToken": FLY_TOKEN,
        "kiloclaw:kiloclawDir": path.dirname(stage.devVarsPath),
        ...over,
    };
    await configureFromStack({ config: { get: (key: string) => values[key], require: (key: string) => values[key] } });
}

export async function closeStage(stage: Stage): Promise<void> {
    for (const w of stage.extraWorkers) await w.close();
    await stage.worker.close();
    await stage.fly.close();
    fs.rmSync(stage.dir, { recursive: true, force: true });
}

export const IMAGE = `registry.fly.io/${REGISTRY_APP}:${TAG}`;

export function warmInputs(stage: Stage, over: Partial<WarmMachineInputs> = {}): WarmMachineInputs {
    return {
        appName: REGISTRY_APP,
        region: "iad",
        image: IMAGE,
        env: { KILOCODE_API_KEY: "warm" },
        owner: `kiloclaw-rollout.${stage.userId}`,
        timeoutSeconds: 30,
        waitSeconds: 60,
        ...over,
    };
}

export function versionInputs(stage: Stage, over: Partial<WorkerImageVersionInputs> = {}): WorkerImageVersionInputs {
    return {
        imageTag: TAG,
        openclawVersion: VERSION,
        publish: true,
        ...over,
    };
}

export function instanceInputs(stage: Stage, over: Partial<WorkerInstanceInputs> = {}): WorkerInstanceInputs {
    return {
        userId: stage.userId,
        imageTag: TAG,
        imageRef: IMAGE,
        openclawVersion: VERSION,
        region: "iad",
        kilocodeApiKey: "test-key",
        expectedFlyAppName: devFlyAppName(stage.userId),
        timeoutSeconds: 20,
        pollMs: 20,
        ...over,
    };
}
