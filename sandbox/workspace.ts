// The Pulumi engine for a rehearsal, driven through the Automation API: a project
// directory whose program is this repository, a local file backend and a
// generated passphrase, all in one directory outside the tracked tree (stack
// settings included, so `config set` and `stack rm` touch no tracked file).
// Used by `npm run rehearse` and the end-to-end suite.
import { ChildProcess, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Deployment, LocalWorkspace, PulumiCommand, Stack, Workspace } from "@pulumi/pulumi/automation";
import { scriptPath } from "./docker";

const REPO = path.join(__dirname, "..");

/** Resource plugins a build-mode rollout needs (@pulumi/docker, @pulumi/command). */
export const BUILD_MODE_PLUGINS = ["docker", "command"] as const;

export interface RehearsalStackOptions {
    /** Holds project/ (Pulumi.yaml, Pulumi.<stack>.yaml), state/ (the backend) and passphrase. */
    dir: string;
    stackName: string;
    pulumi: PulumiCommand;
    /** PULUMI_HOME for the CLI (plugins, workspace settings); default: the CLI's own (~/.pulumi). */
    pulumiHome?: string;
    /** The checkout whose program runs (default: this repository), e.g. a second clone elsewhere. */
    program?: string;
    /** More environment for the CLI over engineEnv(dir), e.g. PULUMI_BACKEND_URL and AWS_* for an S3 backend. */
    env?: Record<string, string>;
}

/** The paths an engine directory holds; what a user needs to run the `pulumi` CLI on it by hand. */
export function engineEnv(dir: string): Record<string, string> {
    return {
        PULUMI_BACKEND_URL: `file://${path.join(dir, "state")}`,
        PULUMI_CONFIG_PASSPHRASE_FILE: path.join(dir, "passphrase"),
        PULUMI_SKIP_UPDATE_CHECK: "true",
        // Plugins come from what is installed; a download attempt offline only fails later and slower.
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    };
}

function ensurePassphrase(file: string): void {
    if (!fs.existsSync(file)) fs.writeFileSync(file, crypto.randomBytes(24).toString("base64url") + "\n", { mode: 0o600 });
}

/** Pulumi.yaml's runtime, as the engine runs the program for a developer (test/unit/lib.test.ts holds them equal). */
export const PROGRAM_RUNTIME = { name: "nodejs", options: { typescript: false, nodeargs: "--require ./scripts/ts-register.js" } };

/** The workspace of an engine directory (created on first use). */
export async function rehearsalWorkspace(opts: Omit<RehearsalStackOptions, "stackName">): Promise<LocalWorkspace> {
    const projectDir = path.join(opts.dir, "project");
    fs.mkdirSync(projectDir, { recursive: true });
    fs.mkdirSync(path.join(opts.dir, "state"), { recursive: true });
    ensurePassphrase(path.join(opts.dir, "passphrase"));
    return LocalWorkspace.create({
        workDir: projectDir,
        pulumiCommand: opts.pulumi,
        pulumiHome: opts.pulumiHome,
        envVars: { ...engineEnv(opts.dir), ...opts.env },
        secretsProvider: "passphrase",
        projectSettings: {
            name: "kiloclaw-rollout",
            runtime: PROGRAM_RUNTIME,
            main: path.relative(projectDir, opts.program ?? REPO),
        },
    });
}

/** Creates or selects the stack. */
export async function openRehearsalStack(opts: RehearsalStackOptions): Promise<Stack> {
    return Stack.createOrSelect(opts.stackName, await rehearsalWorkspace(opts));
}

/** The stack if it exists, else undefined (nothing is created). */
export async function existingRehearsalStack(opts: RehearsalStackOptions): Promise<Stack | undefined> {
    if (!fs.existsSync(path.join(opts.dir, "project"))) return undefined;
    const ws = await rehearsalWorkspace(opts);
    const stacks = await ws.listStacks();
    return stacks.some((s) => s.name === opts.stackName) ? Stack.select(opts.stackName, ws) : undefined;
}

/** The resource plugins build mode needs, at the versions package-lock.json resolves (the SDKs' own: the engine loads
 *  no other version). */
export function buildModePlugins(): Array<{ name: string; version: string }> {
    const lock = JSON.parse(fs.readFileSync(path.join(REPO, "package-lock.json"), "utf8"));
    return BUILD_MODE_PLUGINS.map((name) => ({ name, version: lock.packages[`node_modules/@pulumi/${name}`].version as string }));
}

/** The build-mode plugins the CLI lacks at their pinned version, as "docker 5.2.0" (another version does not count). */
export async function missingBuildPlugins(ws: Workspace): Promise<string[]> {
    const installed = (await ws.listPlugins()).filter((p) => p.kind === "resource");
    return buildModePlugins()
        .filter((p) => !installed.some((i) => i.name === p.name && i.version === p.version))
        .map((p) => `${p.name} ${p.version}`);
}

/**
 * A Pulumi CLI: the `pulumi` on PATH if there is one, else the one bootstrap/install-pulumi.sh builds
 * from Go modules (cached; its progress goes to stderr). PATH is only changed for the CLI's children.
 */
export async function findPulumi(): Promise<PulumiCommand> {
    try {
        return await PulumiCommand.get();
    } catch {
        // None on PATH (or too old for this SDK): build the pinned one.
    }
    const binDir = await new Promise<string>((resolve, reject) => {
        let stdout = "";
        const child = spawn("bash", [scriptPath("install-pulumi.sh")], { stdio: ["ignore", "pipe", "inherit"] });
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
        child.on("error", reject);
        child.on("close", (code) =>
            code === 0
                ? resolve(stdout.trim().split("\n").pop() ?? "")
                : reject(
                      new Error(
                          "Could not build the Pulumi CLI (bootstrap/install-pulumi.sh, output above). Install one: https://www.pulumi.com/docs/install/",
                      ),
                  ),
        );
    });
    return PulumiCommand.get({ root: path.dirname(binDir) });
}

/** A checkpoint resource, as `stack export` writes it (the fields convergence looks at). */
interface StateResource {
    urn: string;
    type: string;
    inputs?: Record<string, unknown>;
    delete?: boolean;
    pendingReplacement?: boolean;
}

/** A pending operation, as `stack export` writes it: what an interrupted run was doing. */
interface PendingOperation {
    resource: StateResource;
    type: string;
}

/**
 * What a converged state must not hold, one line each: the engine's pending operations (a create,
 * update or delete an interrupted run never heard the end of) and resources left for deletion or
 * replacement. `preview --expect-no-changes` does not count these, so every convergence check asks here.
 */
export function unfinishedOperations(deployment: Deployment["deployment"]): string[] {
    const ops = (deployment.pending_operations ?? []) as PendingOperation[];
    const resources = (deployment.resources ?? []) as StateResource[];
    return [
        ...ops.map((op) => `${op.resource.urn}: interrupted while ${op.type}`),
        ...resources.filter((r) => r.delete).map((r) => `${r.urn}: pending deletion`),
        ...resources.filter((r) => r.pendingReplacement).map((r) => `${r.urn}: pending replacement`),
    ];
}

/** unfinishedOperations of the stack's current state (`stack export`). */
export async function stackUnfinishedOperations(stack: Stack): Promise<string[]> {
    return unfinishedOperations((await stack.exportStack()).deployment);
}

/**
 * `pulumi <args>` on the stack's workspace as a child process of its own process group, as a terminal
 * runs it: `process.kill(-child.pid, "SIGINT")` is then a Ctrl-C (the CLI and its plugins all get it).
 * The Automation API's abort signal sends one SIGINT to the CLI alone, so it cannot press Ctrl-C twice.
 */
export function spawnPulumi(stack: Stack, args: string[]): ChildProcess {
    const ws = stack.workspace;
    const command = ws.pulumiCommand.command;
    const env: NodeJS.ProcessEnv = { ...process.env, ...ws.envVars, PULUMI_AUTOMATION_API: "true" };
    if (ws.pulumiHome) env.PULUMI_HOME = ws.pulumiHome;
    // The language host and the dynamic-provider plugin sit beside the CLI.
    if (path.isAbsolute(command)) env.PATH = `${path.dirname(command)}:${env.PATH ?? ""}`;
    return spawn(command, [...args, "--stack", stack.name, "--non-interactive"], {
        cwd: ws.workDir,
        env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
    });
}

/**
 * Drops the pending creates an interrupted `up` left (two Ctrl-Cs during a create), which the engine
 * carries through every later `up`; returns their URNs. Safe for this program because every create
 * starts from what really exists, not from the state: the instance's create reads the worker's status
 * by userId and destroys an instance it finds before provisioning (the worker holds one per user), the
 * warm machine's create removes machines carrying its owner metadata, the rest only rewrite or check.
 * It is `pulumi refresh --clear-pending-creates`, which the README tells CLI users to run.
 */
export async function clearPendingCreates(stack: Stack): Promise<string[]> {
    const ops = ((await stack.exportStack()).deployment.pending_operations ?? []) as PendingOperation[];
    const creates = ops.filter((op) => op.type === "creating").map((op) => op.resource.urn);
    if (creates.length) await stack.refresh({ clearPendingCreates: true });
    return creates;
}

/**
 * What one more `up` needs after an interrupted one (two Ctrl-Cs during a create): the pending creates
 * dropped (clearPendingCreates). Returns what it did, one line each.
 */
export async function recoverInterruptedRun(stack: Stack): Promise<string[]> {
    return (await clearPendingCreates(stack)).map(
        (urn) => `dropped the pending create of ${urn} (an interrupted run's; the next create starts from what exists)`,
    );
}
