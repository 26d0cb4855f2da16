// The Node version the Dockerfile installs, when it pins one: the real kiloclaw
// Dockerfile has `ENV NODE_VERSION=22.13.1` and downloads node-v${NODE_VERSION};
// `ARG NODE_VERSION=…` and `FROM node:22.13.1…` pin it just as well.

/** The pinned x.y.z, or undefined when the Dockerfile pins no exact Node version. */
export function findNodePin(dockerfileText: string): string | undefined {
    for (const raw of dockerfileText.split(/\r?\n/)) {
        const line = raw.trim();
        if (line.startsWith("#")) continue;
        const env = /^(?:ENV|ARG)\s+NODE_VERSION(?:\s*=\s*|\s+)["']?v?(\d+\.\d+\.\d+)["']?(?:\s|$)/i.exec(line);
        if (env) return env[1];
        const from = /^FROM\s+(?:--platform=\S+\s+)?(?:\S+\/)?node:v?(\d+\.\d+\.\d+)(?:[-@\s]|$)/i.exec(line);
        if (from) return from[1];
    }
    return undefined;
}
