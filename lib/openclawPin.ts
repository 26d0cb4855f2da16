// The openclaw version is read from the Dockerfile the same way the worker's CI
// does: the `openclaw@x.y.z` of the `npm install -g` instruction. Lines are read
// as Docker reads them: a trailing escape character joins the next line, so a pin
// on a continuation line belongs to the RUN above it.

export interface OpenclawPin {
    version: string;
    /** 1-based line number in the Dockerfile of the line that holds the pin. */
    lineNumber: number;
    line: string;
    /** Everything after `openclaw@` up to whitespace, e.g. "2026.2.9" or "latest". */
    spec: string;
}

const EXACT_VERSION = /^\d+\.\d+\.\d+$/;
/** `openclaw` or `openclaw@<spec>` as one shell word (quotes allowed). */
const PACKAGE_WORD = /^["']?openclaw(?:@([^\s"']*))?["']?$/;
const COMMAND_SEPARATOR = /^(?:&&|\|\||;|\||&)$/;

/** The Dockerfile's logical lines (continuations joined, comment lines inside them dropped), each with its physical lines. */
function logicalLines(dockerfileText: string): Array<{ parts: Array<{ lineNumber: number; text: string }> }> {
    const lines = dockerfileText.split(/\r?\n/);
    // `# escape=`` ` switches the continuation character (a parser directive, before any instruction).
    const directive = /^#\s*escape\s*=\s*([\\`])\s*$/i.exec(lines[0] ?? "");
    const escape = directive ? directive[1] : "\\";
    const out: Array<{ parts: Array<{ lineNumber: number; text: string }> }> = [];
    let current: { parts: Array<{ lineNumber: number; text: string }> } | undefined;
    for (let i = 0; i < lines.length; i++) {
        const text = lines[i];
        // A comment line is skipped, also inside a continuation (Docker drops it there too).
        if (text.trim().startsWith("#")) continue;
        if (!current) out.push((current = { parts: [] }));
        const continues = text.trimEnd().endsWith(escape);
        current.parts.push({ lineNumber: i + 1, text: continues ? text.trimEnd().slice(0, -1) : text });
        if (!continues) current = undefined;
    }
    return out;
}

/** Every `npm install -g openclaw…` in the Dockerfile, in order, without judging the versions. */
export function findOpenclawPins(dockerfileText: string): Array<Omit<OpenclawPin, "version">> {
    const pins: Array<Omit<OpenclawPin, "version">> = [];
    for (const logical of logicalLines(dockerfileText)) {
        // The words of one instruction, each with its physical line; a shell separator starts a new command.
        let command: Array<{ word: string; part: { lineNumber: number; text: string } }> = [];
        const flush = () => {
            const words = command.map((c) => c.word);
            const npm = words.indexOf("npm");
            const isGlobalInstall =
                npm >= 0 && ["install", "i"].includes(words[npm + 1]) && words.slice(npm + 2).some((w) => w === "-g" || w === "--global");
            if (isGlobalInstall) {
                for (const { word, part } of command.slice(npm + 2)) {
                    const match = PACKAGE_WORD.exec(word);
                    if (match) pins.push({ lineNumber: part.lineNumber, line: part.text.trim(), spec: match[1] ?? "" });
                }
            }
            command = [];
        };
        for (const part of logical.parts) {
            for (const raw of part.text.split(/\s+/).filter(Boolean)) {
                const trailing = raw.length > 1 && raw.endsWith(";");
                const word = trailing ? raw.slice(0, -1) : raw;
                if (COMMAND_SEPARATOR.test(word)) flush();
                else command.push({ word, part });
                if (trailing) flush();
            }
        }
        flush();
    }
    return pins;
}

/** The first pin without judging it; `undefined` when no instruction installs openclaw. */
export function findOpenclawPin(dockerfileText: string): Omit<OpenclawPin, "version"> | undefined {
    return findOpenclawPins(dockerfileText)[0];
}

/** The pinned version, or an error that names the line(s) and the fix. */
export function parseOpenclawPin(dockerfileText: string, dockerfilePath = "Dockerfile"): OpenclawPin {
    const pins = findOpenclawPins(dockerfileText);
    if (pins.length === 0) {
        throw new Error(
            `${dockerfilePath}: no \`npm install -g openclaw@x.y.z\` line found. ` +
                "Pin the OpenClaw version in the Dockerfile, e.g. `RUN npm install -g openclaw@2026.2.9`.",
        );
    }
    const specs = new Set(pins.map((p) => p.spec));
    if (specs.size > 1) {
        throw new Error(
            `${dockerfilePath}: ${pins.length} different openclaw pins (${pins.map((p) => `line ${p.lineNumber}: openclaw@${p.spec}`).join(", ")}). ` +
                "Keep exactly one `npm install -g openclaw@x.y.z`: the worker is told one version.",
        );
    }
    const found = pins[0];
    if (!EXACT_VERSION.test(found.spec)) {
        const what = found.spec ? `\`openclaw@${found.spec}\` is not an exact version` : "openclaw is installed without a version";
        throw new Error(
            `${dockerfilePath}:${found.lineNumber}: ${what} (line: ${found.line}). ` +
                "Pin an exact x.y.z, e.g. `npm install -g openclaw@2026.2.9`: the worker tracks versions by this pin.",
        );
    }
    return { ...found, version: found.spec };
}
