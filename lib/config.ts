// The stack's settings, read once and checked together, so a developer sees
// every missing or wrong key in one message with the command that fixes it.
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseDevVars } from "./devVars";
import { consumedInputs } from "./dockerfileSources";
import { dockerfileSyntaxProblems } from "./dockerfileSyntax";
import { decodeInstanceId, devFlyAppName } from "./identity";
import { isSandboxInstance } from "./localScope";
import { findNodePin } from "./nodePin";
import { parseOpenclawPin } from "./openclawPin";

/** .dev.vars keys the policy pack may see (never secrets). */
export const WORKER_SETTING_KEYS = ["WORKER_ENV", "DEV_MODE", "KILOCODE_API_BASE_URL", "OPENCLAW_ALLOWED_ORIGINS"] as const;

/** Where the worker (`pnpm start`) and the Fly Machines API are when the stack does not say. */
export const DEFAULT_WORKER_URL = "http://localhost:8795";
export const DEFAULT_FLY_API_URL = "https://api.machines.dev";

/** Plain (non-secret) settings as they come from `pulumi config`. */
export interface RawSettings {
    kiloclawDir?: string;
    dockerfile?: string;
    userId?: string;
    instanceId?: string;
    workerUrl?: string;
    registryServer?: string;
    registryApp?: string;
    flyApiUrl?: string;
    region?: string;
    validate?: boolean;
    preflight?: boolean;
    warm?: boolean;
    publishImageVersion?: boolean;
    strictOrder?: boolean;
    /** The tag a worker without a read of its tag was restarted for (README, "Older workers must be restarted after a new tag"). */
    workerRestartedForTag?: string;
    imageRef?: string;
    openclawVersion?: string;
    /** What `node --version` in the image must print; default: the Dockerfile's Node pin. */
    expectedNodeVersion?: string;
    warmTimeoutSeconds?: number;
    instanceTimeoutSeconds?: number;
    smokeStartupSeconds?: number;
    smokeGatewaySeconds?: number;
    /** The sandbox's instance id (set by `npm run rehearse`): part of the stack's local identity (lib/localScope.ts). */
    sandboxInstance?: string;
}

/** Build mode builds, tests and pushes the checkout's Dockerfile; prebuilt mode rolls out an image already in the registry. */
export type ImageSource =
    | { kind: "build"; /** The kiloclaw/ directory. */ context: string; /** Relative to the context. */ dockerfile: string }
    | { kind: "prebuilt"; imageRef: string; imageTag: string };

/** What the program needs, with every default applied; secrets are handled separately. */
export interface RolloutSettings {
    kiloclawDir: string;
    devVarsPath: string;
    devVars: Record<string, string>;
    envLocalKeys: string[];
    userId: string;
    flyAppName: string;
    workerUrl: string;
    registryServer: string;
    registryApp: string;
    /** The app the worker pulls from: FLY_REGISTRY_APP ?? FLY_APP_NAME ?? "kiloclaw-machines", as the worker computes it. */
    workerRegistryApp: string;
    flyApiUrl: string;
    region: string;
    validate: boolean;
    /** Check the worker, Docker and Fly before anything is built (the runbook's "Verify services"). */
    preflight: boolean;
    warm: boolean;
    publishImageVersion: boolean;
    /** The runbook's sequence: push only after the validation passed (default: the push and warm-up run beside it). */
    strictOrder: boolean;
    workerRestartedForTag?: string;
    openclawVersion: string;
    /** The Dockerfile's pin (absent for a prebuilt image without a Dockerfile). */
    openclawPin?: string;
    /** The Node version the image validation expects (kiloclaw:expectedNodeVersion ?? the Dockerfile's pin); unchecked when absent. */
    expectedNodeVersion?: string;
    /** Where the image comes from: built from the checkout, or already in the registry. */
    source: ImageSource;
    workerSettings: Record<string, string>;
    warmTimeoutSeconds: number;
    instanceTimeoutSeconds: number;
    smokeStartupSeconds: number;
    smokeGatewaySeconds: number;
    /** The sandbox's instance id, part of the stack's local identity (lib/localScope.ts). */
    sandboxInstance?: string;
}

/** A file's text, or undefined when it does not exist; any other failure (EACCES, EISDIR) throws. */
export type ReadFile = (file: string) => string | undefined;

export const readFileIfExists: ReadFile = (file) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined);

/** What is at a path, for the kiloclawDir check. */
export type PathKind = (file: string) => "directory" | "file" | "missing";

export const pathKindOnDisk: PathKind = (file) => {
    const stat = fs.statSync(file, { throwIfNoEntry: false });
    return !stat ? "missing" : stat.isDirectory() ? "directory" : "file";
};

/** Every problem with the stack's settings, as one error without a stack trace (Pulumi prints a RunError's message only). */
export class ConfigurationError extends pulumi.RunError {
    constructor(readonly problems: string[]) {
        super(`kiloclaw-rollout configuration (nothing was changed):\n  - ${problems.join("\n  - ")}`);
    }
}

/** Kilo user ids are UUIDs (the Cloud app creates them with randomUUID). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A read failure as a sentence that names the path and the fix. */
function fileProblem(file: string, err: unknown, fix: string): string {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === "EACCES" || code === "EPERM") return `${file} cannot be read (permission denied): \`chmod u+r ${file}\`, or ${fix}.`;
    if (code === "EISDIR") return `${file} is a directory, not a file: ${fix}.`;
    return `${file} cannot be read (${code ?? (err as Error)?.message}): ${fix}.`;
}

function positive(name: string, value: number | undefined, fallback: number, problems: string[]): number {
    if (value === undefined) return fallback;
    if (!Number.isFinite(value) || value <= 0) problems.push(`kiloclaw:${name} must be a positive number of seconds (got ${value}).`);
    return value;
}

/** Resolves settings from config and the checkout's files; throws one ConfigurationError listing every problem. */
export function resolveSettings(raw: RawSettings, readFile: ReadFile = readFileIfExists, pathKind?: PathKind): RolloutSettings {
    const { settings, problems } = collectSettings(raw, readFile, pathKind);
    if (problems.length) throw new ConfigurationError(problems);
    return settings;
}

/**
 * The settings and every problem found, in one pass. A problem is reported once, at its cause: a wrong
 * kiloclawDir is not also reported as a missing .dev.vars and Dockerfile, a missing .dev.vars not also
 * as a registry app the worker does not use. `pathKind` defaults to the disk when `readFile` does.
 */
function collectSettings(
    raw: RawSettings,
    readFile: ReadFile,
    pathKind: PathKind = readFile === readFileIfExists ? pathKindOnDisk : () => "directory",
): { settings: RolloutSettings; problems: string[]; devVarsRead: boolean } {
    const problems: string[] = [];
    const setDir = "`pulumi config set kiloclaw:kiloclawDir /path/to/cloud/kiloclaw`";
    if (!raw.kiloclawDir) problems.push(`kiloclaw:kiloclawDir is not set: ${setDir}.`);
    const kiloclawDir = path.resolve(raw.kiloclawDir ?? ".");
    const dirKind = raw.kiloclawDir ? pathKind(kiloclawDir) : "missing";
    if (raw.kiloclawDir && dirKind !== "directory") {
        const what = dirKind === "missing" ? "does not exist" : "is a file, not a directory";
        problems.push(`kiloclaw:kiloclawDir ${kiloclawDir} ${what}: point it at the kiloclaw/ folder of your cloud checkout: ${setDir}.`);
    }
    const dirOk = dirKind === "directory";
    /** The file's text; undefined when missing; null when unreadable (and then already reported). */
    const read = (file: string, fix: string): string | undefined | null => {
        try {
            return readFile(file);
        } catch (err) {
            problems.push(fileProblem(file, err, fix));
            return null;
        }
    };
    const devVarsPath = path.join(kiloclawDir, ".dev.vars");
    const copyDevVars = `copy .dev.vars.example to .dev.vars in ${kiloclawDir} (the worker reads it too)`;
    const devVarsText = dirOk ? read(devVarsPath, copyDevVars) : undefined;
    const dockerfile = raw.dockerfile ?? "Dockerfile";
    const dockerfilePath = path.join(kiloclawDir, dockerfile);
    const dockerfileRead = dirOk ? read(dockerfilePath, "check kiloclaw:dockerfile") : undefined;
    const dockerfileText = dockerfileRead ?? undefined;
    if (dirOk && devVarsText === undefined && dockerfileRead === undefined && !raw.imageRef) {
        problems.push(`kiloclaw:kiloclawDir ${kiloclawDir} has neither a Dockerfile nor a .dev.vars: is it cloud/kiloclaw? ${setDir}.`);
    } else if (dirOk && devVarsText === undefined) {
        problems.push(`${devVarsPath} does not exist: ${copyDevVars}.`);
    }
    const devVars = parseDevVars(devVarsText ?? "");
    // The Cloud app's .env.development.local sits one level above kiloclaw/.
    const envLocalPath = path.join(kiloclawDir, "..", ".env.development.local");
    const envLocalKeys = dirOk ? Object.keys(parseDevVars(read(envLocalPath, "fix or remove that file") ?? "")).sort() : [];

    let userId = raw.userId ?? "";
    if (raw.userId && raw.instanceId) problems.push("Set only one of kiloclaw:userId and kiloclaw:instanceId (`pulumi config rm` the other).");
    else if (raw.instanceId) {
        try {
            userId = decodeInstanceId(raw.instanceId);
            if (!UUID.test(userId)) {
                problems.push(
                    `kiloclaw:instanceId "${raw.instanceId}" decodes to "${userId}", which is not a userId (a UUID): ` +
                        "copy the Instance ID from localhost:3000/claw → Instance tab: `pulumi config set kiloclaw:instanceId <Instance ID>`.",
                );
            }
        } catch (err) {
            problems.push(`kiloclaw:instanceId: ${(err as Error).message}`);
        }
    } else if (!raw.userId) {
        problems.push(
            "Who is rolling out? `pulumi config set kiloclaw:userId <your userId>`, or `pulumi config set kiloclaw:instanceId <Instance ID from localhost:3000/claw>`.",
        );
    }
    if (raw.userId && !raw.instanceId && !UUID.test(raw.userId)) {
        problems.push(
            `kiloclaw:userId "${raw.userId}" is not a userId (a UUID such as 44792035-0fb0-45e1-9115-ac6575f1ffa7): ` +
                "`pulumi config set kiloclaw:userId <your userId>`, or `pulumi config set kiloclaw:instanceId <Instance ID from localhost:3000/claw>`.",
        );
    }

    let openclawPin: string | undefined;
    let source: ImageSource | undefined;
    if (raw.imageRef) {
        const m = /^(.+\/[^/:]+):([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$/.exec(raw.imageRef);
        if (!m) problems.push(`kiloclaw:imageRef "${raw.imageRef}" is not <registry>/<app>:<tag>, e.g. registry.fly.io/kiloclaw-dev:dev-1771448521.`);
        else source = { kind: "prebuilt", imageRef: raw.imageRef, imageTag: m[2] };
    } else if (dirOk) {
        if (dockerfileRead === undefined && devVarsText !== undefined) {
            problems.push(`${dockerfilePath} does not exist: check kiloclaw:kiloclawDir (and kiloclaw:dockerfile).`);
        } else if (dockerfileText !== undefined) {
            source = { kind: "build", context: kiloclawDir, dockerfile };
            // Syntax errors now, with the line, rather than minutes later inside `docker build`.
            const syntax = dockerfileSyntaxProblems(dockerfileText, dockerfilePath);
            problems.push(...syntax);
            // A COPY/ADD source that is not in the context, with its line, before the first resource (checked on disk only).
            if (syntax.length === 0 && readFile === readFileIfExists) {
                try {
                    consumedInputs(kiloclawDir, dockerfile);
                } catch (err) {
                    problems.push((err as Error).message);
                }
            }
        }
    }
    if (dockerfileText !== undefined && (source?.kind === "build" || !raw.openclawVersion)) {
        try {
            openclawPin = parseOpenclawPin(dockerfileText, dockerfilePath).version;
        } catch (err) {
            problems.push((err as Error).message);
        }
    }
    const openclawVersion = raw.openclawVersion ?? openclawPin ?? "";
    const expectedNodeVersion =
        raw.expectedNodeVersion?.replace(/^v/, "") ?? (dockerfileText !== undefined ? findNodePin(dockerfileText) : undefined);
    if (raw.expectedNodeVersion && !/^\d+\.\d+\.\d+$/.test(expectedNodeVersion ?? "")) {
        problems.push(`kiloclaw:expectedNodeVersion "${raw.expectedNodeVersion}" is not an exact x.y.z version (e.g. 22.13.1).`);
    }
    if (source?.kind === "prebuilt" && !openclawVersion && dockerfileText === undefined) {
        problems.push("kiloclaw:imageRef needs the image's openclaw version: `pulumi config set kiloclaw:openclawVersion x.y.z`.");
    }
    if (raw.openclawVersion && !/^\d+\.\d+\.\d+$/.test(raw.openclawVersion)) {
        problems.push(`kiloclaw:openclawVersion "${raw.openclawVersion}" is not an exact x.y.z version.`);
    }

    // One registry app: the push goes where the worker pulls from, computed as the worker computes it.
    const workerRegistryApp = devVars.FLY_REGISTRY_APP || devVars.FLY_APP_NAME || "kiloclaw-machines";
    const registryApp = raw.registryApp ?? workerRegistryApp;
    // Only against a .dev.vars that was read: a missing one is reported once, above.
    if (raw.registryApp && raw.registryApp !== workerRegistryApp && typeof devVarsText === "string") {
        const key = devVars.FLY_REGISTRY_APP ? "FLY_REGISTRY_APP" : devVars.FLY_APP_NAME ? "FLY_APP_NAME" : undefined;
        const why = key ? `${key} in ${devVarsPath}` : `the worker's default: ${devVarsPath} sets neither FLY_REGISTRY_APP nor FLY_APP_NAME`;
        problems.push(
            `kiloclaw:registryApp is "${raw.registryApp}" but the worker pulls from "${workerRegistryApp}" (${why}): ` +
                `\`pulumi config rm kiloclaw:registryApp\` to push where the worker pulls, or set FLY_REGISTRY_APP=${raw.registryApp} in .dev.vars.`,
        );
    }
    const workerSettings: Record<string, string> = {};
    for (const key of WORKER_SETTING_KEYS) if (devVars[key] !== undefined) workerSettings[key] = devVars[key];

    const settings: RolloutSettings = {
        kiloclawDir,
        devVarsPath,
        devVars,
        envLocalKeys,
        userId,
        flyAppName: userId ? devFlyAppName(userId) : "",
        workerUrl: (raw.workerUrl ?? DEFAULT_WORKER_URL).replace(/\/+$/, ""),
        registryServer: raw.registryServer ?? "registry.fly.io",
        registryApp,
        workerRegistryApp,
        flyApiUrl: (raw.flyApiUrl ?? DEFAULT_FLY_API_URL).replace(/\/+$/, ""),
        region: raw.region ?? "iad",
        validate: raw.validate ?? true,
        preflight: raw.preflight ?? true,
        warm: raw.warm ?? true,
        publishImageVersion: raw.publishImageVersion ?? true,
        strictOrder: raw.strictOrder ?? false,
        workerRestartedForTag: raw.workerRestartedForTag,
        openclawVersion,
        openclawPin,
        expectedNodeVersion,
        // Only read when there are no problems: every path that leaves it unset adds one.
        source: source as ImageSource,
        workerSettings,
        warmTimeoutSeconds: positive("warmTimeoutSeconds", raw.warmTimeoutSeconds, 300, problems),
        instanceTimeoutSeconds: positive("instanceTimeoutSeconds", raw.instanceTimeoutSeconds, 300, problems),
        smokeStartupSeconds: positive("smokeStartupSeconds", raw.smokeStartupSeconds, 60, problems),
        smokeGatewaySeconds: positive("smokeGatewaySeconds", raw.smokeGatewaySeconds, 90, problems),
    };
    if (raw.sandboxInstance !== undefined) {
        if (isSandboxInstance(raw.sandboxInstance)) settings.sandboxInstance = raw.sandboxInstance;
        else problems.push(`kiloclaw:sandboxInstance "${raw.sandboxInstance}" is not 1-32 lowercase letters and digits (npm run rehearse sets it).`);
    }
    for (const url of [settings.workerUrl, settings.flyApiUrl]) {
        if (!/^https?:\/\/[^/]+/.test(url)) problems.push(`"${url}" is not an http(s) URL (kiloclaw:workerUrl / kiloclaw:flyApiUrl).`);
    }
    return { settings, problems, devVarsRead: typeof devVarsText === "string" };
}

export interface RolloutSecrets {
    internalApiKey: pulumi.Output<string>;
    flyApiToken: pulumi.Output<string>;
    kilocodeApiKey: pulumi.Output<string>;
}

export interface RolloutConfig extends RolloutSettings {
    secrets: RolloutSecrets;
}

/** Reads the `kiloclaw` namespace once; secrets fall back to .dev.vars and stay Pulumi secrets. */
export function loadRolloutConfig(cfg = new pulumi.Config("kiloclaw")): RolloutConfig {
    const raw: RawSettings = {
        kiloclawDir: cfg.get("kiloclawDir"),
        dockerfile: cfg.get("dockerfile"),
        userId: cfg.get("userId"),
        instanceId: cfg.get("instanceId"),
        workerUrl: cfg.get("workerUrl"),
        registryServer: cfg.get("registryServer"),
        registryApp: cfg.get("registryApp"),
        flyApiUrl: cfg.get("flyApiUrl"),
        region: cfg.get("region"),
        validate: cfg.getBoolean("validate"),
        preflight: cfg.getBoolean("preflight"),
        warm: cfg.getBoolean("warm"),
        publishImageVersion: cfg.getBoolean("publishImageVersion"),
        strictOrder: cfg.getBoolean("strictOrder"),
        workerRestartedForTag: cfg.get("workerRestartedForTag"),
        imageRef: cfg.get("imageRef"),
        openclawVersion: cfg.get("openclawVersion"),
        expectedNodeVersion: cfg.get("expectedNodeVersion"),
        warmTimeoutSeconds: cfg.getNumber("warmTimeoutSeconds"),
        instanceTimeoutSeconds: cfg.getNumber("instanceTimeoutSeconds"),
        smokeStartupSeconds: cfg.getNumber("smokeStartupSeconds"),
        smokeGatewaySeconds: cfg.getNumber("smokeGatewaySeconds"),
        sandboxInstance: cfg.get("sandboxInstance"),
    };
    // One pass: the secrets' problems join the settings' problems in one error.
    const { settings, problems, devVarsRead } = collectSettings(raw, readFileIfExists);
    const secret = (key: string, devVarsKey: string | undefined, fallback?: string): pulumi.Output<string> => {
        // Read plainly only to see whether it is empty; the value stays a secret (getSecret below).
        const configured = cfg.get(key);
        const setFix = `\`pulumi config set --secret kiloclaw:${key} <value>\``;
        if (configured !== undefined && configured.trim() === "") {
            problems.push(
                `kiloclaw:${key} is set but empty: ${setFix}` +
                    (devVarsKey ? `, or \`pulumi config rm kiloclaw:${key}\` to use ${devVarsKey} from .dev.vars.` : "."),
            );
            return pulumi.secret("");
        }
        if (configured !== undefined) return cfg.requireSecret(key);
        const fromFile = devVarsKey ? settings.devVars[devVarsKey] : undefined;
        if (fromFile?.trim()) return pulumi.secret(fromFile);
        if (fallback !== undefined) return pulumi.secret(fallback);
        // Without a readable .dev.vars (reported above) the key may well be in it: no follow-on problem.
        if (devVarsKey && !devVarsRead) return pulumi.secret("");
        const inFile = !devVarsKey
            ? ""
            : fromFile !== undefined
              ? ` and ${devVarsKey} in ${settings.devVarsPath} is empty`
              : ` and ${settings.devVarsPath} has no ${devVarsKey}`;
        problems.push(`kiloclaw:${key} is not set${inFile}: ${setFix}.`);
        return pulumi.secret("");
    };
    const secrets: RolloutSecrets = {
        internalApiKey: secret("internalApiKey", "INTERNAL_API_SECRET"),
        flyApiToken: secret("flyApiToken", "FLY_API_TOKEN"),
        // The runbook's Option B provisions with a test key: no model access, but the gateway starts.
        kilocodeApiKey: secret("kilocodeApiKey", undefined, "test-key"),
    };
    if (problems.length) throw new ConfigurationError(problems);
    return { ...settings, secrets };
}
