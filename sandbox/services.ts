// The emulators a sandbox runs: the Fly Machines emulator in Docker mode (a
// machine is a container pulled from the local registry) and the worker
// emulator wired to it. Used by `npm run sandbox` and the end-to-end tests.
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { FlyEmulator } from "./emulators/fly";
import { WorkerEmulator } from "./emulators/worker";
import { WorkerProfileName } from "./emulators/worker-profiles";

export interface SandboxServicesOptions {
    /** host:port of the registry (user x, password = token). */
    registryServer: string;
    /** The Fly API token, also the registry password. */
    token: string;
    /** The worker's .dev.vars. */
    devVarsPath: string;
    flyPort?: number;
    workerPort?: number;
    /** The worker generation to play (default "current"). */
    workerProfile?: WorkerProfileName;
    /** Labels every machine container (INSTANCE_LABEL): the sandbox's instance id; a new random one when absent (a test run). */
    instance?: string;
}

export interface SandboxServices {
    fly: FlyEmulator;
    worker: WorkerEmulator;
    /** The value of INSTANCE_LABEL on this sandbox's machine containers. */
    instance: string;
    close(): Promise<void>;
}

export async function startSandboxServices(opts: SandboxServicesOptions): Promise<SandboxServices> {
    const instance = opts.instance ?? randomBytes(6).toString("hex");
    const fly = await FlyEmulator.start({
        port: opts.flyPort,
        token: opts.token,
        docker: { registryAuth: { server: opts.registryServer, username: "x", password: opts.token }, instance },
    });
    const worker = await WorkerEmulator.start({
        port: opts.workerPort,
        profile: opts.workerProfile,
        devVarsPath: opts.devVarsPath,
        // wrangler dev rewrites .wrangler/state/ beside the Dockerfile on every request.
        kiloclawDir: path.dirname(opts.devVarsPath),
        flyApiUrl: fly.url,
        registryServer: opts.registryServer,
        // Stands in for the developer restarting `pnpm start` after .dev.vars changes.
        reloadDevVarsOnRequest: true,
    });
    return {
        fly,
        worker,
        instance,
        async close() {
            await worker.close();
            await fly.close(); // removes every machine container it created
        },
    };
}
