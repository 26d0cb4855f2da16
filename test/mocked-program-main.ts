// Runs index.ts under Pulumi's mocks in this process and prints, as JSON, every
// resource it registered (type, name, parent, dependencies, inputs) and the
// stack outputs. Each configuration gets its own process: the program reads
// its config once, at import.
import * as pulumi from "@pulumi/pulumi";
import { mockOutputs } from "./mock-outputs";
import type { RegisteredResource as Registered } from "./mocked-program";

interface Input {
    stack?: string;
    config: Record<string, string>;
    secretKeys?: string[];
}

async function main(): Promise<void> {
    const input: Input = JSON.parse(process.env.MOCKED_PROGRAM_INPUT ?? "{}");
    const registered: Registered[] = [];
    const byName = new Map<string, Registered>();
    pulumi.runtime.setMocks(
        {
            newResource(args) {
                const entry = byName.get(`${args.type}::${args.name}`);
                if (entry) {
                    entry.inputs = args.inputs;
                    entry.custom = args.custom ?? false;
                }
                return { id: args.custom ? `${args.name}-id` : undefined, state: { ...args.inputs, ...mockOutputs(args.type, args.inputs) } };
            },
            call(args) {
                return args.inputs;
            },
        },
        "kiloclaw-rollout",
        input.stack ?? "test",
        false,
    );
    pulumi.runtime.setAllConfig(input.config, input.secretKeys);

    // The mocks API hides parents and dependencies; read them off the register requests.
    const monitor = pulumi.runtime.getMonitor() as any;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: any) => {
        const project = "kiloclaw-rollout";
        const entry: Registered = {
            type: req.getType(),
            name: req.getName(),
            urn: `urn:pulumi:${input.stack ?? "test"}::${project}::${req.getType()}::${req.getName()}`,
            custom: req.getCustom(),
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            inputs: {},
        };
        registered.push(entry);
        byName.set(`${entry.type}::${entry.name}`, entry);
        return register(req, callback);
    };

    let program: Record<string, unknown>;
    try {
        program = await import("../index");
    } catch (err) {
        process.stdout.write(JSON.stringify({ error: (err as Error).message }) + "\n");
        return;
    }
    const outputs: Record<string, { value: unknown; secret: boolean }> = {};
    for (const [name, value] of Object.entries(program)) {
        if (pulumi.Output.isInstance(value)) {
            const resolved = await new Promise((resolve) => value.apply(resolve));
            outputs[name] = { value: resolved, secret: await (value as any).isSecret };
        } else {
            outputs[name] = { value, secret: false };
        }
    }
    // Outputs resolve before the last registrations settle; let the runtime drain.
    await new Promise((resolve) => setTimeout(resolve, 200));
    process.stdout.write(JSON.stringify({ resources: registered, outputs }) + "\n");
}

main().catch((err) => {
    process.stdout.write(JSON.stringify({ error: String(err?.stack ?? err) }) + "\n");
});
