// A separate `pulumi up` process for the kill test: reads WarmMachine inputs as
// JSON on stdin (the token with them, never in argv or env), runs create, and
// prints the result. The test SIGKILLs it mid-create.
import { warmMachineProvider, WarmMachineInputs } from "../../dynamic-providers/warmMachineProvider";

async function main(): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const inputs = JSON.parse(Buffer.concat(chunks).toString("utf8")) as WarmMachineInputs;
    process.stdout.write("creating\n");
    const created = await warmMachineProvider.create!(inputs);
    process.stdout.write(`created ${created.id}\n`);
}

main().catch((err) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
});
