// Body validation for the worker emulator. The real worker uses zod and answers
// `{"error":"Invalid request","details": error.flatten().fieldErrors}`; we produce the
// same shape (field → list of messages) without the dependency.

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

class Collector {
    readonly errors: FieldErrors = {};
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
    if (v === undefined) c.add(field, "Required");
    else if (typeof v !== "string") c.add(field, `Expected string, received ${typeName(v)}`);
    else if (v.length === 0) c.add(field, "String must contain at least 1 character(s)");
}

function optionalNullableString(c: Collector, body: Record<string, unknown>, field: string): void {
    const v = body[field];
    if (v !== undefined && v !== null && typeof v !== "string") c.add(field, `Expected string, received ${typeName(v)}`);
}

function numberInRange(c: Collector, field: string, v: unknown, min: number, max: number): void {
    if (typeof v !== "number" || !Number.isFinite(v)) c.add(field, v === undefined ? "Required" : `Expected number, received ${typeName(v)}`);
    else if (!Number.isInteger(v)) c.add(field, "Expected integer, received float");
    else if (v < min) c.add(field, `Number must be greater than or equal to ${min}`);
    else if (v > max) c.add(field, `Number must be less than or equal to ${max}`);
}

function typeName(v: unknown): string {
    if (v === null) return "null";
    if (Array.isArray(v)) return "array";
    return typeof v;
}

/** A body that is not an object fails with no field errors, as zod's flatten() does. */
function notAnObject<T>(body: unknown): Validated<T> | undefined {
    return isObject(body) ? undefined : { ok: false, details: {} };
}

export function validateUserIdBody(body: unknown): Validated<{ userId: string }> {
    const bad = notAnObject<{ userId: string }>(body);
    if (bad) return bad;
    const b = body as Record<string, unknown>;
    const c = new Collector();
    requireNonEmptyString(c, b, "userId");
    return c.ok ? { ok: true, value: { userId: b.userId as string } } : { ok: false, details: c.errors };
}

export function validateProvisionBody(body: unknown): Validated<ProvisionBody> {
    const bad = notAnObject<ProvisionBody>(body);
    if (bad) return bad;
    const b = body as Record<string, unknown>;
    const c = new Collector();
    requireNonEmptyString(c, b, "userId");
    optionalNullableString(c, b, "kilocodeApiKey");
    optionalNullableString(c, b, "kilocodeApiKeyExpiresAt");
    optionalNullableString(c, b, "kilocodeDefaultModel");
    if (b.region !== undefined && typeof b.region !== "string") c.add("region", `Expected string, received ${typeName(b.region)}`);

    if (b.envVars !== undefined) {
        if (!isObject(b.envVars)) c.add("envVars", `Expected object, received ${typeName(b.envVars)}`);
        else
            for (const [k, v] of Object.entries(b.envVars)) {
                if (typeof v !== "string") c.add("envVars", `Expected string, received ${typeName(v)}`);
                if (!SHELL_NAME.test(k)) c.add("envVars", `Invalid environment variable name: ${k}`);
                if (RESERVED_PREFIXES.some((p) => k.startsWith(p))) c.add("envVars", `Reserved environment variable prefix: ${k}`);
            }
    }
    if (b.encryptedSecrets !== undefined) {
        if (!isObject(b.encryptedSecrets)) c.add("encryptedSecrets", `Expected object, received ${typeName(b.encryptedSecrets)}`);
        else
            for (const [k, v] of Object.entries(b.encryptedSecrets)) {
                if (!isObject(v)) c.add("encryptedSecrets", `Expected object, received ${typeName(v)}`);
                if (!SHELL_NAME.test(k)) c.add("encryptedSecrets", `Invalid environment variable name: ${k}`);
            }
    }
    if (b.channels !== undefined && !isObject(b.channels)) c.add("channels", `Expected object, received ${typeName(b.channels)}`);

    if (b.machineSize !== undefined) {
        const m = b.machineSize;
        if (!isObject(m)) c.add("machineSize", `Expected object, received ${typeName(m)}`);
        else {
            numberInRange(c, "machineSize", m.cpus, 1, 8);
            numberInRange(c, "machineSize", m.memory_mb, 256, 16384);
            if (m.cpu_kind !== undefined && m.cpu_kind !== "shared" && m.cpu_kind !== "performance")
                c.add("machineSize", `Invalid enum value. Expected 'shared' | 'performance', received '${String(m.cpu_kind)}'`);
        }
    }
    return c.ok ? { ok: true, value: b as unknown as ProvisionBody } : { ok: false, details: c.errors };
}

export function validatePublishBody(body: unknown): Validated<PublishBody> {
    const bad = notAnObject<PublishBody>(body);
    if (bad) return bad;
    const b = body as Record<string, unknown>;
    const c = new Collector();
    requireNonEmptyString(c, b, "openclawVersion");
    if (b.openclawVersion === "latest") c.add("openclawVersion", '"latest" is reserved and cannot be published as a version');
    requireNonEmptyString(c, b, "imageTag");
    if (b.variant !== undefined && b.variant !== "default") c.add("variant", `Invalid enum value. Expected 'default', received '${String(b.variant)}'`);
    optionalNullableString(c, b, "imageDigest");
    if (b.setLatest !== undefined && typeof b.setLatest !== "boolean") c.add("setLatest", `Expected boolean, received ${typeName(b.setLatest)}`);
    if (!c.ok) return { ok: false, details: c.errors };
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
