// The sandbox's long-running half: the Fly emulator (machines are real Docker
// containers pulled from the local registry) and the worker emulator wired to
// it. Started detached by scripts/sandbox.ts; stops cleanly on SIGTERM.
import * as fs from "node:fs";
import { FlyEmulator } from "../test/emulators/fly";
import { WorkerEmulator } from "../test/emulators/worker";

interface DaemonConfig {
    stateFile: string;
    devVarsPath: string;
    registryServer: string;
    flyPort: number;
    workerPort: number;
    /** The Fly API token, also the registry password (user x). */
    token: string;
}

async function main(): Promise<void> {
    const cfg: DaemonConfig = JSON.parse(process.env.SANDBOX_DAEMON_CONFIG ?? "{}");
    delete process.env.SANDBOX_DAEMON_CONFIG;
    const fly = await FlyEmulator.start({
        port: cfg.flyPort,
        token: cfg.token,
        docker: { registryAuth: { server: cfg.registryServer, username: "x", password: cfg.token } },
    });
    const worker = await WorkerEmulator.start({
        port: cfg.workerPort,
        devVarsPath: cfg.devVarsPath,
        flyApiUrl: fly.url,
        registryServer: cfg.registryServer,
        // Stands in for the developer restarting `pnpm start` after .dev.vars changes.
        reloadDevVarsOnRequest: true,
    });
    fs.writeFileSync(cfg.stateFile, JSON.stringify({ pid: process.pid, flyApiUrl: fly.url, workerUrl: worker.url }, null, 2));
    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        await worker.close();
        await fly.close(); // removes every machine container it created
        fs.rmSync(cfg.stateFile, { force: true });
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    console.error(`sandbox daemon: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
});
