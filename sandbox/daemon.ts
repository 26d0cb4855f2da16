// The sandbox's long-running half (sandbox/services.ts), started detached by
// sandbox/cli.ts; stops cleanly, removing its containers, on SIGTERM.
import * as fs from "node:fs";
import type { SandboxState } from "./cli";
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
}

async function main(): Promise<void> {
    const cfg: DaemonConfig = JSON.parse(process.env.SANDBOX_DAEMON_CONFIG ?? "{}");
    delete process.env.SANDBOX_DAEMON_CONFIG;
    const services = await startSandboxServices({
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

main().catch((err) => {
    console.error(`sandbox daemon: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
});
