// Access, not identity: the worker's URL and key, the Fly API's URL and token and where .dev.vars lives are read
// from the stack's current config each time a provider runs (the dynamic-provider
// `configure` hook hands it over), so `pulumi destroy` after a token rotation or a new
// kiloclaw:workerUrl uses today's values, and no credential is kept in the state.
// Defaults resolve as lib/config.ts resolves them: secrets fall back to .dev.vars.
import * as pulumi from "@pulumi/pulumi";
import { DEFAULT_FLY_API_URL, DEFAULT_WORKER_URL } from "../lib/config";
import { parseDevVars } from "../lib/devVars";

/** What a provider needs to reach the worker and Fly. */
export interface StackAccess {
    workerUrl: string;
    internalApiKey: string;
    flyApiUrl: string;
    flyApiToken: string;
    /** kiloclaw:kiloclawDir's .dev.vars, resolved here ("" when unset): where it lives is access, not identity. */
    devVarsPath: string;
}

/** A view of the stack config (`pulumi.dynamic.Config`: full `namespace:key` names). */
export interface ConfigSource {
    get(key: string): string | undefined;
}

/** Where configure() leaves the access for this process (a global: the serialized providers share no module state). */
const STORE = "__kiloclawRolloutStackAccess";

/** Resolves access from the stack config: configured values first, then `.dev.vars` of kiloclaw:kiloclawDir, then defaults. */
export function accessFromConfig(config: ConfigSource): StackAccess {
    // Required here: a captured module does not serialize.
    const fs: typeof import("node:fs") = require("node:fs");
    const path: typeof import("node:path") = require("node:path");
    const dir = config.get("kiloclaw:kiloclawDir");
    const devVarsPath = dir ? path.join(path.resolve(dir), ".dev.vars") : undefined;
    const devVars = devVarsPath && fs.existsSync(devVarsPath) ? parseDevVars(fs.readFileSync(devVarsPath, "utf8")) : {};
    const trim = (url: string) => url.replace(/\/+$/, "");
    return {
        workerUrl: trim(config.get("kiloclaw:workerUrl") ?? DEFAULT_WORKER_URL),
        internalApiKey: config.get("kiloclaw:internalApiKey") ?? devVars.INTERNAL_API_SECRET ?? "",
        flyApiUrl: trim(config.get("kiloclaw:flyApiUrl") ?? DEFAULT_FLY_API_URL),
        flyApiToken: config.get("kiloclaw:flyApiToken") ?? devVars.FLY_API_TOKEN ?? "",
        devVarsPath: devVarsPath ?? "",
    };
}

/** The `configure` hook every provider of this program shares. */
export async function configureFromStack(req: pulumi.dynamic.ConfigureRequest): Promise<void> {
    (globalThis as Record<string, unknown>)[STORE] = accessFromConfig(req.config);
}

/** The access configure() resolved; a provider run without it is a bug in the caller. */
export function stackAccess(): StackAccess {
    const access = (globalThis as Record<string, unknown>)[STORE] as StackAccess | undefined;
    if (!access) throw new Error("kiloclaw-rollout: the provider was not configured (configure(req) runs before every other call).");
    return access;
}
