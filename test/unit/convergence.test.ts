// The first promise: on a realistic kiloclaw checkout, a second run of the program after a
// rollout asks for nothing. The whole program runs twice under mocks; between the runs, what a
// rollout does to the checkout really happens — the real WorkerImageVersion provider rewrites
// .dev.vars against the worker emulator, and every request to the emulator rewrites
// .wrangler/state/ as wrangler dev does. Every resource's inputs must come back identical, and so
// must every file of the directory docker.Image is given as its context (the docker plugin
// hashes that directory; mocks do not).
// Converged also means no pending operation: those live only in an engine's state (stack export),
// which mocks do not keep; the engine suites and `npm run rehearse` check it with the one helper
// tested at the end here (unfinishedOperations, sandbox/workspace.ts).
import * as assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseDevVars } from "../../lib/devVars";
import { RESOURCE_TYPES } from "../../lib/contract";
import { workerImageVersionProvider } from "../../dynamic-providers/workerImageVersionProvider";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { FIXTURE_IMAGE_FILES, materializeCheckout } from "../../sandbox/fixtures/checkout";
import { unfinishedOperations } from "../../sandbox/workspace";
import { findResource, ProgramRun, runProgram, unwrapSecrets } from "../program-harness";
import { scratchDir } from "../scratch";

const USER = "44792035-0fb0-45e1-9115-ac6575f1ffa7";
const INTERNAL_KEY = "convergence-internal-key";

/** path → mode and sha256 of every file and symlink under `dir`. */
function snapshotDir(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (rel: string) => {
        for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
            const entryRel = path.posix.join(rel, entry.name);
            const full = path.join(dir, entryRel);
            const stat = fs.lstatSync(full);
            if (entry.isDirectory()) {
                out[`${entryRel}/`] = (stat.mode & 0o7777).toString(8);
                walk(entryRel);
            } else {
                const content = entry.isSymbolicLink() ? fs.readlinkSync(full) : fs.readFileSync(full);
                out[entryRel] = `${(stat.mode & 0o7777).toString(8)} ${crypto.createHash("sha256").update(content).digest("hex")}`;
            }
        }
    };
    walk("");
    return out;
}

/** Inputs as a provider receives them, keyed by URN (the serialized provider of a dynamic resource included). */
function inputsByUrn(run: ProgramRun): Map<string, Record<string, unknown>> {
    assert.equal(run.error, undefined, run.error);
    return new Map(run.resources.map((r) => [r.urn, unwrapSecrets(r.inputs)]));
}

/** Every `urn field: before → after` that differs between two runs. */
function movedFields(before: ProgramRun, after: ProgramRun): string[] {
    const a = inputsByUrn(before);
    const b = inputsByUrn(after);
    const moved: string[] = [];
    for (const urn of new Set([...a.keys(), ...b.keys()])) {
        const x = a.get(urn);
        const y = b.get(urn);
        if (!x || !y) {
            moved.push(`${urn}: ${x ? "no longer registered" : "newly registered"}`);
            continue;
        }
        for (const field of new Set([...Object.keys(x), ...Object.keys(y)])) {
            const [vx, vy] = [JSON.stringify(x[field]), JSON.stringify(y[field])];
            if (vx !== vy) moved.push(`${urn} ${field}: ${short(vx)} → ${short(vy)}`);
        }
    }
    return moved;
}

function short(json: string | undefined): string {
    return json === undefined ? "(absent)" : json.length > 120 ? `${json.slice(0, 117)}...` : json;
}

function movedFiles(before: Record<string, string>, after: Record<string, string>): string[] {
    return [...new Set([...Object.keys(before), ...Object.keys(after)])]
        .filter((f) => before[f] !== after[f])
        .map((f) => `${f}: ${before[f] ?? "(absent)"} → ${after[f] ?? "(absent)"}`);
}

describe("convergence on a realistic kiloclaw checkout", function () {
    this.timeout(180_000);
    let kiloclawDir: string;
    let worker: WorkerEmulator;
    let config: Record<string, string>;
    let first: ProgramRun;
    let firstContext: Record<string, string>;
    let contextDir: string;

    const run = () => runProgram({ config, secretKeys: ["kiloclaw:flyApiToken", "kiloclaw:kilocodeApiKey"], stack: "alice" });

    /** The directory docker.Image was given as its build context in a run (relative to the project directory). */
    const imageContext = (r: ProgramRun): string =>
        path.resolve(r.projectDir, (unwrapSecrets(findResource(r, RESOURCE_TYPES.dockerImage).inputs).build as { context: string }).context);

    /** What `pulumi up` does to the checkout after the program ran: the real provider points the worker at the tag. */
    async function applyRollout(r: ProgramRun): Promise<void> {
        const { __provider, ...inputs } = unwrapSecrets(findResource(r, RESOURCE_TYPES.workerImageVersion).inputs);
        const stackConfig: Record<string, string> = { ...config, "kiloclaw:internalApiKey": INTERNAL_KEY };
        const provider = workerImageVersionProvider as pulumi.dynamic.ResourceProvider;
        await provider.configure?.({ config: { get: (k) => stackConfig[k], require: (k) => stackConfig[k] } });
        await provider.create(inputs);
        // The developer (or the sandbox) then talks to the worker: each request rewrites .wrangler/state/.
        const res = await fetch(`${worker.url}/api/platform/status?userId=${USER}`, { headers: { "x-internal-api-key": INTERNAL_KEY } });
        await res.arrayBuffer();
    }

    before(async () => {
        kiloclawDir = materializeCheckout(path.join(scratchDir("kiloclaw-cloud-"), "kiloclaw"));
        fs.writeFileSync(
            path.join(kiloclawDir, ".dev.vars"),
            [
                `INTERNAL_API_SECRET=${INTERNAL_KEY}`,
                "GATEWAY_TOKEN_SECRET=convergence-gateway-secret",
                "FLY_API_TOKEN=fm2_convergence",
                "WORKER_ENV=development",
                "FLY_REGISTRY_APP=kiloclaw-dev",
                "FLY_IMAGE_TAG=dev-1771448521",
                "OPENCLAW_VERSION=2026.2.9",
                "",
            ].join("\n"),
        );
        // Fly is never reached by the requests made here; the URL only has to parse.
        worker = await WorkerEmulator.start({
            devVarsPath: path.join(kiloclawDir, ".dev.vars"),
            kiloclawDir,
            flyApiUrl: "http://127.0.0.1:9",
            reloadDevVarsOnRequest: true,
        });
        config = {
            "kiloclaw:kiloclawDir": kiloclawDir,
            "kiloclaw:userId": USER,
            "kiloclaw:workerUrl": worker.url,
            "kiloclaw:flyApiToken": "fm2_convergence",
            "kiloclaw:kilocodeApiKey": "test-key",
        };
        first = await run();
        assert.equal(first.error, undefined, first.error);
        contextDir = imageContext(first);
        firstContext = snapshotDir(contextDir);
    });

    after(async () => {
        await worker?.close();
    });

    it("gives docker a context of only the image's files, outside the checkout", () => {
        assert.ok(!contextDir.startsWith(kiloclawDir), `${contextDir} is inside the checkout`);
        assert.deepEqual(
            Object.keys(firstContext)
                .filter((f) => !f.endsWith("/"))
                .sort(),
            FIXTURE_IMAGE_FILES,
        );
    });

    it("asks for nothing on the run after a rollout, though .dev.vars and .wrangler/state/ changed", async () => {
        const stateFile = path.join(kiloclawDir, ".wrangler", "state", "v3", "cache", "last-request.json");
        const devVarsBefore = fs.readFileSync(path.join(kiloclawDir, ".dev.vars"), "utf8");
        const stateBefore = fs.readFileSync(stateFile, "utf8");
        await applyRollout(first);
        // The rollout really rewrote the worker's files beside the Dockerfile.
        const devVars = parseDevVars(fs.readFileSync(path.join(kiloclawDir, ".dev.vars"), "utf8"));
        assert.notEqual(fs.readFileSync(path.join(kiloclawDir, ".dev.vars"), "utf8"), devVarsBefore);
        assert.equal(devVars.FLY_IMAGE_TAG, first.outputs.tag.value);
        assert.notEqual(fs.readFileSync(stateFile, "utf8"), stateBefore);

        const second = await run();
        assert.deepEqual(movedFields(first, second), [], "resource inputs moved after a rollout");
        assert.equal(imageContext(second), contextDir);
        assert.deepEqual(movedFiles(firstContext, snapshotDir(contextDir)), [], "files of docker's build context moved");
    });

    it("asks for nothing after a worker-only edit (src/, test/, node_modules/)", async () => {
        fs.appendFileSync(path.join(kiloclawDir, "src", "index.ts"), "// a worker-only change\n");
        fs.writeFileSync(path.join(kiloclawDir, "test", "another.test.ts"), "// a new worker test\n");
        fs.writeFileSync(path.join(kiloclawDir, "node_modules", "hono", "dist", "chunk-2.js"), "// upgraded\n");
        const again = await run();
        assert.deepEqual(movedFields(first, again), [], "resource inputs moved after a worker-only edit");
        assert.deepEqual(movedFiles(firstContext, snapshotDir(imageContext(again))), []);
    });

    it("moves the tag and everything downstream when start-openclaw.sh changes", async () => {
        fs.appendFileSync(path.join(kiloclawDir, "start-openclaw.sh"), "\n# an entrypoint change\n");
        const edited = await run();
        assert.notEqual(edited.outputs.tag.value, first.outputs.tag.value);
        assert.notEqual(imageContext(edited), contextDir, "the staged context is addressed by the new tag");
        assert.ok(movedFiles(firstContext, snapshotDir(imageContext(edited))).some((f) => f.startsWith("start-openclaw.sh:")));
        const moved = movedFields(first, edited);
        const downstream: Array<[string, string]> = [
            [RESOURCE_TYPES.dockerImage, "kiloclaw-build"],
            [RESOURCE_TYPES.command, "smoke-tests-smoke"],
            [RESOURCE_TYPES.command, "registry-push"],
            [RESOURCE_TYPES.warmMachine, "warm"],
            [RESOURCE_TYPES.workerImageVersion, "worker-image"],
            [RESOURCE_TYPES.workerInstance, "instance"],
        ];
        for (const [type, name] of downstream) {
            const urn = edited.resources.find((r) => r.type === type && r.name.startsWith(name))?.urn;
            assert.ok(urn, `no ${type} named ${name}* registered`);
            assert.ok(
                moved.some((m) => m.startsWith(`${urn} `)),
                `${urn} did not change with the tag; moved:\n  ${moved.join("\n  ")}`,
            );
        }
    });

    it("counts what preview --expect-no-changes does not: pending operations, deletions and replacements", () => {
        const urn = (name: string) => `urn:pulumi:dev::kiloclaw-rollout::kiloclaw:${name}`;
        const converged = { resources: [{ urn: urn("a"), type: "t" }], pending_operations: [] };
        assert.deepEqual(unfinishedOperations(converged), []);
        const interrupted = {
            resources: [
                { urn: urn("warm"), type: "t", delete: true },
                { urn: urn("instance"), type: "t", pendingReplacement: true },
            ],
            pending_operations: [{ resource: { urn: urn("instance"), type: "t" }, type: "creating" }],
        };
        assert.deepEqual(unfinishedOperations(interrupted), [
            `${urn("instance")}: interrupted while creating`,
            `${urn("warm")}: pending deletion`,
            `${urn("instance")}: pending replacement`,
        ]);
    });
});
