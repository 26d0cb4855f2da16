// `.dev.vars` is the developer's own file: a rollout edits it as a careful human
// would. Only the values of the keys it sets change; their quotes and inline
// comments, every line's own line ending and every other byte stay as they were
// (push-dev.sh's BSD `sed -i ''` broke on Linux).
import * as dotenv from "dotenv";

export function parseDevVars(text: string): Record<string, string> {
    return dotenv.parse(text);
}

/** A line without its ending, and the ending ("\n", "\r\n", "\r", or "" on a last line without one). */
interface Line {
    content: string;
    eol: string;
}

function splitLines(text: string): Line[] {
    const lines: Line[] = [];
    const re = /([^\r\n]*)(\r\n|\n|\r|$)/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null && m.index < text.length) {
        lines.push({ content: m[1], eol: m[2] });
        if (m[2] === "") break;
    }
    return lines;
}

const ASSIGNMENT = /^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.-]*)(\s*=)(.*)$/;

/** The line with its value replaced, keeping the value's quotes and whatever follows it (an inline comment). */
function replaceValue(prefix: string, rest: string, value: string): string {
    const quote = /^(\s*)(["'`])/.exec(rest);
    if (quote) {
        const q = quote[2];
        const close = rest.indexOf(q, quote[0].length);
        // A quote that does not close on this line (a multi-line value) is replaced whole.
        if (close >= 0) {
            const quoted = value.includes(q) || value.includes("\n") ? JSON.stringify(value) : `${q}${value}${q}`;
            return prefix + quote[1] + quoted + rest.slice(close + 1);
        }
        return prefix + quote[1] + JSON.stringify(value);
    }
    // Unquoted, dotenv ends the value at the first `#` and trims it: only the trimmed span is replaced.
    const hash = rest.indexOf("#");
    const valuePart = hash >= 0 ? rest.slice(0, hash) : rest;
    const core = valuePart.trim();
    // An empty value is written right after `=`, before the whitespace that preceded the comment.
    const lead = core ? /^\s*/.exec(valuePart)![0] : "";
    const trail = valuePart.slice(lead.length + core.length);
    const written = /[\s#"'`=\\]/.test(value) ? JSON.stringify(value) : value;
    return prefix + lead + written + trail + rest.slice(valuePart.length);
}

/** Sets each key (replacing the value of its every active line in place, or appending it) and returns the new text. */
export function updateDevVars(text: string, updates: Record<string, string>): string {
    const lines = splitLines(text);
    const written = new Set<string>();
    for (const line of lines) {
        const m = ASSIGNMENT.exec(line.content);
        // Every active occurrence is rewritten: dotenv lets the last one win.
        if (m && Object.prototype.hasOwnProperty.call(updates, m[2])) {
            line.content = replaceValue(m[1] + m[2] + m[3], m[4], updates[m[2]]);
            written.add(m[2]);
        }
    }
    const missing = Object.entries(updates).filter(([key]) => !written.has(key));
    if (missing.length) {
        // Appended lines end as the file's last ended line does.
        const eol = [...lines].reverse().find((l) => l.eol)?.eol ?? "\n";
        const last = lines[lines.length - 1];
        if (last && !last.eol) last.eol = eol;
        for (const [key, value] of missing) lines.push({ content: replaceValue(`${key}=`, "", value), eol });
    }
    return lines.map((l) => l.content + l.eol).join("");
}
