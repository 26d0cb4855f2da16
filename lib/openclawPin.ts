// The openclaw version is read from the Dockerfile the same way the worker's CI
// does: the `openclaw@x.y.z` on the `npm install -g` line.

export interface OpenclawPin {
    version: string;
    /** 1-based line number in the Dockerfile. */
    lineNumber: number;
    line: string;
    /** Everything after `openclaw@` up to whitespace, e.g. "2026.2.9" or "latest". */
    spec: string;
}

const EXACT_VERSION = /^\d+\.\d+\.\d+$/;

/** Finds the pin without judging it; `undefined` when no line installs openclaw. */
export function findOpenclawPin(dockerfileText: string): Omit<OpenclawPin, "version"> | undefined {
    const lines = dockerfileText.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
        const line = lines[i];
        if (line.trim().startsWith("#")) continue;
        const install = /npm\s+(?:install|i)\s+(?:[^\n]*\s)?-g\b|npm\s+(?:install|i)\s+(?:[^\n]*\s)?--global\b/.test(line);
        const match = /(?:^|[\s"'])openclaw(?:@([^\s"'&;|]*))?(?=$|[\s"'&;|])/.exec(line);
        if (install && match) {
            return { lineNumber: i + 1, line: line.trim(), spec: match[1] ?? "" };
        }
    }
    return undefined;
}

/** The pinned version, or an error that names the line and the fix. */
export function parseOpenclawPin(dockerfileText: string, dockerfilePath = "Dockerfile"): OpenclawPin {
    const found = findOpenclawPin(dockerfileText);
    if (!found) {
        throw new Error(
            `${dockerfilePath}: no \`npm install -g openclaw@x.y.z\` line found. ` +
                "Pin the OpenClaw version in the Dockerfile, e.g. `RUN npm install -g openclaw@2026.2.9`.",
        );
    }
    if (!EXACT_VERSION.test(found.spec)) {
        const what = found.spec ? `\`openclaw@${found.spec}\` is not an exact version` : "openclaw is installed without a version";
        throw new Error(
            `${dockerfilePath}:${found.lineNumber}: ${what} (line: ${found.line}). ` +
                "Pin an exact x.y.z, e.g. `npm install -g openclaw@2026.2.9`: the worker tracks versions by this pin.",
        );
    }
    return { ...found, version: found.spec };
}
