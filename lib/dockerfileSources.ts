// What a `docker build` reads from its context: the files COPY and ADD take
// (after .dockerignore), nothing else. The image tag and the staged build
// context are both derived from this list, so files beside the Dockerfile that
// the image never sees (.dev.vars, .wrangler/, node_modules/, src/) cannot
// change the tag or reach the Docker daemon.
import * as fs from "node:fs";
import * as path from "node:path";
import dockerignore from "@balena/dockerignore";
import { Arg, DockerfileParser, Env, Instruction, JSONInstruction } from "dockerfile-ast";

/** One source of a COPY/ADD that is read from the build context. */
export interface ContextSource {
    /** 1-based line of the instruction in the Dockerfile. */
    line: number;
    keyword: "COPY" | "ADD";
    /** Relative to the context, posix, with variables expanded; "." is the whole context. */
    pattern: string;
}

/** The parts of a Dockerfile that decide which inputs a build takes. */
export interface DockerfileInputs {
    /** Sources taken from the build context, in Dockerfile order. */
    contextSources: ContextSource[];
    /** Remote `ADD` sources (URLs, git refs): the builder fetches them, so only the URL can be hashed. */
    urls: string[];
}

/** A file, symlink or empty directory of the context that the build consumes. */
export interface ConsumedEntry {
    /** Posix path relative to the context. */
    path: string;
    kind: "file" | "symlink" | "dir";
}

/** Everything a build of `contextDir` reads, in a stable order. */
export interface ConsumedInputs {
    /** Absolute path of the Dockerfile and its path relative to the context (posix). */
    dockerfilePath: string;
    dockerfileRel: string;
    dockerfileText: string;
    /** The ignore file's text (`<Dockerfile>.dockerignore`, else `.dockerignore`), when there is one. */
    dockerignoreText?: string;
    /** That file's path relative to the context (posix). */
    dockerignoreRel?: string;
    entries: ConsumedEntry[];
    urls: string[];
}

const REMOTE_SOURCE = /^(?:[a-z][a-z0-9+.-]*:\/\/|git@)/i;
const WILDCARD = /[*?[]/;

/** Parses the COPY/ADD sources of a Dockerfile; `buildArgs` override ARG defaults, as `--build-arg` does. */
export function parseDockerfileInputs(dockerfileText: string, buildArgs: Record<string, string> = {}): DockerfileInputs {
    const dockerfile = DockerfileParser.parse(dockerfileText);
    const escape = dockerfile.getEscapeCharacter();
    const contextSources: ContextSource[] = [];
    const urls: string[] = [];
    // Variables as Docker scopes them: a global ARG reaches a stage only when the stage re-declares it,
    // a --build-arg only reaches a declared ARG, and ENV wins over ARG.
    const globalArgs = new Map<string, string>();
    let stage: { args: Map<string, string>; envs: Map<string, string> } | undefined;
    // ONBUILD COPY has the keyword ONBUILD: it runs in a later image's build, against that build's context.
    for (const instruction of dockerfile.getInstructions()) {
        const keyword = instruction.getKeyword();
        if (keyword === "FROM") stage = { args: new Map(), envs: new Map() };
        if (instruction instanceof Arg) {
            for (const prop of instruction.getProperties()) {
                const name = prop.getName();
                const fallback = prop.getValue() ?? (stage ? globalArgs.get(name) : undefined) ?? "";
                (stage?.args ?? globalArgs).set(name, buildArgs[name] ?? fallback);
            }
        } else if (instruction instanceof Env && stage) {
            for (const prop of instruction.getProperties()) stage.envs.set(prop.getName(), prop.getValue() ?? "");
        }
        if ((keyword !== "COPY" && keyword !== "ADD") || !(instruction instanceof JSONInstruction)) continue;
        // COPY --from=<stage|image> reads from another image, not from the context.
        if (instruction.getFlags().some((flag) => flag.getName().toLowerCase() === "from")) continue;
        const line = instruction.getRange().start.line;
        const args = jsonForm(dockerfileText, instruction, escape) ?? shellForm(instruction);
        for (const raw of args.slice(0, -1)) {
            const source = expandVariables(raw, (name) => stage?.envs.get(name) ?? stage?.args.get(name) ?? "");
            if (keyword === "ADD" && REMOTE_SOURCE.test(source)) urls.push(source);
            else contextSources.push({ line: line + 1, keyword, pattern: contextPattern(source) });
        }
    }
    return { contextSources, urls };
}

/** The JSON form `["a", "b", "/dest/"]`, parsed as JSON as Docker does; `undefined` for the shell form. */
function jsonForm(text: string, instruction: Instruction, escape: string): string[] | undefined {
    // Read from the text: dockerfile-ast 0.7.1 drops spaces inside JSON strings and loses a JSON
    // array continued with a backtick escape.
    const range = instruction.getRange();
    const lines = text.split("\n").slice(range.start.line, range.end.line + 1);
    lines[lines.length - 1] = lines[lines.length - 1].slice(0, range.end.character);
    lines[0] = lines[0].slice(range.start.character);
    const continuation = new RegExp(`\\${escape}\\s*$`);
    const joined = lines
        .map((l) => l.replace(/\r$/, ""))
        .filter((l, i) => i === 0 || !/^\s*#/.test(l)) // comment lines inside a continuation
        .map((l, i, all) => (i < all.length - 1 ? l.replace(continuation, "") : l))
        .join("");
    const array = joined
        .replace(/^\s*\S+/, "")
        .replace(/^(?:\s+--\S+)*/, "")
        .trim();
    if (!array.startsWith("[")) return undefined;
    try {
        const parsed: unknown = JSON.parse(array);
        return Array.isArray(parsed) && parsed.every((s) => typeof s === "string") ? parsed : undefined;
    } catch {
        return undefined; // Docker falls back to the shell form for an array that is not valid JSON.
    }
}

/** Shell-form arguments; here-documents (`COPY <<EOF /dest`) carry their content in the Dockerfile itself. */
function shellForm(instruction: Instruction): string[] {
    const args = instruction.getArguments();
    const markers = args.filter((a) => a.getValue().startsWith("<<"));
    if (!markers.length) return args.map((a) => a.getValue());
    // The here-document bodies follow the line of the last marker.
    const markerLine = Math.max(...markers.map((a) => a.getRange().start.line));
    return args.filter((a) => a.getRange().start.line <= markerLine && !a.getValue().startsWith("<<")).map((a) => a.getValue());
}

/** `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}`, as Docker expands COPY/ADD arguments. */
function expandVariables(value: string, lookup: (name: string) => string): string {
    return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced, op, word, bare) => {
        const current = lookup(braced ?? bare);
        if (op === "-") return current || word;
        if (op === "+") return current ? word : "";
        return current;
    });
}

/** A source as a path inside the context: leading `/` and `..` cannot leave it. */
function contextPattern(source: string): string {
    const clean = path.posix.normalize(`/${source}`).replace(/^\/+/, "").replace(/\/+$/, "");
    return clean || ".";
}

/**
 * Lists what a build of `contextDir` consumes. Throws, naming the Dockerfile line, when a COPY/ADD
 * source is missing from the context (or excluded by .dockerignore), as `docker build` would fail.
 */
export function consumedInputs(contextDir: string, dockerfile = "Dockerfile", buildArgs: Record<string, string> = {}): ConsumedInputs {
    const dockerfilePath = path.resolve(contextDir, dockerfile);
    const dockerfileText = fs.readFileSync(dockerfilePath, "utf8");
    // BuildKit prefers an ignore file named after the Dockerfile (`Dockerfile.dockerignore`) to the context's.
    const ignorePath = [`${dockerfilePath}.dockerignore`, path.join(contextDir, ".dockerignore")].find((f) => fs.existsSync(f));
    const dockerignoreText = ignorePath ? fs.readFileSync(ignorePath, "utf8") : undefined;
    const ignoreRules = dockerignore().add(dockerignoreLines(dockerignoreText ?? ""));
    const canSkipIgnoredDirs = !dockerignoreLines(dockerignoreText ?? "").some((l) => l.startsWith("!"));
    const { contextSources, urls } = parseDockerfileInputs(dockerfileText, buildArgs);

    const matchers = contextSources.map((s) => ({ source: s, matches: sourceMatcher(s.pattern) }));
    const found = new Map<ContextSource, number>();
    const entries: ConsumedEntry[] = [];
    const walk = (dirAbs: string, dirRel: string): void => {
        for (const entry of fs.readdirSync(dirAbs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
            const rel = dirRel ? `${dirRel}/${entry.name}` : entry.name;
            const ignored = ignoreRules.ignores(rel);
            if (ignored && (canSkipIgnoredDirs || !entry.isDirectory())) continue;
            const taking = matchers.filter((m) => m.matches.covers(rel));
            if (entry.isDirectory()) {
                const before = entries.length;
                if (taking.length || matchers.some((m) => m.matches.mayContain(rel))) walk(path.join(dirAbs, entry.name), rel);
                // An empty directory that a source names is still created in the image.
                if (taking.length && !ignored && entries.length === before) entries.push({ path: rel, kind: "dir" });
                if (entries.length > before) for (const m of taking) found.set(m.source, (found.get(m.source) ?? 0) + 1);
                continue;
            }
            if (ignored || !taking.length) continue;
            entries.push({ path: rel, kind: entry.isSymbolicLink() ? "symlink" : "file" });
            for (const m of taking) found.set(m.source, (found.get(m.source) ?? 0) + 1);
        }
    };
    walk(contextDir, "");

    const problems: string[] = [];
    for (const source of contextSources) {
        if (found.get(source) || source.pattern === ".") continue;
        const excluded = pathExists(path.join(contextDir, source.pattern)) && ignoreRules.ignores(source.pattern);
        const why = WILDCARD.test(source.pattern)
            ? "matches no file"
            : excluded
              ? "is excluded by .dockerignore"
              : "does not exist in the build context";
        problems.push(
            `${dockerfilePath}:${source.line}: ${source.keyword} source "${source.pattern}" ${why} (${contextDir}). ` +
                "Fix the path on that line, or add the file to kiloclaw/.",
        );
    }
    if (problems.length) throw new Error(problems.join("\n"));
    return {
        dockerfilePath,
        dockerfileRel: path.relative(contextDir, dockerfilePath).split(path.sep).join("/"),
        dockerfileText,
        dockerignoreText,
        dockerignoreRel: ignorePath && path.relative(contextDir, ignorePath).split(path.sep).join("/"),
        entries,
        urls,
    };
}

function dockerignoreLines(text: string): string[] {
    return text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#"));
}

/** lstat, so a dangling symlink counts as present. */
function pathExists(file: string): boolean {
    try {
        fs.lstatSync(file);
        return true;
    } catch {
        return false;
    }
}

/**
 * Matches context paths against one COPY source. Docker matches a wildcard source with Go's
 * filepath.Match semantics (the same as .dockerignore's), and copies a matched directory whole.
 */
function sourceMatcher(pattern: string): { covers(rel: string): boolean; mayContain(dirRel: string): boolean } {
    if (pattern === ".") return { covers: () => true, mayContain: () => true };
    const whole = dockerignore().add(pattern);
    const segments = pattern.split("/");
    return {
        // The path is the source, or lies inside a directory that is.
        covers: (rel) => whole.ignores(rel),
        // Some path below this directory could still match: its segments match the pattern's first ones.
        mayContain: (dirRel) => {
            const depth = dirRel.split("/").length;
            const globstar = segments.indexOf("**");
            if (globstar >= 0 && globstar < depth) return true;
            if (depth >= segments.length) return false;
            return dockerignore().add(segments.slice(0, depth).join("/")).ignores(dirRel);
        },
    };
}
