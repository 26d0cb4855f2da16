// One developer's world for the engine suites: a kiloclaw checkout shaped like the real one
// (materializeCheckout: the worker's files, node_modules/, .wrangler/), its .dev.vars wired to a
// local registry, and the sandbox's Fly and worker emulators on 127.0.0.1.
import * as fs from "node:fs";
import * as path from "node:path";
import { LocalRegistry } from "../../sandbox/docker";
import { materializeCheckout } from "../../sandbox/fixtures/checkout";
import { WorkerProfileName } from "../../sandbox/emulators/worker-profiles";
import { SandboxServices, startSandboxServices } from "../../sandbox/services";

export interface E2eWorld {
    /** The kiloclaw/ checkout (kiloclaw:kiloclawDir). */
    checkout: string;
    services: SandboxServices;
}

export interface E2eWorldOptions {
    /** A temp dir the world lives in (removed by the caller). */
    work: string;
    registry: LocalRegistry;
    /** The registry app the worker pulls from (FLY_REGISTRY_APP). */
    app: string;
    internalKey: string;
    gatewaySecret: string;
    /** More .dev.vars lines. */
    extraDevVars?: string[];
    /** The worker generation (default "current"). */
    workerProfile?: WorkerProfileName;
}

export async function startE2eWorld(opts: E2eWorldOptions): Promise<E2eWorld> {
    const checkout = materializeCheckout(path.join(opts.work, "cloud", "kiloclaw"));
    const devVarsPath = path.join(checkout, ".dev.vars");
    fs.writeFileSync(
        devVarsPath,
        [
            `INTERNAL_API_SECRET=${opts.internalKey}`,
            `GATEWAY_TOKEN_SECRET=${opts.gatewaySecret}`,
            `FLY_API_TOKEN=${opts.registry.token}`,
            "WORKER_ENV=development",
            `FLY_REGISTRY_APP=${opts.app}`,
            ...(opts.extraDevVars ?? []),
            "",
        ].join("\n"),
    );
    const services = await startSandboxServices({
        registryServer: opts.registry.server,
        token: opts.registry.token,
        devVarsPath,
        workerProfile: opts.workerProfile,
    });
    return { checkout, services };
}
