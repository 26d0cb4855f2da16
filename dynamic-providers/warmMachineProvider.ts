// Warms a new image on Fly: a throwaway machine pulls it (so the first real
// provision does not time out with 408), then it is destroyed — always, even
// when the wait fails.
import * as pulumi from "@pulumi/pulumi";
import { WarmMachineInputs, WarmMachineOutputs } from "../lib/contract";
import * as fly from "./flyMachinesClient";
import { configureFromStack, stackAccess } from "./settings";

// The props live in the shared contract (lib/contract.ts).
export type { WarmMachineInputs, WarmMachineOutputs };

/** Metadata key marking warm machines as ours. */
export const WARM_OWNER_KEY = "kiloclaw_rollout_warm";

const REPLACE_ON = ["appName", "region", "image", "env", "owner"] as const;

/** Fly's URL and token as the stack config says today (never from the state: a rotated token must work for delete too). */
function api(): fly.FlyApi {
    const access = stackAccess();
    return { baseUrl: access.flyApiUrl, token: access.flyApiToken };
}

/**
 * Destroys every warm machine of `owner` but `keep`: left by a run that died before its cleanup, or
 * a twin made when Fly acted on a create whose answer was lost after the lookup found nothing.
 */
async function removeLeftovers(props: WarmMachineInputs, keep?: string): Promise<number> {
    const listed = await fly.listMachines(api(), props.appName, { [WARM_OWNER_KEY]: props.owner });
    const leftovers = listed.filter((m) => m.id !== keep && m.state !== "destroyed" && m.state !== "destroying");
    for (const m of leftovers) await fly.destroyMachine(api(), props.appName, m.id);
    return leftovers.length;
}

async function destroyAndConfirm(props: WarmMachineInputs, id: string): Promise<void> {
    await fly.destroyMachine(api(), props.appName, id);
    if (!(await fly.waitForDestroyed(api(), props.appName, id, 30))) {
        const m = await fly.getMachine(api(), props.appName, id);
        throw new Error(`machine ${id} is still ${m?.state} after destroy`);
    }
}

function deadlineError(props: WarmMachineInputs, id: string, wait: fly.WaitOutcome): Error {
    return new Error(
        `The warm machine ${id} in ${props.appName} did not reach "started" within ${props.timeoutSeconds}s ` +
            `(Fly answered 408 ${wait.timeouts} time(s); last state "${wait.lastState}"). A first pull of a new tag takes 1-3 minutes ` +
            "and continues on Fly's side: run `pulumi up` again, or raise kiloclaw:warmTimeoutSeconds. " +
            `Machines stuck in "replacing" for longer: check \`fly machines list --app ${props.appName}\`.`,
    );
}

// `satisfies` keeps the exact method types (create always returns outs) for callers such as the tests.
export const warmMachineProvider = {
    configure: configureFromStack,

    async diff(_id: string, olds: WarmMachineOutputs, news: WarmMachineInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACE_ON.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
        // State written before access left it may still hold the Fly URL and token: an update drops them.
        const legacyAccess = "flyApiToken" in olds || "flyApiUrl" in olds;
        const changes = replaces.length > 0 || legacyAccess || olds.timeoutSeconds !== news.timeoutSeconds || olds.waitSeconds !== news.waitSeconds;
        return { changes, replaces: [...replaces], deleteBeforeReplace: false };
    },

    async create(inputs: WarmMachineInputs): Promise<{ id: string; outs: WarmMachineOutputs }> {
        let leftoversRemoved = await removeLeftovers(inputs);
        const machine = await fly.createMachine(api(), inputs.appName, {
            name: `warm-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
            region: inputs.region,
            config: {
                image: inputs.image,
                env: inputs.env,
                guest: { cpu_kind: "shared", cpus: 1, memory_mb: 256 },
                auto_destroy: true,
                restart: { policy: "no" },
                metadata: { [WARM_OWNER_KEY]: inputs.owner },
            },
        });
        let wait: fly.WaitOutcome | undefined;
        let waitError: Error | undefined;
        try {
            leftoversRemoved += await removeLeftovers(inputs, machine.id);
            wait = await fly.waitForStarted(api(), inputs.appName, machine.id, {
                deadline: Date.now() + inputs.timeoutSeconds * 1000,
                waitSeconds: inputs.waitSeconds ?? fly.FLY_MAX_WAIT_SECONDS,
                image: inputs.image,
            });
            if (!wait.reached) waitError = deadlineError(inputs, machine.id, wait);
        } catch (err) {
            waitError = err as Error;
        }
        try {
            await destroyAndConfirm(inputs, machine.id);
        } catch (err) {
            const why = waitError ? `${waitError.message} Then destroying it failed too` : "Destroying it failed";
            throw new Error(
                `${why}: ${(err as Error).message}. The machine ${machine.id} is marked ${WARM_OWNER_KEY}=${inputs.owner}; ` +
                    `the next \`pulumi up\` removes it, or run \`fly machine destroy ${machine.id} --app ${inputs.appName} --force\`.`,
            );
        }
        if (waitError || !wait) throw waitError;
        const outs: WarmMachineOutputs = { ...inputs, machineId: machine.id, waitTimeouts: wait.timeouts, leftoversRemoved };
        return { id: machine.id, outs };
    },

    async update(_id: string, olds: WarmMachineOutputs, news: WarmMachineInputs): Promise<{ outs: WarmMachineOutputs }> {
        // Only the deadlines changed (or legacy access is dropped from the state): nothing to do on Fly.
        return { outs: { ...news, machineId: olds.machineId, waitTimeouts: olds.waitTimeouts, leftoversRemoved: olds.leftoversRemoved } };
    },

    async delete(_id: string, props: WarmMachineOutputs): Promise<void> {
        // The machine was destroyed at create; only a crashed run's leftover can remain.
        await removeLeftovers(props);
    },
} satisfies pulumi.dynamic.ResourceProvider<WarmMachineInputs, WarmMachineOutputs>;
