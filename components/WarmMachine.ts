import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider, WarmMachineInputs } from "../dynamic-providers/warmMachineProvider";
import { COMPONENT_TYPES, DYNAMIC_MODULE } from "../lib/contract";

/** Fly's URL and token are not args: the provider reads them from the stack config each time it runs. */
export interface WarmMachineArgs {
    /** The Fly app whose registry holds the image (the runbook warms in the worker's registry app). */
    appName: pulumi.Input<string>;
    region: pulumi.Input<string>;
    /** The pushed image, `<registry>/<app>:<tag>[@digest]`. */
    image: pulumi.Input<string>;
    /** Marks the machine so a crashed run's leftover is found and removed (the stack's name). */
    owner: pulumi.Input<string>;
    timeoutSeconds?: pulumi.Input<number>;
    /** Seconds per call to Fly's wait endpoint (at most 60). */
    waitSeconds?: pulumi.Input<number>;
}

type WarmMachineProps = { [K in keyof WarmMachineInputs]: pulumi.Input<WarmMachineInputs[K]> };

class WarmMachineResource extends pulumi.dynamic.Resource {
    public readonly machineId!: pulumi.Output<string>;
    public readonly waitTimeouts!: pulumi.Output<number>;

    constructor(name: string, props: WarmMachineProps, opts: pulumi.CustomResourceOptions) {
        super(warmMachineProvider, name, { machineId: undefined, waitTimeouts: undefined, ...props }, opts, DYNAMIC_MODULE, "WarmMachine");
    }
}

/** Pulls a new image onto Fly with a throwaway machine (placeholder key only), then destroys it. */
export class WarmMachine extends pulumi.ComponentResource {
    /** The throwaway machine's id (already destroyed). */
    public readonly machineId: pulumi.Output<string>;
    /** How many times Fly answered 408 while the image was pulled. */
    public readonly waitTimeouts: pulumi.Output<number>;

    constructor(name: string, args: WarmMachineArgs, opts?: pulumi.ComponentResourceOptions) {
        super(COMPONENT_TYPES.warmMachine, name, {}, opts);
        const machine = new WarmMachineResource(
            `${name}-machine`,
            {
                appName: args.appName,
                region: args.region,
                image: args.image,
                // The runbook's placeholder: the image pulls and starts, no real key is exposed.
                env: { KILOCODE_API_KEY: "warm" },
                owner: args.owner,
                timeoutSeconds: args.timeoutSeconds ?? 300,
                waitSeconds: args.waitSeconds ?? 60,
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.machineId = machine.machineId;
        this.waitTimeouts = machine.waitTimeouts;
        this.registerOutputs({ machineId: this.machineId, waitTimeouts: this.waitTimeouts });
    }
}
