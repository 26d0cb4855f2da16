// The build context handed to Docker: a copy of only what the Dockerfile consumes, in a directory
// named by the image tag, under .staged-contexts/ in the project directory (gitignored): the same
// relative path in every checkout, so a clone elsewhere gives docker the same inputs. Nothing
// else writes there, so the docker provider's own digest of the context (every file in it) moves
// only when the tag does — not when the worker rewrites .wrangler/ or the rollout rewrites .dev.vars
// beside the Dockerfile — and .dev.vars and node_modules/ never reach the Docker daemon.
import * as fs from "node:fs";
import * as path from "node:path";
import { hashConsumedInputs, imageTagForHash } from "./contextHash";
import { consumedInputs } from "./dockerfileSources";

export interface StagedContext {
    /** `dev-` + 12 hex of the build-input hash. */
    tag: string;
    /** The staged context directory (give this to docker build). */
    dir: string;
    /** The Dockerfile inside `dir`, relative (posix). */
    dockerfileRel: string;
}

/** How many staged contexts to keep (most recently used first); older ones are removed. */
const KEEP_CONTEXTS = 10;

/**
 * `<projectDir>/.staged-contexts`. The engine runs the program and every provider in the project
 * directory, so the docker provider resolves the relative path given to it against the same place.
 */
export function stagedContextsRoot(projectDir: string = process.cwd()): string {
    return path.join(projectDir, ".staged-contexts");
}

/** One stack's staged contexts, `<root>/<slug>` (slug: lib/localScope.ts): removed with the stack's images. */
export function stackContextsRoot(scopeSlug: string, root = stagedContextsRoot()): string {
    return path.join(root, scopeSlug);
}

/** Removes one staged context, and its stack's directory once empty; what is already gone is fine. */
export function removeStagedContext(dir: string): void {
    fs.rmSync(dir, { recursive: true, force: true });
    try {
        fs.rmdirSync(path.dirname(dir));
    } catch {
        // not empty (the stack's other tags) or already gone
    }
}

/**
 * Stages the consumed inputs of `contextDir` (see lib/dockerfileSources.ts) into `<root>/<tag>`.
 * The copy is made in a temporary sibling and renamed into place, so a crash never leaves a half
 * copy under a tag's name; an existing copy is re-hashed and reused only when it still matches.
 */
export function stageBuildContext(
    contextDir: string,
    dockerfile = "Dockerfile",
    buildArgs: Record<string, string> = {},
    root = stagedContextsRoot(),
): StagedContext {
    const inputs = consumedInputs(contextDir, dockerfile, buildArgs);
    if (inputs.dockerfileRel.startsWith("../") || path.isAbsolute(inputs.dockerfileRel)) {
        throw new Error(`${inputs.dockerfilePath} is outside ${contextDir}: set kiloclaw:dockerfile to a path inside kiloclaw:kiloclawDir.`);
    }
    const tag = imageTagForHash(hashConsumedInputs(contextDir, inputs, buildArgs));
    const dir = path.join(root, tag);
    const staged = { tag, dir, dockerfileRel: inputs.dockerfileRel };
    if (fs.existsSync(dir)) {
        if (stagedCopyMatches(dir, inputs.dockerfileRel, buildArgs, tag)) {
            const now = new Date();
            fs.utimesSync(dir, now, now);
            return staged;
        }
        fs.rmSync(dir, { recursive: true, force: true }); // edited by hand: stage it again
    }

    fs.mkdirSync(root, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(root, `.staging-${tag}-`));
    try {
        const copy = (rel: string, kind: "file" | "symlink" | "dir") => {
            const from = path.join(contextDir, rel);
            const to = path.join(tmp, rel);
            mkdirs(tmp, path.posix.dirname(rel), contextDir);
            if (kind === "dir") {
                fs.mkdirSync(to);
                fs.chmodSync(to, fs.statSync(from).mode & 0o777);
            } else if (kind === "symlink") fs.symlinkSync(fs.readlinkSync(from), to);
            else {
                fs.copyFileSync(from, to);
                // Permission bits are part of the hash and of docker's context digest: copy them exactly.
                fs.chmodSync(to, fs.statSync(from).mode & 0o777);
            }
        };
        for (const entry of inputs.entries) copy(entry.path, entry.kind);
        mkdirs(tmp, path.posix.dirname(inputs.dockerfileRel));
        fs.writeFileSync(path.join(tmp, inputs.dockerfileRel), inputs.dockerfileText, { mode: 0o644 });
        if (inputs.dockerignoreRel && inputs.dockerignoreText !== undefined) {
            fs.writeFileSync(path.join(tmp, inputs.dockerignoreRel), inputs.dockerignoreText, { mode: 0o644 });
        }
        fs.chmodSync(tmp, 0o755);
        try {
            fs.renameSync(tmp, dir);
        } catch (err) {
            // Another run staged the same tag first: same content by construction.
            if (!fs.existsSync(dir)) throw err;
        }
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    pruneStagedContexts(root, tag);
    return staged;
}

/** Creates the directories between the staged root and a file, whatever the umask: with the checkout's permission bits
 *  (`modesFrom`; COPY keeps them for directories inside a copied directory, and the tag covers them), else 0755. */
function mkdirs(root: string, relDir: string, modesFrom?: string): void {
    if (relDir === "." || relDir === "") return;
    let current = root;
    let rel = "";
    for (const part of relDir.split("/")) {
        current = path.join(current, part);
        rel = rel ? `${rel}/${part}` : part;
        if (fs.existsSync(current)) continue;
        fs.mkdirSync(current);
        fs.chmodSync(current, modesFrom ? fs.statSync(path.join(modesFrom, rel)).mode & 0o777 : 0o755);
    }
}

function stagedCopyMatches(dir: string, dockerfileRel: string, buildArgs: Record<string, string>, tag: string): boolean {
    try {
        return imageTagForHash(hashConsumedInputs(dir, consumedInputs(dir, dockerfileRel, buildArgs), buildArgs)) === tag;
    } catch {
        return false;
    }
}

/** Keeps the most recently used staged contexts; removes older ones and staging leftovers of crashed runs. */
function pruneStagedContexts(root: string, keepTag: string): void {
    const entries = fs
        .readdirSync(root, { withFileTypes: true })
        // Only tag directories and staging leftovers: a stack's own directory (stackContextsRoot) is its own business.
        .filter((e) => e.isDirectory() && e.name !== keepTag && (/^dev-[0-9a-f]{12}$/.test(e.name) || e.name.startsWith(".staging-")))
        .map((e) => ({ name: e.name, mtime: fs.statSync(path.join(root, e.name)).mtimeMs }))
        .sort((a, b) => b.mtime - a.mtime);
    const hourAgo = Date.now() - 3600_000;
    let kept = 1;
    for (const entry of entries) {
        const staging = entry.name.startsWith(".staging-");
        if (staging ? entry.mtime < hourAgo : ++kept > KEEP_CONTEXTS) fs.rmSync(path.join(root, entry.name), { recursive: true, force: true });
    }
}
