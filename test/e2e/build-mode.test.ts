// Build mode under the real engine, through the Automation API: the path users run. From nothing
// `up` builds the realistic fixture checkout, smoke-tests, pushes, warms, points the worker at the
// tag and provisions; the next preview and `up` change nothing; a pin bump shows the image and
// everything downstream in the diff; `up` converges again; `destroy` leaves nothing behind.
// Needs the docker and command resource plugins at the versions package-lock.json pins; without
// them the scenario reports itself skipped with the commands that install them.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineEvent, OpType, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { RESOURCE_TYPES } from "../../lib/contract";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { assertDockerRunning, containersWithLabel, LocalRegistry, startRegistry } from "../../sandbox/docker";
import { SandboxServices } from "../../sandbox/services";
import { startE2eWorld } from "./world";
import { findPulumi, missingBuildPlugins, openRehearsalStack, rehearsalWorkspace, stackUnfinishedOperations } from "../../sandbox/workspace";
import { copyProject } from "../project-copy";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c10";
const APP = "kiloclaw-e2e-build";
const INTERNAL_KEY = "e2e-build-internal-key-7a1e";
const STACK = "e2e-build";

/** Why build mode cannot run with this CLI (a plugin missing at the pinned version), or undefined when it can. */
async function missingPluginsReason(pulumi: PulumiCommand, dir: string): Promise<string | undefined> {
    const missing = await missingBuildPlugins(await rehearsalWorkspace({ dir, pulumi }));
    if (!missing.length) return undefined;
    return (
        `the ${missing.join(" and ")} resource plugin(s) are not installed (\`pulumi plugin ls\`). ` +
        `Install with ${missing.map((p) => `\`pulumi plugin install resource ${p}\``).join(" and ")}, then \`npm run test:e2e\`.`
    );
}

/** Operation per resource type (one entry per resource) that a preview or update planned. */
function collectOps(into: Array<{ type: string; urn: string; op: OpType }>): (event: EngineEvent) => void {
    return (event) => {
        const meta = event.resourcePreEvent?.metadata;
        if (meta && meta.type !== "pulumi:pulumi:Stack") into.push({ type: meta.type, urn: meta.urn, op: meta.op });
    };
}

describe("build mode under the engine", function () {
    this.timeout(900_000);
    let registry: LocalRegistry;
    let services: SandboxServices;
    let work: string;
    let checkout: string;
    let stack: Stack;
    let pulumi: PulumiCommand;

    before(async function () {
        work = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-e2e-build-"));
        const engineDir = path.join(work, "engine");
        pulumi = await findPulumi();
        const reason = await missingPluginsReason(pulumi, engineDir);
        if (reason) {
            console.log(`    SKIPPED build mode under the engine: ${reason}`);
            this.skip();
        }
        assertDockerRunning();
        registry = await startRegistry();
        ({ checkout, services } = await startE2eWorld({
            work,
            registry,
            app: APP,
            internalKey: INTERNAL_KEY,
            gatewaySecret: "e2e-build-gateway-secret",
        }));

        // A project in the temp dir whose program is this repository: no stack files in the repo.
        stack = await openRehearsalStack({ dir: engineDir, stackName: STACK, pulumi });
        await stack.setAllConfig({
            "kiloclaw:kiloclawDir": { value: checkout },
            "kiloclaw:userId": { value: USER },
            "kiloclaw:workerUrl": { value: services.worker.url },
            "kiloclaw:flyApiUrl": { value: services.fly.url },
            "kiloclaw:registryServer": { value: registry.server },
            "kiloclaw:warmTimeoutSeconds": { value: "120" },
            "kiloclaw:instanceTimeoutSeconds": { value: "120" },
            "kiloclaw:internalApiKey": { value: INTERNAL_KEY, secret: true },
            "kiloclaw:flyApiToken": { value: registry.token, secret: true },
        });
    });

    after(async () => {
        if (stack) await stack.destroy().catch(() => undefined);
        await services?.close();
        await registry?.stop();
        if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it("1. up from nothing builds, pushes and provisions; the instance runs the built tag", async () => {
        const up = await stack.up();
        assert.equal(up.summary.result, "succeeded");
        const tag = up.outputs.tag.value as string;
        assert.match(tag, /^dev-[0-9a-f]{12}$/);
        assert.match(up.outputs.imageRef.value as string, new RegExp(`^${registry.server}/${APP}:${tag}@sha256:[0-9a-f]{64}$`));
        assert.equal(up.outputs.status.value, "running");
        assert.match(fs.readFileSync(path.join(checkout, ".dev.vars"), "utf8"), new RegExp(`^FLY_IMAGE_TAG=${tag}$`, "m"));
    });

    it("2. preview --expect-no-changes passes, though the rollout rewrote .dev.vars and the worker .wrangler/state/", async () => {
        // expectNoChanges makes the engine fail the preview on any planned change; it does not count pending operations.
        await stack.preview({ expectNoChanges: true });
        assert.deepEqual(await stackUnfinishedOperations(stack), []);
    });

    it("3. a second up changes nothing", async () => {
        const up = await stack.up();
        const changes = Object.entries(up.summary.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
        assert.deepEqual(changes, []);
    });

    it("4. a pin bump shows the image, smoke tests, push, warm machine, worker version and instance in preview --diff", async () => {
        const dockerfile = path.join(checkout, "Dockerfile");
        fs.writeFileSync(dockerfile, fs.readFileSync(dockerfile, "utf8").replace("openclaw@2026.2.9", "openclaw@2026.2.10"));
        const ops: Array<{ type: string; urn: string; op: OpType }> = [];
        await stack.preview({ diff: true, onEvent: collectOps(ops) });
        const changed = (type: string) => ops.filter((o) => o.type === type && o.op !== "same");
        for (const type of [
            RESOURCE_TYPES.dockerImage,
            RESOURCE_TYPES.warmMachine,
            RESOURCE_TYPES.workerImageVersion,
            RESOURCE_TYPES.workerInstance,
        ]) {
            assert.ok(changed(type).length > 0, `${type} is not in the diff: ${JSON.stringify(ops)}`);
        }
        // Both commands: the smoke tests and the push.
        assert.ok(changed(RESOURCE_TYPES.command).length >= 2, `smoke tests and push not both in the diff: ${JSON.stringify(ops)}`);
    });

    it("5. up converges on the bumped pin, and the next preview is a no-op", async () => {
        const up = await stack.up();
        assert.equal(up.summary.result, "succeeded");
        assert.equal(up.outputs.openclawVersion.value, "2026.2.10");
        await stack.preview({ expectNoChanges: true });
        assert.deepEqual(await stackUnfinishedOperations(stack), []);
    });

    it("5b. a second clone at another path (config and passphrase copied, another cache dir) previews no changes", async () => {
        const elsewhere = path.join(work, "teammate", "src", "elsewhere");
        const program = copyProject(path.join(elsewhere, "kiloclaw-rollout"), "own");
        const engine2 = path.join(elsewhere, "engine");
        fs.mkdirSync(path.join(engine2, "project"), { recursive: true });
        fs.copyFileSync(path.join(work, "engine", "passphrase"), path.join(engine2, "passphrase"));
        const settings = path.join("project", `Pulumi.${STACK}.yaml`);
        fs.copyFileSync(path.join(work, "engine", settings), path.join(engine2, settings));
        const clone = await openRehearsalStack({
            dir: engine2,
            stackName: STACK,
            pulumi,
            program,
            // The first clone's backend; its staged build context is its own (.staged-contexts/ in the clone).
            env: { PULUMI_BACKEND_URL: `file://${path.join(work, "engine", "state")}`, XDG_CACHE_HOME: path.join(elsewhere, "cache") },
        });
        await clone.preview({ expectNoChanges: true });
        assert.ok(fs.existsSync(path.join(program, ".staged-contexts")), "the clone's program did not stage its build context");
    });

    it("6. destroy leaves no instance, no machine and no container behind", async () => {
        await stack.destroy();
        assert.equal(services.worker.instance(USER), undefined);
        const live = services.fly.machines().filter((m) => !["destroying", "destroyed"].includes(m.state));
        assert.deepEqual(
            live.map((m) => m.id),
            [],
        );
        let left: string[] = ["?"];
        for (let i = 0; i < 100 && left.length; i++) {
            left = await containersWithLabel(`${INSTANCE_LABEL}=${services.instance}`); // this run's only
            if (left.length) await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(left, []);
        const state = await stack.exportStack();
        assert.deepEqual(
            (state.deployment.resources ?? []).filter((r: { type: string }) => r.type !== "pulumi:pulumi:Stack"),
            [],
        );
    });
});
