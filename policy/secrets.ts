// Secrets stay out of what Pulumi stores in plain text: command text and
// environment, and the env of machines the rollout creates.
import {
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
} from "@pulumi/policy";
import { PropsByType, RESOURCE_TYPES } from "../lib/contract";
import {
    COMMAND_TEXT_FIELDS,
    isPlaceholderValue,
    isVariableReference,
    KILOCLAW_DYNAMIC_PREFIX,
    label,
    shellSegments,
    TYPES,
    withFix,
} from "./helpers";
import { ContractResource, ofType, propsOf, readEntries, readPath, readString, UNKNOWN } from "./props";

type DynamicType = typeof RESOURCE_TYPES.warmMachine | typeof RESOURCE_TYPES.workerImageVersion | typeof RESOURCE_TYPES.workerInstance;

/** A property name of any kiloclaw dynamic resource. */
type DynamicPropName = { [T in DynamicType]: keyof PropsByType[T] }[DynamicType];

/**
 * Props of the kiloclaw dynamic resources that hold secrets (policy no-secrets-in-commands). Worker and Fly
 * credentials are read from the stack config at call time and never sit on a resource.
 */
export const SECRET_INPUT_NAMES = ["kilocodeApiKey", "gatewayToken"] as const satisfies readonly DynamicPropName[];

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
    return v.length >= 32 && /^[A-Za-z0-9+/=_.-]+$/.test(v) && /[0-9]/.test(v) && /[A-Za-z]/.test(v) && shannonEntropy(v) >= 3.5;
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
        if (!apiKey) problems.push("env has no KILOCODE_API_KEY (the image's entrypoint exits without one)");
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

const WARM_FIX =
    'give the machine env `{KILOCODE_API_KEY: "warm"}` and nothing secret: a warm machine only pulls the image onto a Fly host and needs no ' +
    "credentials, and machine env is stored unencrypted in the machine config.";

/** The env problems of a resource that creates Fly machines, or undefined when it creates none. */
function machineProblems(args: ResourceValidationArgs): string[] | typeof UNKNOWN | undefined {
    if (args.type === TYPES.warmMachine) {
        const env = propsOf(args, TYPES.warmMachine).entries("env");
        return env === UNKNOWN ? UNKNOWN : machineEnvProblems(env, true);
    }
    // Any other kiloclaw resource with an image and env creates a machine too.
    if (args.type.startsWith(KILOCLAW_DYNAMIC_PREFIX) && readPath(args.props, "image") !== undefined && readPath(args.props, "env") !== undefined) {
        const env = readEntries(args.props, "env");
        return env === UNKNOWN ? UNKNOWN : machineEnvProblems(env, false);
    }
    if (args.type === TYPES.command) {
        const command = propsOf(args, TYPES.command);
        const problems: string[] = [];
        for (const field of COMMAND_TEXT_FIELDS) {
            const text = command.string(field);
            if (typeof text !== "string") continue;
            problems.push(...machineEnvProblems(flyMachineRunEnv(text), false).map((p) => `\`fly machine run\` in ${field}: ${p}`));
        }
        return problems;
    }
    return undefined;
}

/** 6. Machines the rollout creates carry only the placeholder key. */
export const warmMachinePlaceholderKey: ResourceValidationPolicy = {
    name: "warm-machine-placeholder-key",
    description:
        "The WarmMachine env has KILOCODE_API_KEY=warm as its only key-like variable, and no machine-creating resource " +
        "(WarmMachine, other kiloclaw " +
        "resources with image+env, `fly machine run --env` commands) puts a secret-looking value (token/secret/key names, fm1_/fm2_ tokens, long " +
        "random strings) in machine env.",
    enforcementLevel: "mandatory",
    remediationSteps: `Use the placeholder: ${WARM_FIX}`,
    validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
        const problems = machineProblems(args);
        if (problems === undefined) return args.notApplicable("only applies to resources that create Fly machines");
        if (problems === UNKNOWN || problems.length === 0) return;
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

/** A command's text fields and environment values, with which of them set a secret-named variable to a literal. */
function commandTexts(command: ContractResource<typeof TYPES.command>): { fields: Array<[string, string]>; secretNamed: Set<string> } {
    const fields: Array<[string, string]> = [];
    for (const field of COMMAND_TEXT_FIELDS) {
        const text = command.props.string(field);
        if (typeof text === "string") fields.push([field, text]);
    }
    const environment = command.props.entries("environment");
    const secretNamed = new Set<string>();
    for (const [name, value] of environment === UNKNOWN ? [] : environment) {
        if (typeof value !== "string") continue;
        fields.push([`environment.${name}`, value]);
        if (isSecretName(name) && value !== "" && !isPlaceholderValue(value) && !isVariableReference(value)) {
            secretNamed.add(`environment.${name}`);
        }
    }
    return { fields, secretNamed };
}

/** 7. No secret in any command's create/update/delete/environment (stdin is the channel for secrets). */
export const noSecretsInCommands: StackValidationPolicy = {
    name: "no-secrets-in-commands",
    description:
        "No command:local:Command create/update/delete/environment contains (a) a secret the stack carries " +
        `(the values of ${SECRET_INPUT_NAMES.join(", ")} ` +
        "on the kiloclaw dynamic resources) or (b) a secret-shaped pattern: fm1_/fm2_ Fly tokens, " +
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
            const { fields, secretNamed } = commandTexts(command);
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
