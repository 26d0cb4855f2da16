// What every policy module shares: the type tokens, how messages name a
// resource and its fix, and how command text is split into simple commands.
import { DYNAMIC_MODULE, RESOURCE_TYPES } from "../lib/contract";

/** The type tokens policies look for (lib/contract.ts). */
export const TYPES = RESOURCE_TYPES;

/** Every dynamic resource of this program has a type token with this prefix. */
export const KILOCLAW_DYNAMIC_PREFIX = `pulumi-nodejs:dynamic/${DYNAMIC_MODULE}:`;

/** Values the runbook uses on purpose where a key is required but must not work. */
export const PLACEHOLDER_VALUES: readonly string[] = ["test-key", "test-token", "warm"];

/** `WorkerImageVersion "image-version"`: how messages name a resource. */
export function label(resource: { type: string; name: string }): string {
    const colon = resource.type.lastIndexOf(":");
    return `${colon >= 0 ? resource.type.slice(colon + 1) : resource.type} "${resource.name}"`;
}

/** A violation message: what is wrong, then the exact fix. */
export function withFix(problem: string, fix: string): string {
    return `${problem} Fix: ${fix}`;
}

export function isPlaceholderValue(value: string): boolean {
    return PLACEHOLDER_VALUES.includes(value.trim());
}

/** `$FOO`, `${FOO}`, `$(cmd)`: text that names a value instead of holding it. */
export function isVariableReference(value: string): boolean {
    return /^\$[{(A-Za-z_]/.test(value.trim());
}

/** Shell text split into simple commands (continuations joined; split at newlines, ; && || |). */
export function shellSegments(text: string): string[] {
    return text
        .replace(/\\\r?\n/g, " ")
        .split(/\r?\n|;|&&|\|\||\|/)
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
}

/** The fields of a local Command that hold shell text run by Pulumi. */
export const COMMAND_TEXT_FIELDS = ["create", "update", "delete"] as const;
