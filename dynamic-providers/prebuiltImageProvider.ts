// Prebuilt mode checks the image it rolls out, not a local file: pull it from the registry and run
// `openclaw --version` in it, before anything downstream changes (a new imageRef replaces it
// create-before-delete, so the old instance keeps running until every check has passed). A teammate's tag that carries a
// different openclaw than this stack publishes stops the rollout here. It shells out to the docker
// CLI, so prebuilt mode still needs no docker/command plugin. The registry login lives only in a
// temporary DOCKER_CONFIG (token on stdin), removed on every exit, as scripts/push-image.sh does.
// child_process/fs/os are required inside functions: the provider is serialized into the state.
import type * as pulumi from "@pulumi/pulumi";
import type { PrebuiltImageInputs, PrebuiltImageOutputs } from "../lib/contract";
import { loginFailureMessage } from "../lib/registryLogin";
import { configureFromStack, stackAccess } from "./settings";

interface DockerRun {
    code: number;
    stdout: string;
    stderr: string;
}

function docker(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): DockerRun {
    const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
    const r = spawnSync("docker", args, {
        encoding: "utf8",
        env: opts.env ?? process.env,
        input: opts.input,
        stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        timeout: opts.timeoutMs ?? 600_000,
        maxBuffer: 16 * 1024 * 1024,
    });
    return { code: r.error ? -1 : (r.status ?? -1), stdout: (r.stdout ?? "").trim(), stderr: (r.stderr ?? "").trim() };
}

/** Pulls the image with a login that exists only for this pull. */
function pullWithTemporaryLogin(imageRef: string, registryServer: string, token: string): void {
    const fs = require("node:fs") as typeof import("node:fs");
    const os = require("node:os") as typeof import("node:os");
    const path = require("node:path") as typeof import("node:path");
    const config = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-docker-config-"));
    try {
        // A placeholder auth entry keeps the CLI off the platform's credential helper (which would outlive this run).
        fs.writeFileSync(path.join(config, "config.json"), '{"auths":{"kiloclaw-rollout.invalid":{}}}\n', { mode: 0o600 });
        const env = { ...process.env, DOCKER_CONFIG: config };
        if (token) {
            const login = docker(["login", "--username", "x", "--password-stdin", registryServer], { env, input: token, timeoutMs: 60_000 });
            if (login.code !== 0) {
                // The cause from docker's error: a registry that is down is not a refused token.
                const app = imageRef.slice(registryServer.length + 1).split(/[:@]/)[0] || "<app>";
                throw new Error(
                    `${loginFailureMessage(registryServer, app, login.stderr, "pulling the prebuilt image")} ` +
                        "Nothing was changed: a running instance keeps its current image.",
                );
            }
        }
        const pull = docker(["pull", "--platform", "linux/amd64", imageRef], { env });
        if (pull.code !== 0) {
            throw new Error(
                `docker pull ${imageRef} failed: ${pull.stderr}. Nothing was changed: a running instance keeps its current image. ` +
                    "Check that kiloclaw:imageRef (`pulumi config get kiloclaw:imageRef`) names a tag that is in the registry " +
                    `and that ${registryServer} is reachable` +
                    (token
                        ? ""
                        : " (no Fly token is set, so the pull was anonymous: `pulumi config set --secret kiloclaw:flyApiToken <token>` or FLY_API_TOKEN in .dev.vars)") +
                    ", then run `pulumi up` again.",
            );
        }
    } finally {
        fs.rmSync(config, { recursive: true, force: true });
    }
}

/** Pulls, checks and (when it was not there before) removes the image; returns what was checked. */
export function checkPrebuiltImage(inputs: PrebuiltImageInputs): PrebuiltImageOutputs {
    const info = docker(["info", "--format", "{{.ServerVersion}}"], { timeoutMs: 30_000 });
    if (info.code !== 0) throw new Error("Docker is not running, and prebuilt mode pulls the image to check it: start Docker, then `pulumi up`.");
    const wasLocal = docker(["image", "inspect", inputs.imageRef], { timeoutMs: 30_000 }).code === 0;
    try {
        pullWithTemporaryLogin(inputs.imageRef, inputs.registryServer, stackAccess().flyApiToken);
        const repo = inputs.imageRef.replace(/:[^/:]+$/, "");
        const digests = docker(["image", "inspect", "--format", "{{json .RepoDigests}}", inputs.imageRef], { timeoutMs: 30_000 });
        const repoDigest = (JSON.parse(digests.stdout || "[]") as string[]).find((d) => d.startsWith(`${repo}@`));
        const digest = repoDigest?.slice(repo.length + 1) ?? "";
        if (!/^sha256:[0-9a-f]{64}$/.test(digest))
            throw new Error(`docker did not report a registry digest for ${inputs.imageRef} after pulling it.`);

        const version = docker(["run", "--rm", "--platform", "linux/amd64", "--entrypoint", "openclaw", inputs.imageRef, "--version"], {
            timeoutMs: 120_000,
        });
        const printed = version.stdout.split("\n").pop()?.trim() ?? "";
        if (version.code !== 0) {
            throw new Error(`\`openclaw --version\` failed in ${inputs.imageRef} (exit ${version.code}): ${version.stderr || version.stdout}`);
        }
        if (printed !== inputs.expectedOpenclawVersion) {
            throw new Error(
                `The prebuilt image ${inputs.imageRef} runs openclaw ${printed || "(nothing printed)"}, but this stack would publish ` +
                    `${inputs.expectedOpenclawVersion} (${inputs.versionSource}) to the worker. Nothing was changed. If the image is ` +
                    `the one you want: \`pulumi config set kiloclaw:openclawVersion ${printed}\`; otherwise point kiloclaw:imageRef ` +
                    `at an image built from ${inputs.expectedOpenclawVersion}.`,
            );
        }
        return { ...inputs, digest, openclawVersion: printed };
    } finally {
        if (!wasLocal) docker(["rmi", inputs.imageRef], { timeoutMs: 60_000 });
    }
}

const REPLACE_ON = ["imageRef", "registryServer", "expectedOpenclawVersion"] as const;

export const prebuiltImageProvider: pulumi.dynamic.ResourceProvider<PrebuiltImageInputs, PrebuiltImageOutputs> = {
    configure: configureFromStack,

    async diff(_id: string, olds: PrebuiltImageOutputs, news: PrebuiltImageInputs): Promise<pulumi.dynamic.DiffResult> {
        const replaces = REPLACE_ON.filter((k) => olds[k] !== news[k]);
        // Create before delete: the new image is pulled and checked while everything downstream (the instance too) is
        // untouched; a delete-before-replace here would make the engine delete every dependent first.
        return { changes: replaces.length > 0 || olds.versionSource !== news.versionSource, replaces: [...replaces], deleteBeforeReplace: false };
    },

    async create(inputs: PrebuiltImageInputs): Promise<pulumi.dynamic.CreateResult<PrebuiltImageOutputs>> {
        const outs = checkPrebuiltImage(inputs);
        return { id: `${inputs.imageRef}@${outs.digest}`, outs };
    },

    async update(_id: string, olds: PrebuiltImageOutputs, news: PrebuiltImageInputs): Promise<pulumi.dynamic.UpdateResult<PrebuiltImageOutputs>> {
        // Only the description of where the version came from changed: nothing to check again.
        return { outs: { ...olds, versionSource: news.versionSource } };
    },

    async delete(): Promise<void> {
        // Nothing to undo: the check removes what it pulled.
    },
};
