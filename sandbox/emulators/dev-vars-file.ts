// Reads a worker's `.dev.vars` the way `wrangler dev` does: dotenv syntax, read once
// when the worker starts. A missing file is an empty set of vars, not an error.
import * as fs from "node:fs";
import { parse } from "dotenv";

export function readDevVars(path: string): Record<string, string> {
    let text: string;
    try {
        text = fs.readFileSync(path, "utf8");
    } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
        throw err;
    }
    return parse(text);
}
