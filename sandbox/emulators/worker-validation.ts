// Body validation for the worker emulator. The real worker uses zod and answers
// `{"error":"Invalid request","details": error.flatten().fieldErrors}`; we produce the
// same shape (field → list of messages) without the dependency, in the wording of the
// zod major the worker generation ships (4 in every generation measured; 3 is kept for older snapshots).

export type FieldErrors = Record<string, string[]>;

export interface MachineSize {
    cpus: number;
    memory_mb: number;
    cpu_kind?: "shared" | "performance";
}

export interface ProvisionBody {
    userId: string;
    kilocodeApiKey?: string | null;
    kilocodeApiKeyExpiresAt?: string | null;
    kilocodeDefaultModel?: string | null;
    envVars?: Record<string, string>;
    encryptedSecrets?: Record<string, unknown>;
    channels?: Record<string, unknown>;
    machineSize?: MachineSize;
    region?: string;
    /** Newest worker: run this tag instead of "latest". */
    pinnedImageTag?: string | null;
}

export interface PublishBody {
    openclawVersion: string;
    variant: string;
    imageTag: string;
    imageDigest: string | null;
    setLatest: boolean;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; details: FieldErrors };

const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED_PREFIXES = ["KILOCLAW_ENC_", "KILOCLAW_ENV_"];

/** zod's message wording: 3 (early worker) or 4 (current and newest). */
export type ZodWording = 3 | 4;

const MESSAGES = {
    3: {
        required: () => "Required",
        type: (expected: string, got: string) => `Expected ${expected}, received ${got}`,
        minString: () => "String must contain at least 1 character(s)",
        integer: () => "Expected integer, received float",
        min: (n: number) => `Number must be greater than or equal to ${n}`,
        max: (n: number) => `Number must be less than or equal to ${n}`,
        option: (options: string[], got: string) => `Invalid enum value. Expected ${options.map((o) => `'${o}'`).join(" | ")}, received '${got}'`,
    },
    4: {
        required: () => "Invalid input: expected string, received undefined",
        type: (expected: string, got: string) => `Invalid input: expected ${expected}, received ${got}`,
        minString: () => "Too small: expected string to have >=1 characters",
        integer: () => "Invalid input: expected int, received number",
        min: (n: number) => `Too small: expected number to be >=${n}`,
        max: (n: number) => `Too big: expected number to be <=${n}`,
        option: (options: string[]) => `Invalid option: expected one of ${options.map((o) => `"${o}"`).join("|")}`,
    },
};

class Collector {
    readonly errors: FieldErrors = {};
    constructor(readonly say: (typeof MESSAGES)[ZodWording]) {}
    add(field: string, message: string): void {
        (this.errors[field] ??= []).push(message);
    }
    get ok(): boolean {
        return Object.keys(this.errors).length === 0;
    }
}

function isObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function requireNonEmptyString(c: Collector, body: Record<string, unknown>, field: string): void {
    const v = body[field];
    if (v === undefined) c.add(field, c.say.required());
    else if (typeof v !== "string") c.add(field, c.say.type("string", typeName(v)));
    else if (v.length === 0) c.add(field, c.say.minString());
}

function optionalNullableString(c: Collector, body: Record<string, unknown>, field: string): void {
    const v = body[field];
    if (v !== undefined && v !== null && typeof v !== "string") c.add(field, c.say.type("string", typeName(v)));
}

function numberInRange(c: Collector, field: string, v: unknown, min: number, max: number): void {
    if (typeof v !== "number" || !Number.isFinite(v)) c.add(field, c.say.type("number", typeName(v)));
    else if (!Number.isInteger(v)) c.add(field, c.say.integer());
    else if (v < min) c.add(field, c.say.min(min));
    else if (v > max) c.add(field, c.say.max(max));
}

function typeName(v: unknown): string {
    if (v === undefined) return "undefined";
    if (v === null) return "null";
    if (Array.isArray(v)) return "array";
    return typeof v;
}

/** A body that is not an object fails with no field errors, as zod's flatten() does. */
function notAnObject<T>(body: unknown): Validated<T> | undefined {
    return isObject(body) ? undefined : { ok: false, details: {} };
}

export interface StartBody {
    userId: string;
    /** Newest worker: start even within the metadata-recovery cooldown. */
    skipCooldown?: boolean;
}

export function validateUserIdBody(body: unknown, zod: ZodWording): Validated<StartBody> {
    const bad = notAnObject<StartBody>(body);
    if (bad) return bad;
    const b = body as Record<string, unknown>;
    const c = new Collector(MESSAGES[zod]);
    requireNonEmptyString(c, b, "userId");
    if (b.skipCooldown !== undefined && typeof b.skipCooldown !== "boolean") c.add("skipCooldown", c.say.type("boolean", typeName(b.skipCooldown)));
    return c.ok ? { ok: true, value: { userId: b.userId as string, skipCooldown: b.skipCooldown === true } } : { ok: false, details: c.errors };
}

/** `knowsPinnedImageTag`: the generation's schema has the field; others ignore (strip) it, as zod does unknown keys. */
export function validateProvisionBody(body: unknown, zod: ZodWording, knowsPinnedImageTag = true): Validated<ProvisionBody> {
    const bad = notAnObject<ProvisionBody>(body);
    if (bad) return bad;
    const b = body as Record<string, unknown>;
    const c = new Collector(MESSAGES[zod]);
    requireNonEmptyString(c, b, "userId");
    optionalNullableString(c, b, "kilocodeApiKey");
    optionalNullableString(c, b, "kilocodeApiKeyExpiresAt");
    optionalNullableString(c, b, "kilocodeDefaultModel");
    optionalNullableString(c, b, "region");
    if (knowsPinnedImageTag) optionalNullableString(c, b, "pinnedImageTag");

    if (b.envVars !== undefined) {
        if (!isObject(b.envVars)) c.add("envVars", c.say.type("object", typeName(b.envVars)));
        else
            for (const [k, v] of Object.entries(b.envVars)) {
                if (typeof v !== "string") c.add("envVars", c.say.type("string", typeName(v)));
                if (!SHELL_NAME.test(k)) c.add("envVars", `Invalid environment variable name: ${k}`);
                if (RESERVED_PREFIXES.some((p) => k.startsWith(p))) c.add("envVars", `Reserved environment variable prefix: ${k}`);
            }
    }
    if (b.encryptedSecrets !== undefined) {
        if (!isObject(b.encryptedSecrets)) c.add("encryptedSecrets", c.say.type("object", typeName(b.encryptedSecrets)));
        else
            for (const [k, v] of Object.entries(b.encryptedSecrets)) {
                if (!isObject(v)) c.add("encryptedSecrets", c.say.type("object", typeName(v)));
                if (!SHELL_NAME.test(k)) c.add("encryptedSecrets", `Invalid environment variable name: ${k}`);
            }
    }
    if (b.channels !== undefined && !isObject(b.channels)) c.add("channels", c.say.type("object", typeName(b.channels)));

    if (b.machineSize !== undefined) {
        const m = b.machineSize;
        if (!isObject(m)) c.add("machineSize", c.say.type("object", typeName(m)));
        else {
            numberInRange(c, "machineSize", m.cpus, 1, 8);
            numberInRange(c, "machineSize", m.memory_mb, 256, 16384);
            if (m.cpu_kind !== undefined && m.cpu_kind !== "shared" && m.cpu_kind !== "performance")
                c.add("machineSize", c.say.option(["shared", "performance"], String(m.cpu_kind)));
        }
    }
    if (!c.ok) return { ok: false, details: c.errors };
    const value = knowsPinnedImageTag ? b : Object.fromEntries(Object.entries(b).filter(([k]) => k !== "pinnedImageTag"));
    return { ok: true, value: value as unknown as ProvisionBody };
}

/**
 * The publish route's checks, in the worker's order: the body's fields ("Invalid request", details = field errors),
 * then `"latest"`, then the entry's schema (a variant other than "default": "Invalid version entry", details = flatten()).
 */
export type PublishCheck = { ok: true; value: PublishBody } | { ok: false; error: string; details?: unknown };

export function validatePublishBody(body: unknown, zod: ZodWording): PublishCheck {
    if (!isObject(body)) return { ok: false, error: "Invalid request", details: {} };
    const b = body;
    const c = new Collector(MESSAGES[zod]);
    requireNonEmptyString(c, b, "openclawVersion");
    if (b.variant !== undefined) requireNonEmptyString(c, b, "variant");
    requireNonEmptyString(c, b, "imageTag");
    optionalNullableString(c, b, "imageDigest");
    if (b.setLatest !== undefined && typeof b.setLatest !== "boolean") c.add("setLatest", c.say.type("boolean", typeName(b.setLatest)));
    if (!c.ok) return { ok: false, error: "Invalid request", details: c.errors };
    if (b.openclawVersion === "latest") return { ok: false, error: '"latest" is reserved and cannot be used as a version' };
    if (b.variant !== undefined && b.variant !== "default") {
        const entry = new Collector(MESSAGES[zod]);
        entry.add("variant", entry.say.option(["default"], String(b.variant)));
        return { ok: false, error: "Invalid version entry", details: { formErrors: [], fieldErrors: entry.errors } };
    }
    return {
        ok: true,
        value: {
            openclawVersion: b.openclawVersion as string,
            variant: "default",
            imageTag: b.imageTag as string,
            imageDigest: (b.imageDigest as string | null | undefined) ?? null,
            setLatest: b.setLatest !== false,
        },
    };
}
