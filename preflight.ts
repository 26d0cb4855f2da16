// The runbook's "Verify services", before anything is built: one cheap request each
// that the worker answers and accepts the internal key, that Docker runs (build mode),
// and that Fly accepts the token. A rollout must not spend minutes building an image
// to fail on a worker that was never started.
//
// Where it runs: rollout() gates its first resource on it. During `pulumi up` a failure
// stops the program before anything is registered; during `pulumi preview` the same list
// is a warning (a preview changes nothing and is useful with the worker down);
// `kiloclaw:preflight false` turns it off.
import { spawnSync } from "node:child_process";
import * as pulumi from "@pulumi/pulumi";
import { isNetworkError, requestJson, summarizeText } from "./dynamic-providers/http";
import { workerDownMessage } from "./dynamic-providers/platformClient";
import type { RolloutConfig } from "./lib/config";
import { flyAuthorizationHeader } from "./lib/flyAuth";

export interface PreflightTarget {
    workerUrl: string;
    internalApiKey: string;
    userId: string;
    /** Build mode builds and smoke-tests locally: Docker must run. */
    checkDocker: boolean;
    /** Only when a warm machine is created through the Fly Machines API. */
    fly?: { apiUrl: string; app: string; token: string };
    /** Per request; the checks are meant to be quick. */
    timeoutMs?: number;
}

export interface PreflightCheck {
    service: "worker" | "docker" | "fly";
    ok: boolean;
    /** What was found (never a secret). */
    detail: string;
    /** The next command, when not ok. */
    fix?: string;
}

/** One GET, no retry: an answer (any status) or the network error's code. */
async function get(
    url: string,
    headers: Record<string, string>,
    timeoutMs: number,
): Promise<{ status: number; text: string; json: boolean } | { error: string }> {
    try {
        const res = await requestJson({ method: "GET", url, headers, timeoutMs, attempts: 1 });
        // A body that is not JSON (a proxy's HTML error page) is summed up in one line.
        const json = typeof res.body !== "string";
        return { status: res.status, text: json ? JSON.stringify(res.body ?? "").slice(0, 200) : summarizeText(res.body as string), json };
    } catch (err) {
        if (isNetworkError(err)) return { error: err.code };
        throw err;
    }
}

async function checkWorker(t: PreflightTarget, timeoutMs: number): Promise<PreflightCheck> {
    const url = `${t.workerUrl}/api/platform/status?userId=${encodeURIComponent(t.userId)}`;
    const res = await get(url, { "x-internal-api-key": t.internalApiKey }, timeoutMs);
    if ("error" in res)
        return {
            service: "worker",
            ok: false,
            detail: `no answer from ${t.workerUrl} (${res.error})`,
            fix: workerDownMessage(t.workerUrl, res.error),
        };
    if (res.status === 401 || res.status === 403) {
        return {
            service: "worker",
            ok: false,
            detail: `${t.workerUrl} refused the internal API key (${res.status})`,
            fix:
                "set it to INTERNAL_API_SECRET from .dev.vars: `pulumi config set --secret kiloclaw:internalApiKey <value>` " +
                "(or `pulumi config rm kiloclaw:internalApiKey` to read .dev.vars), and restart `pnpm start` if .dev.vars changed",
        };
    }
    // 404 "Instance not provisioned" is an answer too: the key was accepted.
    if (res.status >= 500 && !res.json) {
        // Not the worker's JSON: something in front of it (a proxy, another server on the port) answered.
        return {
            service: "worker",
            ok: false,
            detail: `${url.split("?")[0]} answered ${res.status} with ${res.text}`,
            fix:
                "that is not the worker's own answer: check kiloclaw:workerUrl points at the worker itself (the address `pnpm start` prints), " +
                "not a proxy in front of it, and that the worker runs",
        };
    }
    if (res.status >= 500) {
        return {
            service: "worker",
            ok: false,
            detail: `${t.workerUrl} answered ${res.status}: ${res.text}`,
            fix: "complete .dev.vars from .dev.vars.example and restart the worker (`cd cloud/kiloclaw && pnpm start`)",
        };
    }
    return { service: "worker", ok: true, detail: `${t.workerUrl} answers and accepts the key` };
}

function checkDocker(): PreflightCheck {
    const info = spawnSync("docker", ["info", "--format", "{{.ServerVersion}}"], { encoding: "utf8", timeout: 20_000 });
    if (info.error || info.status !== 0) {
        return {
            service: "docker",
            ok: false,
            detail: info.error ? "no docker CLI on PATH" : "no Docker engine answers `docker info`",
            fix: "start Docker (Docker Desktop, or `bash bootstrap/start-docker.sh` on Linux as root)",
        };
    }
    return { service: "docker", ok: true, detail: `Docker engine ${info.stdout.trim()} answers` };
}

async function checkFly(fly: NonNullable<PreflightTarget["fly"]>, timeoutMs: number): Promise<PreflightCheck> {
    const url = `${fly.apiUrl}/v1/apps/${encodeURIComponent(fly.app)}/machines`;
    const res = await get(url, { authorization: flyAuthorizationHeader(fly.token) }, timeoutMs);
    if ("error" in res) {
        return { service: "fly", ok: false, detail: `no answer from ${fly.apiUrl} (${res.error})`, fix: "check your network and kiloclaw:flyApiUrl" };
    }
    if (res.status === 401 || res.status === 403) {
        return {
            service: "fly",
            ok: false,
            detail: `the Fly API refused the token (${res.status})`,
            fix:
                `make a scoped token with \`fly tokens deploy --app ${fly.app}\` (or \`fly tokens org <org>\`), then ` +
                "`pulumi config set --secret kiloclaw:flyApiToken <token>` (or update FLY_API_TOKEN in .dev.vars)",
        };
    }
    if (res.status === 404) {
        return {
            service: "fly",
            ok: false,
            detail: `the token is accepted but there is no Fly app "${fly.app}" it can see`,
            fix: `check kiloclaw:registryApp (and FLY_REGISTRY_APP in .dev.vars), or \`fly apps create ${fly.app}\``,
        };
    }
    if (res.status >= 400)
        return { service: "fly", ok: false, detail: `the Fly API answered ${res.status}: ${res.text}`, fix: "wait a minute and try again" };
    return { service: "fly", ok: true, detail: `the Fly API accepts the token for app ${fly.app}` };
}

/** Runs every check (concurrently) and returns them all, in a fixed order. */
export async function verifyServices(t: PreflightTarget): Promise<PreflightCheck[]> {
    const timeoutMs = t.timeoutMs ?? 10_000;
    return Promise.all([
        checkWorker(t, timeoutMs),
        ...(t.checkDocker ? [Promise.resolve(checkDocker())] : []),
        ...(t.fly ? [checkFly(t.fly, timeoutMs)] : []),
    ]);
}

/** The failed checks with their fixes, or undefined when all passed. */
export function preflightReport(checks: PreflightCheck[]): string | undefined {
    const failed = checks.filter((c) => !c.ok);
    if (failed.length === 0) return undefined;
    return [
        `Preflight ("Verify services"): ${failed.length} of ${checks.length} checks failed; nothing was built or changed.`,
        ...checks.map((c) => (c.ok ? `  ok    ${c.service}: ${c.detail}` : `  FAIL  ${c.service}: ${c.detail}\n        fix: ${c.fix}`)),
    ].join("\n");
}

const plain = (o: pulumi.Output<string>) => new Promise<string>((resolve) => o.apply(resolve));

/**
 * Resolves (to no resources) when the services answer; rejects during `up` with the report, so that
 * a first resource with `dependsOn: servicesVerified(config)` is never created. Warns during preview.
 */
export function servicesVerified(config: RolloutConfig): pulumi.Output<pulumi.Resource[]> {
    if (!config.preflight) return pulumi.output([]);
    const check = async (): Promise<pulumi.Resource[]> => {
        const checks = await verifyServices({
            workerUrl: config.workerUrl,
            internalApiKey: await plain(config.secrets.internalApiKey),
            userId: config.userId,
            checkDocker: config.source.kind === "build",
            fly: config.warm ? { apiUrl: config.flyApiUrl, app: config.registryApp, token: await plain(config.secrets.flyApiToken) } : undefined,
        });
        const report = preflightReport(checks);
        if (report && pulumi.runtime.isDryRun()) void pulumi.log.warn(`${report}\n\`pulumi up\` stops here until these are fixed.`);
        else if (report) throw new pulumi.RunError(report);
        return [];
    };
    return pulumi.output(check());
}
