// Warms a new image on Fly: a throwaway machine pulls it (so the first real
// provision does not time out with 408), then it is destroyed — always, even
// when the wait fails.
import * as pulumi from "@pulumi/pulumi";
import { WarmMachineInputs, WarmMachineOutputs } from "../lib/contract";
import * as fly from "./flyMachinesClient";

// The props live in the shared contract (lib/contract.ts).
export type { WarmMachineInputs, WarmMachineOutputs };

/** Metadata key marking warm machines as ours. */
export const WARM_OWNER_KEY = "kiloclaw_rollout_warm";

const REPLACE_ON = ["flyApiUrl", "appName", "region", "image", "env", "owner"] as const;

function api(props: { flyApiUrl: string; flyApiToken: string }): fly.FlyApi {
    return { baseUrl: props.flyApiUrl, token: props.flyApiToken };
}

/**
 * Destroys every warm machine of `owner` but `keep`: left by a run that died before its cleanup,
 * or made twice by a create retried after Fly acted on a dropped connection.
 */
async function removeLeftovers(props: WarmMachineInputs, keep?: string): Promise<number> {
    const listed = await fly.listMachines(api(props), props.appName, { [WARM_OWNER_KEY]: props.owner });
    const leftovers = listed.filter((m) => m.id !== keep && m.state !== "destroyed" && m.state !== "destroying");
    for (const m of leftovers) await fly.destroyMachine(api(props), props.appName, m.id);
    return leftovers.length;
}

async function destroyAndConfirm(props: WarmMachineInputs, id: string): Promise<void> {
    await fly.destroyMachine(api(props), props.appName, id);
    const gone = await fly.waitForState(api(props), props.appName, id, "destroyed", 30);
    if (!gone.reached) {
        const m = await fly.getMachine(api(props), props.appName, id);
        if (m && m.state !== "destroyed") throw new Error(`machine ${id} is still ${m.state} after destroy`);
    }
}

export const warmMachineProvider: pulumi.dynamic.ResourceProvider = {
    async diff(_id: string, olds: WarmMachineOutputs, news: WarmMachineInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACE_ON.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
        const changes = replaces.length > 0 || olds.timeoutSeconds !== news.timeoutSeconds || olds.flyApiToken !== news.flyApiToken;
        return { changes, replaces: [...replaces], deleteBeforeReplace: false };
    },

    async create(inputs: WarmMachineInputs): Promise<pulumi.dynamic.CreateResult> {
        let leftoversRemoved = await removeLeftovers(inputs);
        const machine = await fly.createMachine(api(inputs), inputs.appName, {
            name: `warm-${Date.now().toString(36)}`,
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
        const deadline = Date.now() + inputs.timeoutSeconds * 1000;
        let waitTimeouts = 0;
        let lastState = machine.state;
        let waitError: Error | undefined;
        try {
            leftoversRemoved += await removeLeftovers(inputs, machine.id);
            for (;;) {
                const remaining = Math.ceil((deadline - Date.now()) / 1000);
                if (remaining <= 0) {
                    waitError = new Error(
                        `The warm machine ${machine.id} in ${inputs.appName} did not reach "started" within ${inputs.timeoutSeconds}s ` +
                            `(Fly answered 408 ${waitTimeouts} time(s); last state "${lastState}"). A first pull of a new tag takes 1-3 minutes ` +
                            `and continues on Fly's side: run \`pulumi up\` again, or raise kiloclaw:warmTimeoutSeconds. ` +
                            `Machines stuck in "replacing" for longer: check \`fly machines list --app ${inputs.appName}\`.`,
                    );
                    break;
                }
                const result = await fly.waitForState(api(inputs), inputs.appName, machine.id, "started", Math.min(inputs.waitSeconds ?? fly.FLY_MAX_WAIT_SECONDS, remaining));
                if (result.reached) break;
                waitTimeouts++;
                lastState = result.currentState ?? lastState;
                if (lastState === "failed") {
                    // The image was pulled but its container died: more waiting cannot help.
                    waitError = new Error(
                        `The warm machine ${machine.id} in ${inputs.appName} failed to start (Fly state "failed"): the image ${inputs.image} does not run. ` +
                            `\`fly logs --app ${inputs.appName} --no-tail\` shows why (the runbook's "Machine won't start"); fix the image, then run \`pulumi up\` again.`,
                    );
                    break;
                }
            }
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
        if (waitError) throw waitError;
        const outs: WarmMachineOutputs = { ...inputs, machineId: machine.id, waitTimeouts, leftoversRemoved };
        return { id: machine.id, outs };
    },

    async update(_id: string, olds: WarmMachineOutputs, news: WarmMachineInputs): Promise<pulumi.dynamic.UpdateResult> {
        // Only the token or the deadline changed: nothing to do on Fly.
        return { outs: { ...olds, ...news } };
    },

    async delete(_id: string, props: WarmMachineOutputs): Promise<void> {
        // The machine was destroyed at create; only a crashed run's leftover can remain.
        await removeLeftovers(props);
    },
};
