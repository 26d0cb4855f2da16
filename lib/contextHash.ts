// The image tag is derived from the build context, so an unchanged context
// gives an unchanged tag (a no-op preview) and any edit gives a new one.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export interface IgnoreRule {
    negate: boolean;
    regex: RegExp;
}

/** Parses `.dockerignore` text into ordered rules (the last matching rule wins, as in Docker). */
export function parseDockerignore(text: string): IgnoreRule[] {
    const rules: IgnoreRule[] = [];
    for (const raw of text.split(/\r?\n/)) {
        let line = raw.trim();
        if (!line || line.startsWith("#")) continue;
        const negate = line.startsWith("!");
        if (negate) line = line.slice(1).trim();
        line = path.posix.normalize(line.replace(/^\/+/, "")).replace(/\/+$/, "");
        if (!line || line === ".") continue;
        rules.push({ negate, regex: globToRegex(line) });
    }
    return rules;
}

/** Docker's pattern syntax: `*` and `?` stay within one path segment, `**` spans segments. */
export function globToRegex(pattern: string): RegExp {
    let out = "";
    for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i];
        if (c === "*" && pattern[i + 1] === "*") {
            // "**/" matches zero or more directories; a trailing "**" matches anything.
            if (pattern[i + 2] === "/") {
                out += "(?:.*/)?";
                i += 2;
            } else {
                out += ".*";
                i += 1;
            }
        } else if (c === "*") {
            out += "[^/]*";
        } else if (c === "?") {
            out += "[^/]";
        } else if (c === "[") {
            const end = pattern.indexOf("]", i + 1);
            if (end < 0) {
                out += "\\[";
            } else {
                out += "[" + pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\") + "]";
                i = end;
            }
        } else if (c === "\\" && i + 1 < pattern.length) {
            out += "\\" + pattern[++i];
        } else {
            out += c.replace(/[.+^${}()|\\]/g, "\\$&");
        }
    }
    return new RegExp(`^${out}$`);
}

/** True when `relPath` (posix, relative to the context) is excluded; a match on a parent directory excludes it too. */
export function isIgnored(relPath: string, rules: IgnoreRule[]): boolean {
    let ignored = false;
    const parts = relPath.split("/");
    for (const rule of rules) {
        let matched = false;
        for (let n = parts.length; n >= 1 && !matched; n--) {
            matched = rule.regex.test(parts.slice(0, n).join("/"));
        }
        if (matched) ignored = !rule.negate;
    }
    return ignored;
}

/** Files of the build context that Docker would send, as sorted posix paths. */
export function listContextFiles(contextDir: string, dockerfile = "Dockerfile"): string[] {
    const ignoreFile = path.join(contextDir, ".dockerignore");
    const rules = fs.existsSync(ignoreFile) ? parseDockerignore(fs.readFileSync(ignoreFile, "utf8")) : [];
    const files: string[] = [];
    const walk = (dir: string, rel: string) => {
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
            const entryRel = rel ? `${rel}/${entry.name}` : entry.name;
            if (isIgnored(entryRel, rules) && !hasNegation(rules)) continue;
            const full = path.join(dir, entry.name);
            if (entry.isDirectory()) walk(full, entryRel);
            else if (!isIgnored(entryRel, rules)) files.push(entryRel);
        }
    };
    walk(contextDir, "");
    // The Dockerfile always reaches the builder, even when .dockerignore names it.
    const dockerfileRel = path.relative(contextDir, path.resolve(contextDir, dockerfile)).split(path.sep).join("/");
    if (!dockerfileRel.startsWith("..") && !files.includes(dockerfileRel) && fs.existsSync(path.join(contextDir, dockerfileRel))) {
        files.push(dockerfileRel);
    }
    return files.sort();
}

function hasNegation(rules: IgnoreRule[]): boolean {
    return rules.some((r) => r.negate);
}

/** sha256 over every sent file's path, executable bit and content. */
export function hashBuildContext(contextDir: string, dockerfile = "Dockerfile"): string {
    const hash = crypto.createHash("sha256");
    for (const rel of listContextFiles(contextDir, dockerfile)) {
        const full = path.join(contextDir, rel);
        const stat = fs.lstatSync(full);
        const content = stat.isSymbolicLink() ? Buffer.from(fs.readlinkSync(full)) : fs.readFileSync(full);
        hash.update(`${rel}\0${stat.mode & 0o111 ? "x" : "-"}\0${content.length}\0`);
        hash.update(content);
    }
    return hash.digest("hex");
}

/** The image tag for a build context: `dev-` and the first 12 hex digits of its hash. */
export function imageTagForContext(contextDir: string, dockerfile = "Dockerfile"): string {
    return `dev-${hashBuildContext(contextDir, dockerfile).slice(0, 12)}`;
}
