// One developer's world for the engine suites: a kiloclaw checkout shaped like the real one
// (materializeCheckout: the worker's files, node_modules/, .wrangler/), its .dev.vars wired to a
// local registry, and the sandbox's Fly and worker emulators on 127.0.0.1.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { CommandError } from "@pulumi/pulumi/automation";
import { dockerBuild, FIXTURES_DIR, LocalRegistry, removeImages, runScript } from "../../sandbox/docker";
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

/** Pushes the local image `source` as `<registry>/<app>:<tag>` for each tag (push-image.sh, the token on stdin). */
export async function pushTags(registry: LocalRegistry, app: string, source: string, tags: string[]): Promise<string[]> {
    const refs: string[] = [];
    for (const tag of tags) {
        const ref = `${registry.server}/${app}:${tag}`;
        const push = await runScript("push-image.sh", [], {
            env: { SOURCE_IMAGE: source, TARGET_IMAGE: ref, REGISTRY_SERVER: registry.server },
            input: registry.token,
        });
        assert.equal(push.code, 0, push.stderr);
        refs.push(ref);
    }
    return refs;
}

/** The fixture image in the registry under each tag, with nothing of it left on the engine; returns the refs. */
export async function pushFixtureTags(registry: LocalRegistry, app: string, localName: string, tags: string[]): Promise<string[]> {
    await dockerBuild(path.join(FIXTURES_DIR, "kiloclaw"), localName);
    const refs = await pushTags(registry, app, localName, tags);
    await removeImages([localName, ...refs]);
    return refs;
}

/** The error a failed pulumi command threw, with the CLI's output in its message. */
export async function failure(p: Promise<unknown>): Promise<CommandError> {
    try {
        await p;
    } catch (err) {
        assert.ok(err instanceof CommandError, String(err));
        return err;
    }
    assert.fail("the command succeeded");
}
