// A separate `pulumi up` process for the kill test: reads the WarmMachine inputs and the
// stack config as JSON on stdin (the token with them, never in argv or env), configures the
// provider as the engine would, runs create, and prints the result. The test SIGKILLs it mid-create.
import { warmMachineProvider, WarmMachineInputs } from "../../dynamic-providers/warmMachineProvider";

async function main(): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const { inputs, config } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { inputs: WarmMachineInputs; config: Record<string, string> };
    await warmMachineProvider.configure!({ config: { get: (key) => config[key], require: (key) => config[key] } });
    process.stdout.write("creating\n");
    const created = await warmMachineProvider.create!(inputs);
    process.stdout.write(`created ${created.id}\n`);
}

main().catch((err) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
});
