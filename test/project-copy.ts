// A second checkout of this project somewhere else, as a teammate's clone or a moved directory:
// every tracked-like file copied (not node_modules/, .git/ or what runs leave behind), and
// node_modules/ either a symlink to this checkout's (one SDK for both in this process) or its own
// tree of hard links (a clone's own install, for programs the engine runs: no path leads back here).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const REPO = path.join(__dirname, "..");
const NOT_COPIED = new Set(["node_modules", ".git", ".staged-contexts", ".sandbox", ".pulumi", "bin"]);

/** Copies this project to `dest` (created) and returns it. */
export function copyProject(dest: string, nodeModules: "symlink" | "own" = "symlink"): string {
    fs.mkdirSync(dest, { recursive: true });
    for (const entry of fs.readdirSync(REPO)) {
        if (NOT_COPIED.has(entry)) continue;
        fs.cpSync(path.join(REPO, entry), path.join(dest, entry), { recursive: true, verbatimSymlinks: true });
    }
    if (nodeModules === "symlink") fs.symlinkSync(path.join(REPO, "node_modules"), path.join(dest, "node_modules"), "dir");
    // Hard links: the same files at no cost in time or disk (falls back to copying across file systems).
    else
        try {
            execFileSync("cp", ["-al", path.join(REPO, "node_modules"), path.join(dest, "node_modules")]);
        } catch {
            fs.cpSync(path.join(REPO, "node_modules"), path.join(dest, "node_modules"), { recursive: true, verbatimSymlinks: true });
        }
    return dest;
}
