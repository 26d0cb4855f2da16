// Prints the build-mode rollout's step graph as rollout.ts declares it (the program under mocks, as
// test/unit/program.test.ts runs it): each step with the steps it waits for. bench/critical-path.ts runs
// this in a child process (the mocks are process-wide) with `strict` or `beside` as its argument.
import { fakeCheckout, ProgramRun, runProgram } from "../test/program-harness";

/** The custom resource behind each step, in the runbook's order. */
export const STEP_RESOURCES: Array<[step: string, resource: string]> = [
    ["build", "kiloclaw-build"],
    ["validation", "smoke-tests-smoke"],
    ["push", "registry-push"],
    ["local-images", "local-images-cleanup"],
    ["warm", "warm-machine"],
    ["worker-image", "worker-image-dev-vars"],
    ["instance", "instance-instance"],
];

export interface Step {
    name: string;
    /** The steps it waits for, directly or through resources that are not steps. */
    after: string[];
}

function steps(run: ProgramRun): Step[] {
    const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
    const stepOf = new Map(STEP_RESOURCES.map(([step, resource]) => [run.resources.find((r) => r.name === resource)?.urn ?? "", step]));
    return STEP_RESOURCES.map(([step, resource]) => {
        const r = run.resources.find((x) => x.name === resource);
        if (!r) throw new Error(`rollout-graph: the program registered no ${resource}`);
        const after = new Set<string>();
        const queue = [...r.dependencies];
        const seen = new Set<string>();
        while (queue.length) {
            const urn = queue.pop()!;
            if (seen.has(urn)) continue;
            seen.add(urn);
            const s = stepOf.get(urn);
            if (s) after.add(s);
            else queue.push(...(byUrn.get(urn)?.dependencies ?? []));
        }
        return { name: step, after: [...after] };
    });
}

async function main(): Promise<void> {
    const strict = process.argv[2] === "strict";
    const config = {
        "kiloclaw:kiloclawDir": fakeCheckout().kiloclawDir,
        "kiloclaw:userId": "5f0c7a4e-3b1d-4e8a-9c2f-6d1e8b7a0c35", // a UUID, as the program checks
        "kiloclaw:internalApiKey": "bench",
        "kiloclaw:flyApiToken": "bench",
        "kiloclaw:strictOrder": String(strict),
    };
    const run = await runProgram({ config });
    if (run.error) throw new Error(run.error);
    process.stdout.write(JSON.stringify(steps(run)) + "\n");
}

if (require.main === module) {
    main().then(
        () => process.exit(0),
        (err: Error) => {
            console.error(err.stack ?? err.message);
            process.exit(1);
        },
    );
}
