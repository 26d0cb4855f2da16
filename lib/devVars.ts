// `.dev.vars` is the developer's own file: edits keep every other line and
// comment as they were (push-dev.sh's BSD `sed -i ''` broke on Linux).
import * as dotenv from "dotenv";

export function parseDevVars(text: string): Record<string, string> {
    return dotenv.parse(text);
}

function quoteIfNeeded(value: string): string {
    return /[\s#"'=]/.test(value) ? JSON.stringify(value) : value;
}

/** Sets each key (replacing its active line in place, or appending it) and returns the new text. */
export function updateDevVars(text: string, updates: Record<string, string>): string {
    const eol = text.includes("\r\n") ? "\r\n" : "\n";
    const lines = text.length ? text.split(/\r?\n/) : [];
    const trailingNewline = text.length === 0 || /\r?\n$/.test(text);
    if (trailingNewline && lines.length && lines[lines.length - 1] === "") lines.pop();
    const written = new Set<string>();
    for (let i = 0; i < lines.length; i++) {
        const m = /^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.-]*)(\s*=)/.exec(lines[i]);
        // Every active occurrence is rewritten: dotenv lets the last one win.
        if (m && Object.prototype.hasOwnProperty.call(updates, m[2])) {
            lines[i] = `${m[1]}${m[2]}${m[3]}${quoteIfNeeded(updates[m[2]])}`;
            written.add(m[2]);
        }
    }
    for (const [key, value] of Object.entries(updates)) {
        if (!written.has(key)) lines.push(`${key}=${quoteIfNeeded(value)}`);
    }
    return lines.join(eol) + (lines.length ? eol : "");
}
