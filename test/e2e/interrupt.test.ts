// Interrupt `pulumi up` anywhere, then one more `up` recovers. The real CLI runs in its own process
// group, as in a terminal, and gets Ctrl-C (SIGINT to the group) once (the engine cancels: in-flight
// steps finish, no new one starts) or twice (it stops at once, leaving pending operations in the state).
// Nothing is timed: an emulator holds the step's request, the test presses Ctrl-C once the request is
// held, then releases it. After each interruption `up` must converge: no pending operation in the state
// (`stack export`), one instance on the new tag, no warm machine left, no container beside the instance's.
// Prebuilt mode runs without the docker/command plugins; build mode runs where they are installed,
// else says it is skipped and why.
import * as assert from "node:assert/strict";
import { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigMap, Stack } from "@pulumi/pulumi/automation";
import { RESOURCE_TYPES } from "../../lib/contract";
import { devFlyAppName } from "../../lib/identity";
import { localImageRepository } from "../../lib/localScope";
import { EMULATOR_LABEL } from "../../sandbox/emulators/docker-machines";
import { FaultRule, Hold } from "../../sandbox/emulators/server";
import { assertDockerRunning, LocalRegistry, removeImages, run, startRegistry } from "../../sandbox/docker";
import { SandboxServices } from "../../sandbox/services";
import {
    findPulumi,
    missingBuildPlugins,
    openRehearsalStack,
    recoverInterruptedRun,
    rehearsalWorkspace,
    spawnPulumi,
    stackUnfinishedOperations,
} from "../../sandbox/workspace";
import { pushFixtureTags, startE2eWorld } from "./world";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c11";
const APP = "kiloclaw-e2e-interrupt";
const INTERNAL_KEY = "e2e-interrupt-internal-key-5b2e";
const STACK = "e2e-interrupt";

/** Where `up` is held: the request that step sends, to the worker or to Fly. */
interface Step {
    name: string;
    emulator: "worker" | "fly";
    rule: Omit<FaultRule, "hold">;
    /** The resource whose create two Ctrl-Cs leave pending in the state (the engine keeps it through every `up`). */
    pendingCreate?: string;
}

const STEPS: Step[] = [
    // Preflight runs in the program before any resource is registered: its worker status read.
    { name: "the preflight", emulator: "worker", rule: { method: "GET", path: "/api/platform/status" } },
    {
        name: "the warm machine's create",
        emulator: "fly",
        rule: { method: "POST", path: new RegExp(`^/v1/apps/${APP}/machines$`) },
        pendingCreate: RESOURCE_TYPES.warmMachine,
    },
    {
        name: "the worker image version's publish",
        emulator: "worker",
        rule: { method: "POST", path: "/api/platform/publish-image-version" },
        pendingCreate: RESOURCE_TYPES.workerImageVersion,
    },
    { name: "the old instance's delete (replacement)", emulator: "worker", rule: { method: "POST", path: "/api/platform/destroy" } },
    {
        name: "the instance's create (provision)",
        emulator: "worker",
        // The instance's own provision names a region; the worker-tag check's config-only re-provision does not.
        rule: { method: "POST", path: "/api/platform/provision", when: (body) => typeof body === "object" && body !== null && "region" in body },
        pendingCreate: RESOURCE_TYPES.workerInstance,
    },
];

/** The CLI's exit: its code and what it printed. */
interface Exit {
    code: number | null;
    output: string;
}

function exited(child: ChildProcess, output: () => string): Promise<Exit> {
    return new Promise((resolve) => child.on("close", (code) => resolve({ code, output: output() })));
}

/** Ctrl-C in the CLI's terminal: SIGINT to its whole process group. */
function ctrlC(child: ChildProcess): void {
    process.kill(-(child.pid as number), "SIGINT");
}

/** Resolves when `text` has been printed; rejects when the CLI exits first. */
function printed(child: ChildProcess, output: () => string, text: string): Promise<void> {
    return new Promise((resolve, reject) => {
        const check = () => {
            if (output().includes(text)) {
                child.stdout?.off("data", check);
                resolve();
            }
        };
        child.stdout?.on("data", check);
        child.on("close", () => reject(new Error(`the CLI exited before printing "${text}":\n${output()}`)));
        check();
    });
}

/** Names of the containers this test's Fly emulator runs for `app`, live or not. */
async function machineContainers(app: string): Promise<string[]> {
    const r = await run("docker", ["ps", "-a", "--filter", `label=${EMULATOR_LABEL}.app=${app}`, "--format", "{{.Names}}"]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean);
}

for (const mode of ["prebuilt", "build"] as const) {
    describe(`an interrupted up recovers with one more up (${mode} mode)`, function () {
        this.timeout(1_800_000);
        let registry: LocalRegistry;
        let services: SandboxServices;
        let work: string;
        let checkout: string;
        let stack: Stack;
        const tags = ["dev-e2eint00000a", "dev-e2eint00000b"];
        const refs: string[] = [];
        /** Build mode toggles the Dockerfile's pin between these, prebuilt mode imageRef between refs. */
        const pins = ["openclaw@2026.2.9", "openclaw@2026.2.10"];
        let current = 0;
        let lastTag = "";
        const children: ChildProcess[] = [];

        before(async function () {
            work = fs.mkdtempSync(path.join(os.tmpdir(), `kiloclaw-e2e-interrupt-${mode}-`));
            const pulumi = await findPulumi();
            const engineDir = path.join(work, "engine");
            if (mode === "build") {
                const missing = await missingBuildPlugins(await rehearsalWorkspace({ dir: engineDir, pulumi }));
                if (missing.length) {
                    console.log(
                        `    SKIPPED build mode interrupted: the ${missing.join(" and ")} resource plugin(s) are not installed (\`pulumi plugin ls\`); ` +
                            "install them as the README's *Per-developer stack setup* says, then `npm run test:e2e`.",
                    );
                    this.skip();
                }
            }
            assertDockerRunning();
            registry = await startRegistry();
            if (mode === "prebuilt") {
                refs.push(...(await pushFixtureTags(registry, APP, "kiloclaw-e2e-interrupt:build", tags)));
            }

            ({ checkout, services } = await startE2eWorld({
                work,
                registry,
                app: APP,
                internalKey: INTERNAL_KEY,
                gatewaySecret: "e2e-interrupt-gateway-secret",
            }));
            stack = await openRehearsalStack({
                dir: engineDir,
                stackName: STACK,
                pulumi,
                pulumiHome: mode === "prebuilt" ? path.join(work, "home") : undefined,
            });
            // Build mode's staged contexts go to the temp dir too, removed with it.
            stack.workspace.envVars.XDG_CACHE_HOME = path.join(work, "cache");
            const plain: Record<string, string> = {
                kiloclawDir: checkout,
                userId: USER,
                workerUrl: services.worker.url,
                flyApiUrl: services.fly.url,
                registryServer: registry.server,
                registryApp: APP,
                warmTimeoutSeconds: "120",
                instanceTimeoutSeconds: "120",
            };
            if (mode === "prebuilt") plain.imageRef = refs[current];
            const config: ConfigMap = Object.fromEntries(Object.entries(plain).map(([k, value]) => [`kiloclaw:${k}`, { value }]));
            config["kiloclaw:internalApiKey"] = { value: INTERNAL_KEY, secret: true };
            config["kiloclaw:flyApiToken"] = { value: registry.token, secret: true };
            await stack.setAllConfig(config);
            const up = await stack.up();
            lastTag = up.outputs.tag.value as string;
            assert.deepEqual(await stackUnfinishedOperations(stack), []);
        });

        /** The next image: the other prebuilt tag, or the Dockerfile with the other pin. */
        async function nextImage(): Promise<void> {
            current = 1 - current;
            if (mode === "prebuilt") {
                await stack.setConfig("kiloclaw:imageRef", { value: refs[current] });
                return;
            }
            const dockerfile = path.join(checkout, "Dockerfile");
            fs.writeFileSync(dockerfile, fs.readFileSync(dockerfile, "utf8").replace(pins[1 - current], pins[current]));
        }

        after(async () => {
            // Only the CLIs this test started (each its own process group), should an assertion have left one running.
            for (const child of children) if (child.exitCode === null && child.signalCode === null) process.kill(-(child.pid as number), "SIGKILL");
            if (stack) await stack.destroy().catch(() => undefined);
            await services?.close();
            await registry?.stop();
            if (refs.length) await removeImages(refs);
            if (work) fs.rmSync(work, { recursive: true, force: true });
        });

        /** `up` toward the other tag, held at the step's request; Ctrl-C `presses` times while it is held; returns the CLI's exit. */
        async function interruptedUp(step: Step, presses: 1 | 2): Promise<Exit> {
            await nextImage();
            const hold = new Hold();
            services[step.emulator].inject({ ...step.rule, hold });
            let output = "";
            const child = spawnPulumi(stack, ["up", "--yes", "--skip-preview"]);
            children.push(child);
            child.stdout?.setEncoding("utf8").on("data", (d: string) => (output += d));
            child.stderr?.setEncoding("utf8").on("data", (d: string) => (output += d));
            const exit = exited(child, () => output);
            const held = await Promise.race([hold.arrived.then(() => true), exit.then(() => false)]);
            assert.ok(held, `up ended before ${step.name}:\n${output}`);
            ctrlC(child);
            if (presses === 2) {
                // The second Ctrl-C must come after the CLI took the first (the engine's cancel), as a person's would.
                await printed(child, () => output, "cancelling");
                ctrlC(child);
                const result = await exit;
                // What the service was asked still happens, though nobody hears the answer.
                hold.release();
                await hold.handled;
                return result;
            }
            hold.release();
            return exit;
        }

        /** One more `up` (as `npm run rehearse` runs it: stale lock and pending creates resolved first) converges, and nothing is left over. */
        async function recoverAndCheck(): Promise<string[]> {
            const recovered = await recoverInterruptedRun(stack);
            const up = await stack.up();
            assert.equal(up.summary.result, "succeeded");
            assert.equal(up.outputs.status.value, "running");
            const tag = up.outputs.tag.value as string;
            assert.notEqual(tag, lastTag, "the image did not change");
            lastTag = tag;
            if (mode === "prebuilt") assert.equal(tag, tags[current]);
            assert.equal(up.outputs.trackedImageTag.value, tag);
            assert.deepEqual(await stackUnfinishedOperations(stack), []);
            await stack.preview({ expectNoChanges: true });

            // One instance, on the new tag; its machine is the only live one of the user's app.
            const instance = services.worker.instance(USER);
            assert.ok(instance, "the worker has no instance");
            const live = (app: string) => services.fly.machines(app).filter((m) => !["destroying", "destroyed"].includes(m.state));
            assert.deepEqual(
                live(devFlyAppName(USER)).map((m) => m.id),
                [instance.flyMachineId],
            );
            assert.equal(live(devFlyAppName(USER))[0].config.image, (up.outputs.imageRef.value as string).split("@")[0]);
            // No warm machine outlives its step, and only the instance's machine has a container.
            assert.deepEqual(
                live(APP).map((m) => `${m.id} ${m.state}`),
                [],
            );
            const byId = new Set(live(devFlyAppName(USER)).map((m) => m.id));
            // The worker does not wait for Fly to remove a destroyed machine; Fly (the emulator) finishes it on its own.
            await services.fly.settled();
            const containers = [...(await machineContainers(APP)), ...(await machineContainers(devFlyAppName(USER)))];
            assert.equal(
                containers.length,
                1,
                `containers of this test's machines: ${containers.join(", ")} (live machines: ${[...byId].join(", ")})`,
            );
            if (mode === "build") {
                // LocalImages keeps only the running tag's image of this stack (named by its identity); registry-named
                // images on the engine are the Fly emulator's pulls, not the stack's (push-image.sh removes its tag).
                const repository = localImageRepository({ project: "kiloclaw-rollout", stack: STACK });
                const images = await run("docker", ["images", "--format", "{{.Repository}}:{{.Tag}}"]);
                const ours = images.stdout.split("\n").filter((ref) => ref.startsWith(`${repository}:`));
                assert.deepEqual(ours, [`${repository}:${tag}`]);
            }
            return recovered;
        }

        for (const step of STEPS) {
            for (const presses of [1, 2] as const) {
                const what = presses === 1 ? "one Ctrl-C (cancel)" : "two Ctrl-Cs (stop at once)";
                it(`${what} during ${step.name}: the next up converges with nothing pending and nothing doubled`, async () => {
                    const exit = await interruptedUp(step, presses);
                    assert.notEqual(exit.code, 0, `up was not interrupted:\n${exit.output}`);
                    const recovered = await recoverAndCheck();
                    console.log(`      before the next up: ${recovered.join("; ") || "nothing to resolve"}`);
                    if (presses === 2 && step.pendingCreate) {
                        const type = step.pendingCreate;
                        assert.ok(
                            recovered.some((line) => line.includes(`$${type}::`)),
                            `no pending create of ${type} was left: ${recovered.join("; ")}`,
                        );
                    }
                });
            }
        }
    });
}
