// The sandbox's long-running half (sandbox/services.ts), started detached by
// sandbox/cli.ts; stops cleanly, removing its containers, on SIGTERM. On start it sweeps the
// machine containers an earlier, crashed run of the same sandbox left (its instance label only).
import * as fs from "node:fs";
import type { SandboxState } from "./cli";
import { DockerMachines } from "./emulators/docker-machines";
import { startSandboxServices } from "./services";

interface DaemonConfig {
    stateFile: string;
    devVarsPath: string;
    registryServer: string;
    registryApp: string;
    kiloclawDir: string;
    flyPort: number;
    workerPort: number;
    /** The Fly API token, also the registry password (user x). */
    token: string;
    /** The sandbox's instance id: labels its machine containers. */
    instance: string;
}

/**
 * The emulators serve every rollout on this machine: an error nobody handled (a stream of a child
 * process, a timer's callback) is logged, and the daemon keeps serving instead of dying mid-rollout.
 */
export function keepServingOnErrors(log: (line: string) => void = (line) => console.error(line)): void {
    process.on("uncaughtException", (err) => log(`sandbox daemon: ignored an unhandled error: ${err instanceof Error ? err.stack : err}`));
    process.on("unhandledRejection", (err) => log(`sandbox daemon: ignored an unhandled rejection: ${err instanceof Error ? err.stack : err}`));
}

async function main(): Promise<void> {
    const cfg: DaemonConfig = JSON.parse(process.env.SANDBOX_DAEMON_CONFIG ?? "{}");
    delete process.env.SANDBOX_DAEMON_CONFIG;
    keepServingOnErrors();
    const strays = await DockerMachines.removeStrayContainers(cfg.instance);
    if (strays > 0) console.error(`sandbox daemon: removed ${strays} machine container(s) a crashed run of this sandbox left`);
    const services = await startSandboxServices({
        instance: cfg.instance,
        registryServer: cfg.registryServer,
        token: cfg.token,
        devVarsPath: cfg.devVarsPath,
        flyPort: cfg.flyPort,
        workerPort: cfg.workerPort,
    });
    const state: SandboxState = {
        pid: process.pid,
        flyApiUrl: services.fly.url,
        workerUrl: services.worker.url,
        registryServer: cfg.registryServer,
        registryApp: cfg.registryApp,
        kiloclawDir: cfg.kiloclawDir,
        instance: cfg.instance,
    };
    fs.writeFileSync(cfg.stateFile, JSON.stringify(state, null, 2));
    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        await services.close();
        fs.rmSync(cfg.stateFile, { force: true });
        process.exit(0);
    };
    process.on("SIGTERM", () => void stop());
    process.on("SIGINT", () => void stop());
}

if (require.main === module) {
    main().catch((err) => {
        console.error(`sandbox daemon: ${err instanceof Error ? err.message : err}`);
        process.exit(1);
    });
}
