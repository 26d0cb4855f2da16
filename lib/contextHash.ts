// The image tag is a hash of what the build consumes: the Dockerfile, .dockerignore, the build
// args and the files COPY/ADD take from the context (lib/dockerfileSources.ts). Files the image
// never sees (.dev.vars, .wrangler/, node_modules/, src/) leave the tag unchanged, so an unchanged
// image gives a no-op preview however often the worker beside it rewrites its own files.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConsumedInputs, consumedInputs } from "./dockerfileSources";

/** sha256 over the build's inputs: each consumed entry's path, kind, permission bits and content, and the permission
 *  bits of the directories that hold them. */
export function hashConsumedInputs(contextDir: string, inputs: ConsumedInputs, buildArgs: Record<string, string> = {}): string {
    const hash = crypto.createHash("sha256");
    const field = (name: string, value: string | Buffer) => {
        hash.update(`${name}\0${value.length}\0`);
        hash.update(value);
    };
    field("dockerfile", inputs.dockerfileText);
    field("dockerignore", inputs.dockerignoreText ?? "");
    for (const key of Object.keys(buildArgs).sort()) field(`arg ${key}`, buildArgs[key]);
    for (const url of inputs.urls) field("url", url);
    for (const entry of inputs.entries) {
        const full = path.join(contextDir, entry.path);
        // COPY keeps a file's permission bits, so they are part of the image.
        const mode = entry.kind === "symlink" ? "" : (fs.lstatSync(full).mode & 0o777).toString(8);
        const content = entry.kind === "symlink" ? fs.readlinkSync(full) : entry.kind === "file" ? fs.readFileSync(full) : "";
        field(`${entry.kind} ${mode} ${entry.path}`, content);
    }
    // …and a directory's inside a copied directory: staging copies every directory's bits (lib/stagedContext.ts).
    const dirs = new Set<string>();
    for (const entry of inputs.entries) {
        for (let d = path.posix.dirname(entry.path); d !== "." && d !== ""; d = path.posix.dirname(d)) dirs.add(d);
    }
    for (const dir of [...dirs].sort()) field(`dirmode ${dir}`, (fs.statSync(path.join(contextDir, dir)).mode & 0o777).toString(8));
    return hash.digest("hex");
}

/** The hash of everything a build of `contextDir` consumes (see hashConsumedInputs). */
export function hashBuildContext(contextDir: string, dockerfile = "Dockerfile", buildArgs: Record<string, string> = {}): string {
    return hashConsumedInputs(contextDir, consumedInputs(contextDir, dockerfile, buildArgs), buildArgs);
}

/** `dev-` and the first 12 hex digits of a build-input hash. */
export function imageTagForHash(hash: string): string {
    return `dev-${hash.slice(0, 12)}`;
}

/** The image tag for a build context: `dev-` and the first 12 hex digits of its build-input hash. */
export function imageTagForContext(contextDir: string, dockerfile = "Dockerfile", buildArgs: Record<string, string> = {}): string {
    return imageTagForHash(hashBuildContext(contextDir, dockerfile, buildArgs));
}
