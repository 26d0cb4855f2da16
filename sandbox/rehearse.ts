// `npm run rehearse`: from a fresh clone to a running sandbox instance in one command.
// Starts the sandbox (sandbox/cli.ts), finds or builds the Pulumi CLI, picks build
// mode when the docker and command plugins are installed (else builds and pushes the
// fixture image itself and rolls it out in prebuilt mode), and runs `up` through the
// Automation API with a local backend and passphrase under .sandbox/pulumi/.
//
//   npm run rehearse                  up (again): converges after any edit of .sandbox/cloud/kiloclaw
//   npm run rehearse -- --preview     what the next up would change (preview --diff)
//   npm run rehearse -- --destroy     destroy, remove the stack, stop the sandbox, remove the images and
//                                     staged contexts that carry its identity (nothing of another stack's)
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { CommandError, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { imageTagForContext } from "../lib/contextHash";
import { parseOpenclawPin } from "../lib/openclawPin";
import { localImageRepository, LocalScope, localScopeSlug } from "../lib/localScope";
import { stackContextsRoot, stagedContextsRoot } from "../lib/stagedContext";
import { runningSandbox, sandboxDir, sandboxInstance, sandboxRegistryServer, sandboxSecrets, SandboxState, startSandbox, stopSandbox } from "./cli";
import { dockerBuild, run, runScript, scriptPath } from "./docker";
import {
    engineEnv,
    existingRehearsalStack,
    findPulumi,
    missingBuildPlugins,
    openRehearsalStack,
    recoverInterruptedRun,
    RehearsalStackOptions,
    stackUnfinishedOperations,
} from "./workspace";

export const STACK = "sandbox";
/** The project name of the rehearsal's workspace (sandbox/workspace.ts). */
export const PROJECT = "kiloclaw-rollout";
export const USER_ID = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c01";

const say = (line: string) => console.log(`rehearse: ${line}`);
const engineDir = () => path.join(sandboxDir(), "pulumi");

/** The rehearsal stack's local identity (lib/localScope.ts): its project, stack and the sandbox's instance id. */
const scopeOf = (instance: string): LocalScope => ({ project: PROJECT, stack: STACK, sandboxInstance: instance });

const localImages = () =>
    (spawnSync("docker", ["images", "--format", "{{.Repository}}:{{.Tag}}"], { encoding: "utf8" }).stdout ?? "").split("\n").filter(Boolean);

/**
 * The images that carry this rehearsal's identity: its stack's repository (kiloclaw-<project>-<stack>-<instance>)
 * and what was pulled from its own registry (127.0.0.1:<its port>, which no other running sandbox can have).
 * Never anything else: the shared fixture base image and other clones' images are not the rehearsal's to remove.
 */
function ownImages(instance: string, registryServer: string): string[] {
    const repository = localImageRepository(scopeOf(instance));
    return localImages().filter((ref) => ref.startsWith(`${repository}:`) || ref.startsWith(`${registryServer}/`));
}

/** Docker, then the sandbox. */
async function startDockerAndSandbox(): Promise<SandboxState> {
    // A Debian machine (root) gets the engine, registry and fixture tools, as `npm run test:all` does; a no-op when present.
    if (process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v apt-get"], { stdio: "ignore" }).status === 0) {
        const deps = spawnSync("bash", [scriptPath("ci-deps.sh")], { stdio: "inherit" });
        if (deps.status !== 0) throw new Error("Installing Docker and the registry failed (output above): see bootstrap/ci-deps.sh.");
    }
    const r = spawnSync("bash", [scriptPath("start-docker.sh")], { stdio: "inherit", env: { ...process.env, SKIP_FIXTURE_BASE: "1" } });
    if (r.status !== 0) throw new Error("Docker is not running and could not be started (output above): start it, then `npm run rehearse` again.");
    return startSandbox();
}

/** Settings the stack gets from the running sandbox: every endpoint, written to .sandbox/pulumi/project/Pulumi.sandbox.yaml. */
function stackConfig(sandbox: SandboxState): Record<string, string> {
    return {
        // Relative to the program's directory (where the engine runs it): the config is stored with the state.
        kiloclawDir: path.relative(path.join(__dirname, ".."), sandbox.kiloclawDir),
        userId: USER_ID,
        workerUrl: sandbox.workerUrl,
        flyApiUrl: sandbox.flyApiUrl,
        registryServer: sandbox.registryServer,
        registryApp: sandbox.registryApp,
        warmTimeoutSeconds: "120",
        instanceTimeoutSeconds: "120",
        smokeStartupSeconds: "20",
        smokeGatewaySeconds: "30",
        sandboxInstance: sandbox.instance,
    };
}

/** Prebuilt mode: build the checkout's image as the stack would, push it to the sandbox registry, return its ref. */
async function buildAndPushFixture(sandbox: SandboxState): Promise<string> {
    const tag = imageTagForContext(sandbox.kiloclawDir);
    // Named by the stack's identity, as the stack's own build is: --destroy removes it by that name.
    const local = `${localImageRepository(scopeOf(sandbox.instance))}:${tag}`;
    const ref = `${sandbox.registryServer}/${sandbox.registryApp}:${tag}`;
    // The tag is the hash of what the image consumes, so an image under it is this checkout's build: building again
    // would not be a no-op on a shared engine (the classic builder takes the newest identical layers, which another
    // clone's or test's build may have made) and the push would move the registry's tag to another image id.
    if ((await run("docker", ["image", "inspect", "--format", "{{.Id}}", local])).code === 0) {
        say(`${local} is already built from these inputs (same content tag): not building it again`);
    } else {
        say(`building ${local} from ${sandbox.kiloclawDir} (docker build --platform linux/amd64)`);
        await dockerBuild(sandbox.kiloclawDir, local);
    }
    say(`pushing ${ref} (scripts/push-image.sh, token on stdin)`);
    const push = await runScript("push-image.sh", [], {
        env: { SOURCE_IMAGE: local, TARGET_IMAGE: ref, REGISTRY_SERVER: sandbox.registryServer },
        input: sandboxSecrets().token,
    });
    if (push.code !== 0) throw new Error(`pushing ${ref} failed:\n${push.stderr.trim()}`);
    return ref;
}

async function engine(): Promise<RehearsalStackOptions> {
    say("finding the Pulumi CLI (PATH, else bootstrap/install-pulumi.sh builds it from Go modules, once)");
    const pulumi = await findPulumi();
    say(`using ${pulumi.command} ${pulumi.version ?? ""}`.trim());
    return { dir: engineDir(), stackName: STACK, pulumi };
}

/** Sets the stack's config for the sandbox and the image source; returns the mode it chose. */
async function configure(stack: Stack, sandbox: SandboxState): Promise<"build" | "prebuilt"> {
    const missing = await missingBuildPlugins(stack.workspace);
    const config = stackConfig(sandbox);
    await stack.setAllConfig(Object.fromEntries(Object.entries(config).map(([k, value]) => [`kiloclaw:${k}`, { value }])));
    if (missing.length === 0) {
        say("build mode: the docker and command plugins are installed, so the stack builds, smoke-tests and pushes the image itself");
        await stack.removeConfig("kiloclaw:imageRef");
        return "build";
    }
    say(
        `prebuilt mode: the ${missing.join(" and ")} plugin${missing.length > 1 ? "s are" : " is"} not installed (\`pulumi plugin ls\`), ` +
            "so this builds and pushes the fixture image itself and the stack rolls out that image (warm → worker tag → instance)",
    );
    return "prebuilt";
}

function nextSteps(sandbox: SandboxState, pulumi: PulumiCommand): string {
    const dockerfile = path.join(sandbox.kiloclawDir, "Dockerfile");
    const pin = parseOpenclawPin(fs.readFileSync(dockerfile, "utf8"), dockerfile).version;
    const bumped = pin.replace(/\d+$/, (patch) => String(Number(patch) + 1));
    const rel = path.relative(process.cwd(), dockerfile);
    const env = Object.entries(engineEnv(engineDir()))
        .map(([k, v]) => `${k}=${v}`)
        .join(" ");
    return [
        "Try next:",
        `  bump the pin        sed -i 's/openclaw@${pin}/openclaw@${bumped}/' ${rel}`,
        "  preview the diff    npm run rehearse -- --preview",
        "  roll it out         npm run rehearse",
        "  tear it all down    npm run rehearse -- --destroy",
        "The Pulumi CLI on the same stack:",
        // A CLI found on PATH is named bare ("pulumi"): PATH needs no entry then (and "." would be the wrong one).
        `  ${env} ${path.isAbsolute(pulumi.command) ? `PATH=${path.dirname(pulumi.command)}:$PATH ` : ""}pulumi -C ${path.join(engineDir(), "project")} -s ${STACK} stack output`,
    ].join("\n");
}

/** Pulumi's own progress display, as the CLI shows it. */
const stream = {
    onOutput: (out: string) => process.stdout.write(out),
    onError: (err: string) => process.stderr.write(err),
    color: process.stdout.isTTY ? ("always" as const) : ("never" as const),
};

async function upOrPreview(preview: boolean): Promise<void> {
    const sandbox = await startDockerAndSandbox();
    say(`sandbox running (worker ${sandbox.workerUrl}, Fly API ${sandbox.flyApiUrl}, registry ${sandbox.registryServer})`);
    const opts = await engine();
    const stack = await openRehearsalStack(opts);
    const mode = await configure(stack, sandbox);
    if (mode === "prebuilt") {
        const ref = preview
            ? `${sandbox.registryServer}/${sandbox.registryApp}:${imageTagForContext(sandbox.kiloclawDir)}`
            : await buildAndPushFixture(sandbox);
        await stack.setConfig("kiloclaw:imageRef", { value: ref });
    }
    if (preview) {
        say("pulumi preview --diff");
        const result = await stack.preview({ ...stream, diff: true });
        say(`changes: ${JSON.stringify(result.changeSummary)}`);
        return;
    }
    // An interrupted earlier run (Ctrl-C twice) may have left pending creates: resolved from facts, then up.
    for (const line of await recoverInterruptedRun(stack)) say(line);
    say("pulumi up");
    await stack.up(stream);
    const unfinished = await stackUnfinishedOperations(stack);
    if (unfinished.length) throw new Error(`up finished but the state still has pending operations:\n  ${unfinished.join("\n  ")}`);
    say("converged: the state has no pending operations");
    const outputs = await stack.outputs();
    console.log("\nStack outputs:");
    for (const [name, { value, secret }] of Object.entries(outputs)) console.log(`  ${name.padEnd(16)} ${secret ? "[secret]" : value}`);
    console.log(`\nThe instance runs: ${outputs.flyAppName?.value} / ${outputs.flyMachineId?.value}, ${outputs.status?.value}.\n`);
    console.log(nextSteps(sandbox, opts.pulumi));
}

async function destroy(): Promise<void> {
    let sandbox = runningSandbox();
    if (fs.existsSync(path.join(engineDir(), "project"))) {
        sandbox = await startDockerAndSandbox(); // the stack's instance is destroyed through the worker
        const stack = await existingRehearsalStack(await engine());
        if (stack) {
            say("pulumi destroy");
            await stack.destroy(stream);
            await stack.workspace.removeStack(STACK);
            say(`removed the stack and its state (${engineDir()})`);
        }
        fs.rmSync(engineDir(), { recursive: true, force: true });
    }
    if (runningSandbox()) {
        say("stopping the sandbox");
        await stopSandbox(); // its emulator removes its machine containers and the images it pulled
    }
    const instance = sandbox?.instance || sandboxInstance();
    const images = ownImages(instance, sandbox?.registryServer ?? sandboxRegistryServer());
    if (images.length) {
        say(`removing the images this rehearsal made: ${images.join(", ")}`);
        const rmi = spawnSync("docker", ["rmi", ...images], { encoding: "utf8" });
        if (rmi.status !== 0)
            throw new Error(`docker rmi ${images.join(" ")} failed: ${rmi.stderr.trim()}\nRun \`npm run rehearse -- --destroy\` again.`);
    }
    // Build mode's staged contexts go with the images (LocalImages); a crashed run's leftovers go here.
    // The program stages under its own directory (this checkout), whatever the cwd of this process.
    fs.rmSync(stackContextsRoot(localScopeSlug(scopeOf(instance)), stagedContextsRoot(path.join(__dirname, ".."))), { recursive: true, force: true });
    fs.rmSync(path.join(sandboxDir(), "rehearse-images.json"), { force: true }); // written by older versions
    say(`done: nothing runs; the checkout and registry data stay in ${sandboxDir()} (remove it for a clean slate)`);
}

async function main(args: string[]): Promise<void> {
    const unknown = args.filter((a) => !["--destroy", "--preview"].includes(a));
    if (unknown.length) throw new Error(`unknown argument ${unknown.join(" ")}: use npm run rehearse [-- --preview | -- --destroy]`);
    if (args.includes("--destroy")) await destroy();
    else await upOrPreview(args.includes("--preview"));
}

/** A failed pulumi command has already streamed its diagnostics; repeating them would bury them. */
function failureText(err: unknown): string {
    if (err instanceof CommandError) return "the pulumi command failed: its diagnostics are above.";
    return err instanceof Error ? err.message : String(err);
}

if (require.main === module) {
    main(process.argv.slice(2)).catch((err) => {
        console.error(`\nrehearse: ${failureText(err)}`);
        process.exit(1);
    });
}
