// A second checkout of this project somewhere else, as a teammate's clone or a moved directory:
// every tracked-like file copied (not node_modules/, .git/ or what runs leave behind), and
// node_modules/ a symlink to this checkout's, so both load the same SDK.
import * as fs from "node:fs";
import * as path from "node:path";

const REPO = path.join(__dirname, "..");
const NOT_COPIED = new Set(["node_modules", ".git", ".staged-contexts", ".sandbox", ".pulumi", "bin"]);

/** Copies this project to `dest` (created) and returns it. */
export function copyProject(dest: string): string {
    fs.mkdirSync(dest, { recursive: true });
    for (const entry of fs.readdirSync(REPO)) {
        if (NOT_COPIED.has(entry)) continue;
        fs.cpSync(path.join(REPO, entry), path.join(dest, entry), { recursive: true, verbatimSymlinks: true });
    }
    fs.symlinkSync(path.join(REPO, "node_modules"), path.join(dest, "node_modules"), "dir");
    return dest;
}
