// Runs the program under mocks in a child process (see mocked-program-main.ts).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { scratchDir } from "./scratch";

export interface RegisteredResource {
    type: string;
    name: string;
    urn: string;
    custom: boolean;
    parent: string;
    dependencies: string[];
    inputs: Record<string, any>;
}

export interface MockedRun {
    error?: string;
    resources: RegisteredResource[];
    outputs: Record<string, { value: unknown; secret: boolean }>;
}

export const SECRET_SIG = "4dabf18193072939515e22adb298388d";

export function isSecretValue(v: unknown): v is { value: unknown } {
    return !!v && typeof v === "object" && (v as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
}

/** Replaces secret wrappers with their plain values (what a policy sees). */
export function unwrapSecrets(v: any): any {
    if (isSecretValue(v)) return unwrapSecrets(v.value);
    if (Array.isArray(v)) return v.map(unwrapSecrets);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
    return v;
}

export function runMockedProgram(config: Record<string, string>, secretKeys: string[] = [], stack = "test"): MockedRun {
    const repo = path.join(__dirname, "..");
    const out = execFileSync(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(__dirname, "mocked-program-main.ts")], {
        cwd: repo,
        env: { ...process.env, MOCKED_PROGRAM_INPUT: JSON.stringify({ config, secretKeys, stack }) },
        encoding: "utf8",
        timeout: 120_000,
    });
    const last = out.trim().split("\n").pop() ?? "{}";
    return { resources: [], outputs: {}, ...JSON.parse(last) };
}

export interface FakeCheckout {
    kiloclawDir: string;
    root: string;
}

/** A cloud/ checkout with kiloclaw/{Dockerfile,.dev.vars} and an optional .env.development.local. */
export function fakeCheckout(opts: { dockerfile?: string; devVars?: string; envLocal?: string } = {}): FakeCheckout {
    const root = scratchDir("kiloclaw-cloud-");
    const kiloclawDir = path.join(root, "kiloclaw");
    fs.mkdirSync(kiloclawDir);
    fs.writeFileSync(
        path.join(kiloclawDir, "Dockerfile"),
        opts.dockerfile ?? "FROM debian:bookworm-slim\nRUN npm install -g openclaw@2026.2.9 && openclaw --version\nEXPOSE 18789\n",
    );
    fs.writeFileSync(path.join(kiloclawDir, "start-openclaw.sh"), "#!/bin/bash\n");
    fs.writeFileSync(
        path.join(kiloclawDir, ".dev.vars"),
        opts.devVars ??
            [
                "INTERNAL_API_SECRET=internal-secret-from-dev-vars",
                "FLY_API_TOKEN=fly-token-from-dev-vars",
                "GATEWAY_TOKEN_SECRET=gw-secret",
                "WORKER_ENV=development",
                "FLY_REGISTRY_APP=kiloclaw-dev",
                "FLY_IMAGE_TAG=dev-1771448521",
                "OPENCLAW_VERSION=2026.2.9",
                "",
            ].join("\n"),
    );
    if (opts.envLocal !== undefined) fs.writeFileSync(path.join(root, ".env.development.local"), opts.envLocal);
    return { kiloclawDir, root };
}
