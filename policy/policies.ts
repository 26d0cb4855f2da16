// The kiloclaw-rollout policies and the pure helpers they use.
//
// This module never constructs the PolicyPack (that starts a gRPC server), so
// tests import it freely; policy/index.ts is the only place that does.
//
// What a policy sees (see /work/shared/reference/pulumi-notes.md):
// - resource policies get a resource's *inputs*, stack policies every
//   resource's *outputs* (the dynamic providers echo their inputs into their
//   outputs, so the same property names work in both);
// - secrets arrive as plain values;
// - during preview a value that is not known yet is an "unknown" sentinel and
//   reading it through the engine's proxy throws. Every read below goes
//   through `readProp`, which turns that into `UNKNOWN`, and a check whose
//   input is unknown is skipped instead of failing the whole policy.
// Every policy is a pure function of its args: no files, no clock, no env.

import {
    EnforcementLevel,
    Policies,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
    UnknownValueError,
} from "@pulumi/policy";
import { RESOURCE_TYPES } from "../lib/contract";

export const POLICY_PACK_NAME = "kiloclaw-rollout";

/** The type tokens policies look for (lib/contract.ts). */
export const TYPES = RESOURCE_TYPES;

/** Every dynamic resource of this program has a type token with this prefix. */
export const KILOCLAW_DYNAMIC_PREFIX = "pulumi-nodejs:dynamic/kiloclaw:";

/** Inputs of the kiloclaw dynamic resources that hold secrets (policy no-secrets-in-commands). */
export const SECRET_INPUT_NAMES = ["internalApiKey", "flyApiToken", "kilocodeApiKey", "gatewayToken"] as const;

/** Values the runbook uses on purpose where a key is required but must not work. */
export const PLACEHOLDER_VALUES: readonly string[] = ["test-key", "test-token", "warm"];

/** The user the worker substitutes for every request when DEV_MODE=true. */
export const DEV_MODE_USER_ID = "dev@kilocode.ai";

/** The registry the worker pulls from when nothing says otherwise. */
export const DEFAULT_REGISTRY_SERVER = "registry.fly.io";

// ---------------------------------------------------------------------------
// Reading props without tripping over preview unknowns
// ---------------------------------------------------------------------------

/** A value the engine does not know yet (preview). */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");
export type Unknown = typeof UNKNOWN;

/** The sentinels the engine uses for unknown values (as in @pulumi/policy's proxy). */
export const UNKNOWN_SENTINELS: ReadonlySet<string> = new Set([
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", // boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421", // number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", // string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2", // array
    "030794c1-ac77-496b-92df-f27374a8bd58", // asset
    "e48ece36-62e2-4504-bad9-02848725956a", // archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff", // object
]);

function normalize(value: unknown): unknown {
    return typeof value === "string" && UNKNOWN_SENTINELS.has(value) ? UNKNOWN : value;
}

/** obj[key], with an unknown value (sentinel or the proxy's UnknownValueError) as UNKNOWN. */
export function readProp(obj: unknown, key: string): unknown {
    if (obj === UNKNOWN) return UNKNOWN;
    if (obj === null || typeof obj !== "object") return undefined;
    try {
        return normalize((obj as Record<string, unknown>)[key]);
    } catch (e) {
        if (e instanceof UnknownValueError) return UNKNOWN;
        throw e;
    }
}

/** Follows a path of keys; UNKNOWN as soon as any step is unknown. */
export function readPath(obj: unknown, ...path: string[]): unknown {
    let current = normalize(obj);
    for (const key of path) {
        current = readProp(current, key);
        if (current === UNKNOWN) return UNKNOWN;
    }
    return current;
}

/** A string at the path, UNKNOWN, or undefined for anything else (absent, null, a number). */
export function readString(obj: unknown, ...path: string[]): string | Unknown | undefined {
    const value = readPath(obj, ...path);
    if (value === UNKNOWN) return UNKNOWN;
    return typeof value === "string" ? value : undefined;
}

/** The [key, value] pairs of an object at the path (values may be UNKNOWN); [] when it is not an object. */
export function readEntries(obj: unknown, ...path: string[]): Array<[string, unknown]> | Unknown {
    const record = readPath(obj, ...path);
    if (record === UNKNOWN) return UNKNOWN;
    if (record === null || typeof record !== "object" || Array.isArray(record)) return [];
    return Object.keys(record).map((key): [string, unknown] => [key, readProp(record, key)]);
}

/** The elements of an array at the path (elements may be UNKNOWN); undefined when it is not an array. */
export function readArray(obj: unknown, ...path: string[]): unknown[] | Unknown | undefined {
    const array = readPath(obj, ...path);
    if (array === UNKNOWN) return UNKNOWN;
    if (!Array.isArray(array)) return undefined;
    const length = readProp(array, "length");
    const items: unknown[] = [];
    for (let i = 0; i < (typeof length === "number" ? length : 0); i++) items.push(readProp(array, String(i)));
    return items;
}

/** `WorkerImageVersion "image-version"`: how messages name a resource. */
export function label(resource: { type: string; name: string }): string {
    const colon = resource.type.lastIndexOf(":");
    return `${colon >= 0 ? resource.type.slice(colon + 1) : resource.type} "${resource.name}"`;
}

/** A violation message: what is wrong, then the exact fix. */
function withFix(problem: string, fix: string): string {
    return `${problem} Fix: ${fix}`;
}

function ofType(resources: PolicyResource[], type: string): PolicyResource[] {
    return resources.filter((r) => r.type === type);
}

// ---------------------------------------------------------------------------
// Pure helpers: versions, registries, secrets, destructive commands
// ---------------------------------------------------------------------------

const EXACT_VERSION = /^\d+\.\d+\.\d+$/;

export function isExactVersion(spec: string): boolean {
    return EXACT_VERSION.test(spec);
}

/** Why an `openclaw@<spec>` pin is not an exact x.y.z, or undefined when it is. */
export function describePinProblem(spec: string | undefined): string | undefined {
    const pin = spec?.trim() ?? "";
    if (pin === "") return "openclaw is installed without a version (no pin)";
    if (isExactVersion(pin)) return undefined;
    if (/^latest$/i.test(pin)) return `\`openclaw@${pin}\` is not a pin: it floats to whatever npm serves`;
    if (/[\^~<>=*|]|\s|(?:^|\.)[xX](?:\.|$)/.test(pin)) return `\`openclaw@${pin}\` is a version range, not a pin`;
    return `\`openclaw@${pin}\` is not an exact x.y.z version`;
}

/** The image name prefix the worker pulls: `<registryServer>/<app>:`. */
export function expectedImagePrefix(registryServer: string | undefined, app: string): string {
    const server = (registryServer ?? "").trim().replace(/\/+$/, "") || DEFAULT_REGISTRY_SERVER;
    return `${server}/${app}:`;
}

/** The origins of a comma-separated OPENCLAW_ALLOWED_ORIGINS value. */
export function parseAllowedOrigins(value: string): string[] {
    return value
        .split(",")
        .map((origin) => origin.trim())
        .filter((origin) => origin.length > 0);
}

function sameOrigin(a: string, b: string): boolean {
    const norm = (o: string) => o.trim().replace(/\/+$/, "").toLowerCase();
    return norm(a) === norm(b);
}

/** Whether a base URL has the shape the worker hands to machines: https://<host>/api/openrouter/. */
export function isTunnelBaseUrl(url: string): boolean {
    return /^https:\/\/[A-Za-z0-9.-]+(?::\d+)?\/api\/openrouter\/$/.test(url);
}

/** The tunnel base URL that a near miss was meant to be, when its host can be read. */
export function suggestTunnelBaseUrl(url: string): string {
    const host = /^[a-z]+:\/\/([^/?#\s]+)/i.exec(url.trim())?.[1]?.replace(/^[^@]*@/, "");
    return `https://${host ?? "<your-tunnel-host>"}/api/openrouter/`;
}

export function isPlaceholderValue(value: string): boolean {
    return PLACEHOLDER_VALUES.includes(value.trim());
}

/** `$FOO`, `${FOO}`, `$(cmd)`: text that names a value instead of holding it. */
function isVariableReference(value: string): boolean {
    return /^\$[{(A-Za-z_]/.test(value.trim());
}

/** Names of variables that hold secrets: *_SECRET, *_TOKEN, *_API_KEY, *PASSWORD. */
export function isSecretName(name: string): boolean {
    return /(?:^|_)(?:SECRET|TOKEN|API_KEY|PASSWORD|PASSWD)$/i.test(name);
}

/** Wider net for machine env: any name that mentions a key, token, secret, password or credential. */
export function isKeyLikeName(name: string): boolean {
    return /KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|MACAROON/i.test(name);
}

const FLY_TOKEN = /(?:^|[^A-Za-z0-9])f[mo][12][a-z]?_[A-Za-z0-9+/=_-]{8,}/;

export function containsFlyToken(text: string): boolean {
    return FLY_TOKEN.test(text);
}

/** Bits per character of the string's own symbol distribution. */
export function shannonEntropy(text: string): number {
    const counts = new Map<string, number>();
    for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    let bits = 0;
    for (const n of counts.values()) {
        const p = n / text.length;
        bits -= p * Math.log2(p);
    }
    return bits;
}

/** A long token-alphabet string with letters, digits and high entropy: an API key, JWT or similar. */
export function looksLikeRandomSecret(value: string): boolean {
    const v = value.trim();
    return (
        v.length >= 32 &&
        /^[A-Za-z0-9+/=_.-]+$/.test(v) &&
        /[0-9]/.test(v) &&
        /[A-Za-z]/.test(v) &&
        shannonEntropy(v) >= 3.5
    );
}

/** Shell text split into simple commands (continuations joined; split at newlines, ; && || |). */
export function shellSegments(text: string): string[] {
    return text
        .replace(/\\\r?\n/g, " ")
        .split(/\r?\n|;|&&|\|\||\|/)
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
}

/** Compiles extraSecretPatterns entries; `/src/flags` or a bare source. Bad entries come back as errors. */
export function compileExtraPatterns(patterns: unknown): { regexes: Array<{ index: number; regex: RegExp }>; errors: string[] } {
    const regexes: Array<{ index: number; regex: RegExp }> = [];
    const errors: string[] = [];
    if (!Array.isArray(patterns)) return { regexes, errors };
    patterns.forEach((pattern, index) => {
        if (typeof pattern !== "string" || pattern === "") {
            errors.push(`extraSecretPatterns[${index}] is not a non-empty string`);
            return;
        }
        const slashed = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
        try {
            regexes.push({ index, regex: slashed ? new RegExp(slashed[1], slashed[2]) : new RegExp(pattern) });
        } catch {
            errors.push(`extraSecretPatterns[${index}] is not a valid JavaScript regular expression`);
        }
    });
    return { regexes, errors };
}

/**
 * Why a piece of command text looks like it carries a secret; never the value itself.
 * Checks: Fly tokens (fm1_/fm2_/fo1_), `docker login --password/-p`, `Bearer <literal>`,
 * `NAME=<literal>` for secret-named variables (placeholders and $VAR references are fine),
 * and the configured extra patterns.
 */
export function findSecretShapes(text: string, extraPatterns: Array<{ index: number; regex: RegExp }> = []): string[] {
    const reasons = new Set<string>();
    if (containsFlyToken(text)) reasons.add("a Fly token (fm1_/fm2_ macaroon)");
    for (const segment of shellSegments(text)) {
        if (/\bdocker\s+login\b/.test(segment) && /\s(?:--password(?!-stdin)(?:=|\s+)\S|-p(?:=|\s+)?\S)/.test(segment)) {
            reasons.add("a password on the `docker login` command line (--password/-p)");
        }
    }
    if (/\bBearer\s+(?![$"'])[A-Za-z0-9._~+/=-]{8,}/.test(text)) reasons.add("a literal `Bearer` token");
    const assignment = /(?:^|[\s;&|(`"'])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|[^\s;&|)"'`]*)/g;
    for (const m of text.matchAll(assignment)) {
        const value = m[2].replace(/^(["'])(.*)\1$/s, "$2");
        if (isSecretName(m[1]) && value !== "" && !isPlaceholderValue(value) && !isVariableReference(value)) {
            reasons.add(`a literal value for the secret-named variable ${m[1]}`);
        }
    }
    for (const { index, regex } of extraPatterns) {
        regex.lastIndex = 0;
        if (regex.test(text)) reasons.add(`a match of extraSecretPatterns[${index}]`);
    }
    return [...reasons];
}

/**
 * The destructive calls in command text that bypass the worker: `fly apps destroy`, `fly destroy`,
 * `fly machine(s) destroy|remove|rm`, `fly volume(s) destroy`, any other `flyctl ... destroy`, and
 * HTTP DELETEs (curl, wget, httpie) against the Fly Machines API (/v1/apps/..., machines).
 */
export function findDestroyCalls(text: string): string[] {
    const found = new Set<string>();
    for (const segment of shellSegments(text)) {
        const fly = /(?:^|[\s/"'(`])(?:fly|flyctl)\s+(.*)$/.exec(segment);
        if (fly) {
            const rest = ` ${fly[1]} `;
            if (/\sapps?\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly apps destroy`");
            else if (/\s(?:machines?|m)\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly machine destroy`");
            else if (/\s(?:volumes?|vol)\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly volume destroy`");
            else if (/\sdestroy\s/.test(rest)) found.add("`fly ... destroy`");
        }
        const httpDelete =
            (/\bcurl\b/.test(segment) && /(?:^|\s)(?:-X\s*|--request(?:=|\s+))["']?DELETE\b/i.test(segment)) ||
            (/\bwget\b/.test(segment) && /--method(?:=|\s+)["']?DELETE\b/i.test(segment)) ||
            /(?:^|\s)(?:http|https|xh)\s+(?:-\S+\s+)*DELETE\s/.test(segment);
        if (httpDelete && /\/v1\/apps\/|machines\.dev|\/machines(?:\/|\b)/.test(segment)) {
            found.add("an HTTP DELETE against the Fly Machines API");
        }
    }
    return [...found];
}

/** The `--env NAME=value` / `-e NAME=value` pairs of `fly machine run` commands in the text. */
export function flyMachineRunEnv(text: string): Array<[string, string]> {
    const env: Array<[string, string]> = [];
    for (const segment of shellSegments(text)) {
        if (!/(?:^|[\s/"'(`])(?:fly|flyctl)\s+(?:.*\s)?(?:machines?|m)\s+run\b/.test(segment)) continue;
        for (const m of segment.matchAll(/(?:^|\s)(?:--env|-e)(?:=|\s+)["']?([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|[^\s"']*)/g)) {
            env.push([m[1], m[2].replace(/^(["'])(.*)\1$/s, "$2")]);
        }
    }
    return env;
}

/**
 * What is wrong with a machine's env (names and reasons, never values). With `warm`, the env must
 * be exactly the placeholder KILOCODE_API_KEY=warm as far as key-like names go.
 */
export function machineEnvProblems(env: Array<[string, unknown]>, warm: boolean): string[] {
    const problems: string[] = [];
    if (warm) {
        const apiKey = env.find(([name]) => name === "KILOCODE_API_KEY");
        if (!apiKey) problems.push("env has no KILOCODE_API_KEY (start-openclaw.sh exits without one)");
        else if (apiKey[1] !== UNKNOWN && apiKey[1] !== "warm") problems.push('env.KILOCODE_API_KEY is not the placeholder "warm"');
    }
    for (const [name, value] of env) {
        if (warm && name === "KILOCODE_API_KEY") continue;
        const text = typeof value === "string" ? value : undefined;
        if (isKeyLikeName(name) && (warm || text === undefined || !isPlaceholderValue(text))) {
            if (value === UNKNOWN && !warm) continue;
            problems.push(`env.${name} has a key-like name${warm ? "" : " and no placeholder value"}`);
        } else if (text !== undefined && (containsFlyToken(text) || looksLikeRandomSecret(text))) {
            problems.push(`env.${name} looks like a secret (Fly token or long random string)`);
        }
    }
    return problems;
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

const PIN_FIX =
    "pin an exact version on the Dockerfile's install line, e.g. `RUN npm install -g openclaw@2026.2.9 && openclaw --version`, " +
    "so the image, the smoke test, .dev.vars OPENCLAW_VERSION and the published version all name one release.";

/** 1. The Dockerfile pins openclaw to an exact x.y.z (not applicable in prebuilt-image mode). */
export const openclawVersionPinned: StackValidationPolicy = {
    name: "openclaw-version-pinned",
    description:
        "The Dockerfile's `npm install -g openclaw@<pin>` (WorkerImageVersion.openclawPin) is an exact x.y.z: no `latest`, no range, no missing pin. " +
        "Not applicable in prebuilt-image mode (no pin and no docker Image in the stack).",
    enforcementLevel: "mandatory",
    remediationSteps: `In the Dockerfile, ${PIN_FIX}`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const versions = ofType(args.resources, TYPES.workerImageVersion);
        if (versions.length === 0) args.notApplicable("no WorkerImageVersion in the stack");
        const builds = ofType(args.resources, TYPES.dockerImage);
        let applicable = false;
        for (const version of versions) {
            const pin = readString(version.props, "openclawPin");
            if (pin === UNKNOWN) {
                applicable = true;
                continue;
            }
            // No pin and nothing built here: the rollout publishes a prebuilt image.
            if ((pin === undefined || pin.trim() === "") && builds.length === 0) continue;
            applicable = true;
            const problem = describePinProblem(pin);
            if (problem) {
                const built = builds.length ? ` while the stack builds ${label(builds[0])}` : "";
                reportViolation(withFix(`${label(version)}: ${problem}${built}.`, PIN_FIX), version.urn);
            }
        }
        if (!applicable) args.notApplicable("prebuilt-image mode: no openclaw pin and no docker Image in the stack");
    },
};

/** One OpenClaw version as one place in the stack states it. */
export interface VersionSource {
    source: string;
    value: string;
    urn: string;
}

/** Every place the stack states the OpenClaw version (unknown and absent ones left out). */
export function collectVersionSources(resources: PolicyResource[]): VersionSource[] {
    const sources: VersionSource[] = [];
    const add = (r: PolicyResource, what: string, path: string[]) => {
        const value = readString(r.props, ...path);
        if (typeof value === "string" && value.trim() !== "") {
            sources.push({ source: `${what} (${label(r)}.${path.join(".")})`, value: value.trim(), urn: r.urn });
        }
    };
    for (const r of ofType(resources, TYPES.workerImageVersion)) add(r, "Dockerfile pin", ["openclawPin"]);
    for (const r of ofType(resources, TYPES.command)) add(r, "smoke test", ["environment", "EXPECTED_OPENCLAW_VERSION"]);
    for (const r of ofType(resources, TYPES.workerImageVersion)) {
        add(r, ".dev.vars OPENCLAW_VERSION / published version", ["openclawVersion"]);
    }
    for (const r of ofType(resources, TYPES.workerInstance)) add(r, "instance", ["openclawVersion"]);
    return sources;
}

const CONSISTENT_FIX =
    "make every one of them the Dockerfile's `openclaw@x.y.z` pin: let the program derive EXPECTED_OPENCLAW_VERSION, " +
    ".dev.vars OPENCLAW_VERSION and the instance's version from the pin (remove any version override in the stack config), then run `pulumi up` again.";

/** 2. Pin, smoke-test expectation, .dev.vars/published version and instance version agree. */
export const openclawVersionConsistent: StackValidationPolicy = {
    name: "openclaw-version-consistent",
    description:
        "The Dockerfile pin (WorkerImageVersion.openclawPin), the smoke test's EXPECTED_OPENCLAW_VERSION, WorkerImageVersion.openclawVersion " +
        "(.dev.vars OPENCLAW_VERSION and the published version) and WorkerInstance.openclawVersion are one version.",
    enforcementLevel: "mandatory",
    remediationSteps: `Versions disagree: ${CONSISTENT_FIX}`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const sources = collectVersionSources(args.resources);
        if (sources.length === 0) args.notApplicable("no resource in the stack states an OpenClaw version");
        const distinct = new Set(sources.map((s) => s.value));
        if (distinct.size <= 1) return;
        const listing = sources.map((s) => `${s.source} = ${s.value}`).join("; ");
        const versions = ofType(args.resources, TYPES.workerImageVersion);
        reportViolation(
            withFix(`OpenClaw versions disagree: ${listing}.`, CONSISTENT_FIX),
            versions.length === 1 ? versions[0].urn : undefined,
        );
    },
};

const PLATFORM_FIX =
    'set `build.platform: "linux/amd64"` on the docker Image (KiloclawImage): Fly machines run amd64, and an image built for the host\'s ' +
    "architecture (arm64 on Apple Silicon) does not start there.";

/** 3. The image is built for linux/amd64. */
export const imagePlatformAmd64: ResourceValidationPolicy = {
    name: "image-platform-amd64",
    description: "The docker Image is built with build.platform `linux/amd64`, the platform Fly machines run.",
    enforcementLevel: "mandatory",
    remediationSteps: `Set the platform: ${PLATFORM_FIX}`,
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        if (args.type !== TYPES.dockerImage) args.notApplicable(`only applies to ${TYPES.dockerImage}`);
        // Inputs carry build.platform; the provider's outputs carry it at the top level.
        let platform = readString(args.props, "build", "platform");
        if (platform === undefined) platform = readString(args.props, "platform");
        if (platform === UNKNOWN || platform === "linux/amd64") return;
        const what = platform ? `builds for "${platform}"` : "sets no build.platform (docker then builds for the host's architecture)";
        reportViolation(withFix(`${label(args)} ${what}.`, PLATFORM_FIX));
    },
};

const REGISTRY_FIX_TAIL =
    "(push-dev.sh has this trap: it pushes to registry.fly.io/$FLY_APP_NAME while the worker pulls from " +
    'FLY_REGISTRY_APP ?? FLY_APP_NAME ?? "kiloclaw-machines".)';

function registryFix(workerApp: string, pushApp?: string): string {
    const alt = pushApp ? `, or set FLY_REGISTRY_APP=${pushApp} in .dev.vars and restart the worker` : "";
    return (
        `push to and warm the app the worker pulls from: set the registry app to "${workerApp}" ` +
        `(remove any override so it follows .dev.vars)${alt}. ${REGISTRY_FIX_TAIL}`
    );
}

/** 4. The image is pushed to, and warmed from, the registry app the worker pulls from. */
export const registryAppMatchesWorker: StackValidationPolicy = {
    name: "registry-app-matches-worker",
    description:
        "WorkerImageVersion.registryApp (where the image is pushed) equals workerRegistryApp (where the worker pulls from), and the RegistryPush " +
        "TARGET_IMAGE and the WarmMachine image start with `<registryServer>/<workerRegistryApp>:`.",
    enforcementLevel: "mandatory",
    remediationSteps:
        "Push to the Fly app whose registry the worker pulls from (.dev.vars FLY_REGISTRY_APP ?? FLY_APP_NAME ?? kiloclaw-machines): " +
        "set the stack's registry app to it, or set FLY_REGISTRY_APP in .dev.vars to the app you push to and restart the worker. " +
        REGISTRY_FIX_TAIL,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const versions = ofType(args.resources, TYPES.workerImageVersion);
        if (versions.length === 0) args.notApplicable("no WorkerImageVersion in the stack");
        let prefix: string | undefined;
        let workerApp: string | undefined;
        for (const version of versions) {
            const pushApp = readString(version.props, "registryApp");
            const pullApp = readString(version.props, "workerRegistryApp");
            const server = readString(version.props, "registryServer");
            if (typeof pullApp === "string" && pullApp !== "") {
                workerApp ??= pullApp;
                if (server !== UNKNOWN) prefix ??= expectedImagePrefix(server, pullApp);
            }
            if (typeof pushApp === "string" && typeof pullApp === "string" && pushApp !== pullApp) {
                reportViolation(
                    withFix(
                        `${label(version)} pushes to registry app "${pushApp}" but the worker pulls from "${pullApp}", ` +
                            "so the worker would never run the pushed image.",
                        registryFix(pullApp, pushApp),
                    ),
                    version.urn,
                );
            }
        }
        if (prefix === undefined || workerApp === undefined) return;
        const expected = prefix;
        const pullApp = workerApp;
        const checkImage = (r: PolicyResource, path: string[]) => {
            const image = readString(r.props, ...path);
            if (typeof image !== "string" || image.startsWith(expected)) return;
            reportViolation(
                withFix(
                    `${label(r)} ${path.join(".")} is "${image}", which does not start with "${expected}" (the registry app the worker pulls from).`,
                    registryFix(pullApp),
                ),
                r.urn,
            );
        };
        for (const command of ofType(args.resources, TYPES.command)) checkImage(command, ["environment", "TARGET_IMAGE"]);
        for (const warm of ofType(args.resources, TYPES.warmMachine)) checkImage(warm, ["image"]);
    },
};

export const ENV_LOCAL_FORBIDDEN_KEYS: readonly string[] = ["NEXTAUTH_SECRET", "OPENROUTER_API_KEY"];

/** 5. .env.development.local does not override NEXTAUTH_SECRET or OPENROUTER_API_KEY. */
export const noSecretOverridesInEnvLocal: ResourceValidationPolicy = {
    name: "no-secret-overrides-in-env-local",
    description:
        "WorkerImageVersion.envLocalKeys (the names set in .env.development.local) include neither NEXTAUTH_SECRET nor OPENROUTER_API_KEY: " +
        "those must come from the Vercel-pulled .env.local.",
    enforcementLevel: "mandatory",
    remediationSteps:
        "Delete the NEXTAUTH_SECRET and OPENROUTER_API_KEY lines from .env.development.local and restart the Cloud dev server: they must come from " +
        "the Vercel-pulled .env.local, or the JWTs and API keys Fly machines use to call back through the tunnel do not work.",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        if (args.type !== TYPES.workerImageVersion) args.notApplicable(`only applies to ${TYPES.workerImageVersion}`);
        const keys = readArray(args.props, "envLocalKeys");
        if (keys === UNKNOWN || keys === undefined) return;
        const overridden = ENV_LOCAL_FORBIDDEN_KEYS.filter((k) => keys.some((key) => typeof key === "string" && key.trim() === k));
        if (overridden.length === 0) return;
        reportViolation(
            withFix(
                `.env.development.local overrides ${overridden.join(" and ")} (${label(args)}.envLocalKeys).`,
                `delete the ${overridden.join(" and ")} line${overridden.length > 1 ? "s" : ""} from .env.development.local and restart the Cloud dev server; ` +
                    "they must come from the Vercel-pulled .env.local so JWTs and API keys work when Fly machines call back through the tunnel.",
            ),
        );
    },
};

const WARM_FIX =
    'give the machine env `{KILOCODE_API_KEY: "warm"}` and nothing secret: a warm machine only pulls the image onto a Fly host and needs no ' +
    "credentials, and machine env is stored unencrypted in the machine config.";

/** 6. Machines the rollout creates carry only the placeholder key. */
export const warmMachinePlaceholderKey: ResourceValidationPolicy = {
    name: "warm-machine-placeholder-key",
    description:
        "The WarmMachine env has KILOCODE_API_KEY=warm as its only key-like variable, and no machine-creating resource (WarmMachine, other kiloclaw " +
        "resources with image+env, `fly machine run --env` commands) puts a secret-looking value (token/secret/key names, fm1_/fm2_ tokens, long " +
        "random strings) in machine env.",
    enforcementLevel: "mandatory",
    remediationSteps: `Use the placeholder: ${WARM_FIX}`,
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        let problems: string[];
        if (args.type === TYPES.warmMachine) {
            const env = readEntries(args.props, "env");
            if (env === UNKNOWN) return;
            problems = machineEnvProblems(env, true);
        } else if (args.type.startsWith(KILOCLAW_DYNAMIC_PREFIX) && readPath(args.props, "image") !== undefined && readPath(args.props, "env") !== undefined) {
            const env = readEntries(args.props, "env");
            if (env === UNKNOWN) return;
            problems = machineEnvProblems(env, false);
        } else if (args.type === TYPES.command) {
            problems = [];
            for (const field of ["create", "update", "delete"]) {
                const text = readString(args.props, field);
                if (typeof text !== "string") continue;
                problems.push(...machineEnvProblems(flyMachineRunEnv(text), false).map((p) => `\`fly machine run\` in ${field}: ${p}`));
            }
        } else {
            return args.notApplicable("only applies to resources that create Fly machines");
        }
        if (problems.length === 0) return;
        reportViolation(withFix(`${label(args)} machine env: ${problems.join("; ")}.`, WARM_FIX));
    },
};

/** Config of no-secrets-in-commands. */
export interface NoSecretsInCommandsConfig {
    /** More secret shapes, as JavaScript RegExp sources (`"abc_[0-9a-f]{32}"`, or `"/abc_[0-9a-f]+/i"` with flags). */
    extraSecretPatterns?: string[];
}

const COMMAND_SECRET_FIX =
    "remove the secret from the command: pass it on the command's stdin (as RegistryPush does with the Fly token and " +
    "`docker login --password-stdin`) or keep it in a dynamic resource's secret input; create/update/delete/environment are stored " +
    "in the state in plain text and shown in diffs. Placeholders (test-key, test-token, warm) are fine.";

/** The secret values the stack carries, by value, with the inputs they come from. */
export function collectStackSecrets(resources: PolicyResource[]): Map<string, string[]> {
    const secrets = new Map<string, string[]>();
    for (const r of resources) {
        if (!r.type.startsWith(KILOCLAW_DYNAMIC_PREFIX)) continue;
        for (const name of SECRET_INPUT_NAMES) {
            const value = readString(r.props, name);
            // Too short or a placeholder: matching it would flag harmless text.
            if (typeof value !== "string" || value.trim().length < 6 || isPlaceholderValue(value)) continue;
            secrets.set(value, [...(secrets.get(value) ?? []), `${label(r)}.${name}`]);
        }
    }
    return secrets;
}

/** 7. No secret in any command's create/update/delete/environment (stdin is the channel for secrets). */
export const noSecretsInCommands: StackValidationPolicy = {
    name: "no-secrets-in-commands",
    description:
        "No command:local:Command create/update/delete/environment contains (a) a secret the stack carries (the values of internalApiKey, " +
        "flyApiToken, kilocodeApiKey, gatewayToken on the kiloclaw dynamic resources) or (b) a secret-shaped pattern: fm1_/fm2_ Fly tokens, " +
        "`docker login --password/-p <x>`, `Bearer <literal>`, a literal value for a *_SECRET/*_TOKEN/*_API_KEY/*PASSWORD variable " +
        "(placeholders test-key/test-token/warm are fine), or any config extraSecretPatterns. stdin is the deliberate channel for the registry " +
        "token and is not checked. Messages name the resource and field, never the value.",
    enforcementLevel: "mandatory",
    remediationSteps: `Move the secret out: ${COMMAND_SECRET_FIX}`,
    configSchema: {
        properties: {
            extraSecretPatterns: {
                type: "array",
                items: { type: "string" },
                default: [],
                description: "More secret shapes as JavaScript regular expressions (`source` or `/source/flags`).",
            },
        },
    },
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const commands = ofType(args.resources, TYPES.command);
        if (commands.length === 0) args.notApplicable("no command:local:Command in the stack");
        const config = args.getConfig<NoSecretsInCommandsConfig>();
        const { regexes, errors } = compileExtraPatterns(config.extraSecretPatterns);
        for (const error of errors) {
            reportViolation(`Policy config: ${error}. Fix: correct or remove that entry in the policy pack config (--policy-pack-config).`);
        }
        const secrets = collectStackSecrets(args.resources);
        for (const command of commands) {
            const fields: Array<[string, string]> = [];
            for (const field of ["create", "update", "delete"]) {
                const text = readString(command.props, field);
                if (typeof text === "string") fields.push([field, text]);
            }
            const environment = readEntries(command.props, "environment");
            const secretNamed = new Set<string>();
            for (const [name, value] of environment === UNKNOWN ? [] : environment) {
                if (typeof value !== "string") continue;
                fields.push([`environment.${name}`, value]);
                if (isSecretName(name) && value !== "" && !isPlaceholderValue(value) && !isVariableReference(value)) {
                    secretNamed.add(`environment.${name}`);
                }
            }
            for (const [field, text] of fields) {
                const reasons: string[] = [];
                for (const [value, sources] of secrets) {
                    if (text.includes(value)) reasons.push(`the value of ${sources.join(" / ")}`);
                }
                if (secretNamed.has(field)) reasons.push("a literal value for a secret-named variable");
                reasons.push(...findSecretShapes(text, regexes));
                if (reasons.length === 0) continue;
                reportViolation(withFix(`${label(command)} ${field} contains ${reasons.join("; ")}.`, COMMAND_SECRET_FIX), command.urn);
            }
        }
    },
};

const DESTROY_FIX =
    "remove it: instances are removed by the WorkerInstance resource (on `pulumi destroy` or replacement) through the worker's " +
    "POST /api/platform/destroy, which keeps the worker's Durable Object state consistent; the warm machine is removed by the WarmMachine resource.";

/** 8. Nothing destroys Fly apps or machines behind the worker's back. */
export const destroyThroughWorker: ResourceValidationPolicy = {
    name: "destroy-through-worker",
    description:
        "No command runs `fly apps destroy`, `fly machine(s) destroy|remove|rm`, another `flyctl ... destroy`, or an HTTP DELETE against the " +
        "Fly Machines API (/v1/apps/dev-..., machines): that leaves the worker's Durable Object state behind.",
    enforcementLevel: "mandatory",
    remediationSteps: `Remove the command: ${DESTROY_FIX}`,
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        if (args.type !== TYPES.command) args.notApplicable(`only applies to ${TYPES.command}`);
        const found: string[] = [];
        for (const field of ["create", "update", "delete"]) {
            const text = readString(args.props, field);
            if (typeof text !== "string") continue;
            for (const call of findDestroyCalls(text)) found.push(`${call} in ${field}`);
        }
        if (found.length === 0) return;
        reportViolation(withFix(`${label(args)} bypasses the worker: ${found.join("; ")}.`, DESTROY_FIX));
    },
};

/** The .dev.vars settings of every WorkerImageVersion, read safely. */
function workerSetting(version: PolicyResource, key: string): string | Unknown | undefined {
    return readString(version.props, "workerSettings", key);
}

/** 9. DEV_MODE=true only with the user the worker substitutes. */
export const devModeMatchesUser: StackValidationPolicy = {
    name: "dev-mode-matches-user",
    description:
        `When .dev.vars DEV_MODE is "true" (WorkerImageVersion.workerSettings.DEV_MODE), the worker treats every request as ${DEV_MODE_USER_ID}, ` +
        "so WorkerInstance.userId must be that user.",
    enforcementLevel: "advisory",
    remediationSteps: `Set the instance's userId to "${DEV_MODE_USER_ID}", or set DEV_MODE=false in .dev.vars and restart the worker.`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const devMode = ofType(args.resources, TYPES.workerImageVersion).some((v) => {
            const value = workerSetting(v, "DEV_MODE");
            return typeof value === "string" && value.trim().toLowerCase() === "true";
        });
        if (!devMode) args.notApplicable("DEV_MODE is not true");
        for (const instance of ofType(args.resources, TYPES.workerInstance)) {
            const userId = readString(instance.props, "userId");
            if (typeof userId !== "string" || userId === DEV_MODE_USER_ID) continue;
            reportViolation(
                withFix(
                    `DEV_MODE=true makes the worker treat every request as ${DEV_MODE_USER_ID}, but ${label(instance)} is for userId "${userId}": ` +
                        "its provision, status and destroy would act on another instance.",
                    `set the instance's userId to "${DEV_MODE_USER_ID}", or set DEV_MODE=false in .dev.vars and restart the worker.`,
                ),
                instance.urn,
            );
        }
    },
};

/** 10. The tunnel base URL has the shape the machines need. */
export const tunnelBaseUrl: ResourceValidationPolicy = {
    name: "tunnel-base-url",
    description:
        "When .dev.vars KILOCODE_API_BASE_URL is set (WorkerImageVersion.workerSettings), it is `https://<host>/api/openrouter/`, trailing slash included.",
    enforcementLevel: "advisory",
    remediationSteps:
        "Set KILOCODE_API_BASE_URL=https://<your-tunnel-host>/api/openrouter/ in .dev.vars (https, path /api/openrouter/ with the trailing slash), " +
        "restart the worker and re-provision.",
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        if (args.type !== TYPES.workerImageVersion) args.notApplicable(`only applies to ${TYPES.workerImageVersion}`);
        const url = readString(args.props, "workerSettings", "KILOCODE_API_BASE_URL");
        if (typeof url !== "string" || url.trim() === "" || isTunnelBaseUrl(url.trim())) return;
        reportViolation(
            withFix(
                `KILOCODE_API_BASE_URL "${url}" is not of the form https://<host>/api/openrouter/ (trailing slash included), so machines cannot reach models through the tunnel.`,
                `set KILOCODE_API_BASE_URL=${suggestTunnelBaseUrl(url)} in .dev.vars, restart the worker and re-provision.`,
            ),
        );
    },
};

/** 11. The allowed origins include the instance's Fly app. */
export const allowedOriginsIncludeApp: StackValidationPolicy = {
    name: "allowed-origins-include-app",
    description:
        "When .dev.vars OPENCLAW_ALLOWED_ORIGINS is set (WorkerImageVersion.workerSettings), its comma-separated list includes " +
        "`https://<flyAppName>.fly.dev` for each WorkerInstance (expectedFlyAppName, or the flyAppName output).",
    enforcementLevel: "advisory",
    remediationSteps:
        "Add https://<flyAppName>.fly.dev to OPENCLAW_ALLOWED_ORIGINS in .dev.vars (comma-separated) and restart the worker.",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const settings = ofType(args.resources, TYPES.workerImageVersion)
            .map((v) => workerSetting(v, "OPENCLAW_ALLOWED_ORIGINS"))
            .filter((value): value is string => typeof value === "string" && value.trim() !== "");
        if (settings.length === 0) args.notApplicable("OPENCLAW_ALLOWED_ORIGINS is not set");
        const current = settings[0];
        const origins = parseAllowedOrigins(current);
        if (origins.includes("*")) return;
        for (const instance of ofType(args.resources, TYPES.workerInstance)) {
            let app = readString(instance.props, "expectedFlyAppName");
            if (app === undefined || app === "") app = readString(instance.props, "flyAppName");
            if (typeof app !== "string" || app === "") continue;
            const origin = `https://${app}.fly.dev`;
            if (origins.some((o) => sameOrigin(o, origin))) continue;
            reportViolation(
                withFix(
                    `OPENCLAW_ALLOWED_ORIGINS does not include ${origin}, the Fly app of ${label(instance)}: WebSocket connections to the gateway would be refused ("Origin not allowed").`,
                    `set OPENCLAW_ALLOWED_ORIGINS=${[...origins, origin].join(",")} in .dev.vars and restart the worker.`,
                ),
                instance.urn,
            );
        }
    },
};

/** Every policy of the pack, in the order the README lists them. */
export const policies: Policies = [
    openclawVersionPinned,
    openclawVersionConsistent,
    imagePlatformAmd64,
    registryAppMatchesWorker,
    noSecretOverridesInEnvLocal,
    warmMachinePlaceholderKey,
    noSecretsInCommands,
    destroyThroughWorker,
    devModeMatchesUser,
    tunnelBaseUrl,
    allowedOriginsIncludeApp,
];

/** The pack's default level; every policy sets its own, so this only matters for new ones. */
export const PACK_ENFORCEMENT_LEVEL: EnforcementLevel = "advisory";
