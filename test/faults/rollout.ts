// A rollout as `pulumi up` drives it, without the engine: the three dynamic
// providers in the program's order (warm → worker image version → worker
// instance), each against emulators the fault tests can break.
import { WarmMachineInputs, WarmMachineOutputs } from "../../dynamic-providers/warmMachineProvider";
import { WorkerImageVersionInputs, WorkerImageVersionOutputs } from "../../dynamic-providers/workerImageVersionProvider";
import { WorkerInstanceInputs, WorkerInstanceOutputs } from "../../dynamic-providers/workerInstanceProvider";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { until } from "../../sandbox/emulators/server";
import {
    closeStage,
    FLY_TOKEN,
    instance,
    instanceInputs,
    Stage,
    StageOptions,
    startStage,
    versionInputs,
    warm,
    warmInputs,
    workerVersion,
} from "../../sandbox/stage";
import { LeakScope } from "./leaks";

export * from "../../sandbox/stage";

/** Starts a stage, runs `body`, and always closes the stage. */
export async function withStage(opts: StageOptions, body: (stage: Stage) => Promise<void>): Promise<void> {
    const stage = await startStage(opts);
    try {
        await body(stage);
    } finally {
        await closeStage(stage);
    }
}

/** The Cloud app's answer when it still records an instance for the user (a fault rule for the worker emulator). */
export const PROVISION_409 = { method: "POST", path: "/api/platform/provision", status: 409, body: { error: "User already has an active instance" } };

/** What warm-child.ts reads on stdin: the WarmMachine inputs and the stack config it configures the provider with. */
export function warmChildStdin(stage: Stage, inputs: WarmMachineInputs): string {
    return JSON.stringify({ inputs, config: { "kiloclaw:flyApiUrl": stage.fly.url, "kiloclaw:flyApiToken": FLY_TOKEN } });
}

/** What a fault run may leave in this stage. */
export function stageScope(stage: Stage, extra: LeakScope = {}): LeakScope {
    return {
        flies: [stage.fly],
        workers: [stage.worker, ...stage.extraWorkers].map((worker) => ({ worker, userIds: [stage.userId] })),
        scratchDirs: [stage.dir],
        ...extra,
    };
}

export interface RolloutOptions {
    /** Warm the image first (default true), as `kiloclaw:warm` does. */
    warm?: boolean;
    /** The developer restarts `pnpm start` after .dev.vars changed (default true); false = the "old tag" trap. */
    restartWorker?: boolean;
    warmOver?: Partial<WarmMachineInputs>;
    versionOver?: Partial<WorkerImageVersionInputs>;
    instanceOver?: Partial<WorkerInstanceInputs>;
}

export type Step = "warm" | "worker-image" | "instance";

export interface RolloutResult {
    completed: boolean;
    /** The step that failed, and its error. */
    failedStep?: Step;
    error?: Error;
    warm?: WarmMachineOutputs;
    version?: WorkerImageVersionOutputs;
    instance?: { id: string; outs: WorkerInstanceOutputs };
}

/** One `pulumi up`: stops at the first failing step, like the engine. */
export async function rollout(stage: Stage, opts: RolloutOptions = {}): Promise<RolloutResult> {
    const result: RolloutResult = { completed: false };
    let step: Step = "warm";
    try {
        if (opts.warm !== false) result.warm = (await warm.create(warmInputs(stage, opts.warmOver))).outs as WarmMachineOutputs;
        step = "worker-image";
        result.version = (await workerVersion.create(versionInputs(stage, opts.versionOver))).outs as WorkerImageVersionOutputs;
        if (opts.restartWorker !== false) await stage.worker.restart();
        step = "instance";
        const created = await instance.create(instanceInputs(stage, opts.instanceOver));
        result.instance = { id: created.id, outs: created.outs as WorkerInstanceOutputs };
        result.completed = true;
    } catch (err) {
        result.failedStep = step;
        result.error = err as Error;
    }
    return result;
}

/** `pulumi destroy` of what a completed rollout recorded (the warm machine and .dev.vars need nothing). */
export async function destroyRollout(result: RolloutResult): Promise<void> {
    if (result.instance) await instance.delete(result.instance.id, result.instance.outs);
    if (result.warm) await warm.delete(result.warm.machineId, result.warm);
}

/** The rollout must have stopped at `step`; returns its error for the message checks. */
export function stoppedAt(result: RolloutResult, step: Step): Error {
    if (result.completed) throw new Error(`expected the rollout to stop at ${step}, but it completed`);
    if (result.failedStep !== step)
        throw new Error(`expected the rollout to stop at ${step}, it stopped at ${result.failedStep}: ${result.error?.message}`);
    return result.error!;
}

export function completed(result: RolloutResult): Required<Pick<RolloutResult, "instance">> & RolloutResult {
    if (!result.completed) throw new Error(`expected the rollout to complete; it stopped at ${result.failedStep}: ${result.error?.message}`);
    return result as Required<Pick<RolloutResult, "instance">> & RolloutResult;
}

/** Waits (with a deadline) until the Fly emulator shows a machine in `app` matching `pick`. */
export async function machineAppears(
    fly: FlyEmulator,
    app: string,
    pick: (m: ReturnType<FlyEmulator["machines"]>[number]) => boolean,
    timeoutMs = 60_000,
) {
    let found: ReturnType<FlyEmulator["machines"]>[number] | undefined;
    const ok = await until(() => (found = fly.machines(app).find(pick)) !== undefined, timeoutMs, 10);
    if (!ok || !found) throw new Error(`no matching machine appeared in ${app} within ${timeoutMs} ms`);
    return found;
}
