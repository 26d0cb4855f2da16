// The state depends on content, not on where things are: the same program from two copies of the
// project at different paths, each with its own kiloclaw checkout (same files) and cache dir, registers
// the same inputs for every resource, and none of them names a path of the machine.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { materializeCheckout } from "../../sandbox/fixtures/checkout";
import { isSecretValue, loadProgram, ProgramRun, runProgram } from "../program-harness";
import { copyProject } from "../project-copy";
import { scratchDir } from "../scratch";

const SECRETS = {
    "kiloclaw:internalApiKey": "internal-key-configured",
    "kiloclaw:flyApiToken": "fm2_configuredflytoken",
    "kiloclaw:kilocodeApiKey": "kilocode-key-configured",
};

interface Place {
    project: string;
    checkout: string;
    cache: string;
}

/** A copy of the project and a kiloclaw checkout under `root`, at depths that differ between places. */
function place(root: string, depth: string): Place {
    const project = copyProject(path.join(root, depth, "kiloclaw-rollout"));
    const checkout = materializeCheckout(path.join(root, depth, "cloud", "kiloclaw"));
    fs.writeFileSync(path.join(checkout, ".dev.vars"), "WORKER_ENV=development\nFLY_REGISTRY_APP=kiloclaw-dev\nFLY_IMAGE_TAG=dev-1771448521\n");
    return { project, checkout, cache: path.join(root, "cache") };
}

/** Every plain string anywhere in a value (a secret's envelope included: a path must not hide there either). */
function strings(v: unknown, out: string[] = []): string[] {
    if (isSecretValue(v)) return strings(v.value, out);
    if (typeof v === "string") out.push(v);
    else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
    else if (v && typeof v === "object") Object.values(v).forEach((x) => strings(x, out));
    return out;
}

/** Inputs by URN, plus what components registered as outputs (both are stored in the state). */
function stored(run: ProgramRun): Record<string, unknown> {
    return Object.fromEntries(run.resources.map((r) => [r.urn, { inputs: r.inputs, outputs: r.custom ? undefined : r.outputs }]));
}

describe("state that does not depend on where the checkout lives", function () {
    this.timeout(120_000);
    const places: Place[] = [];
    const savedCache = process.env.XDG_CACHE_HOME;

    before(() => {
        places.push(place(scratchDir("kiloclaw-place-a-"), "a"), place(scratchDir("kiloclaw-place-b-"), path.join("b", "deeper")));
    });
    after(() => {
        if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
        else process.env.XDG_CACHE_HOME = savedCache;
    });

    async function runAt(p: Place, extra: Record<string, string>): Promise<ProgramRun> {
        process.env.XDG_CACHE_HOME = p.cache;
        const run = await runProgram({
            config: { "kiloclaw:kiloclawDir": p.checkout, "kiloclaw:userId": "44792035-0fb0-45e1-9115-ac6575f1ffa7", ...SECRETS, ...extra },
            secretKeys: Object.keys(SECRETS),
            stack: "alice",
            projectDir: p.project,
            program: loadProgram(p.project),
        });
        assert.equal(run.error, undefined, run.error);
        return run;
    }

    const modes: Array<[string, Record<string, string>]> = [
        ["build", {}],
        ["prebuilt", { "kiloclaw:imageRef": "registry.fly.io/kiloclaw-dev:dev-teammate01" }],
    ];
    for (const [mode, extra] of modes) {
        it(`${mode} mode: both copies register the same inputs, and no input names a path of the machine`, async () => {
            const [a, b] = [await runAt(places[0], extra), await runAt(places[1], extra)];
            assert.ok(a.resources.length > 5, `only ${a.resources.length} resources registered`);
            if (mode === "build") {
                // The program really ran from each copy, and staged its build context in that copy.
                for (const p of places) assert.ok(fs.existsSync(path.join(p.project, ".staged-contexts")), `nothing staged in ${p.project}`);
            }
            assert.deepEqual(stored(b), stored(a));
            const machinePaths = [...places.flatMap((p) => [p.project, p.checkout, p.cache]), os.homedir(), os.tmpdir()];
            for (const r of a.resources) {
                for (const s of strings({ inputs: r.inputs, outputs: r.custom ? {} : r.outputs })) {
                    const found = machinePaths.find((m) => s.includes(m));
                    assert.equal(found, undefined, `${r.type} ${r.name} stores ${found}: ${s.slice(0, 200)}`);
                }
            }
        });
    }
});
