// Prints the dynamic providers' texts (`__provider`) of the program run under mocks with the config in
// KILOCLAW_TEST_CONFIG (JSON), as JSON by resource type. test/unit/serialized-providers.test.ts runs it under
// Pulumi.yaml's loader (scripts/ts-register.js) to compare with what it drives under the tests' loader.
import { runProgram } from "./program-harness";

async function main(): Promise<void> {
    const run = await runProgram({ config: JSON.parse(process.env.KILOCLAW_TEST_CONFIG ?? "{}") as Record<string, string> });
    if (run.error) throw new Error(run.error);
    const texts: Record<string, string> = {};
    for (const r of run.resources.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic/"))) texts[r.type.split(":").pop()!] = r.inputs.__provider;
    process.stdout.write(JSON.stringify(texts) + "\n");
}

main().then(
    () => process.exit(0),
    (err: Error) => {
        process.stderr.write(`${err.stack ?? err.message}\n`);
        process.exit(1);
    },
);
