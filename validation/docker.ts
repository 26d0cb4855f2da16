// The docker CLI as the validation uses it: every call can be aborted. An aborted
// call settles at once and its client is killed; nothing waits for that client to
// exit (an attached `docker run` client may never exit while its container lives).
// What the client started is removed by name (`docker rm -f`), not through it.
// Each client runs in its own process group: an interrupt sent to the validation's
// group (a terminal's Ctrl-C, `timeout`) reaches the validation alone, which stops the
// clients in order. Reached directly, a client would end first and its exit would read
// as a verdict (docker 28's `docker wait` exits 143 as if its container had exited).
import { spawn } from "node:child_process";

export interface DockerResult {
    code: number | null;
    stdout: string;
    stderr: string;
    /** stdout and stderr interleaved in arrival order (what `2>&1` would show). */
    combined: string;
    /** True when the call was aborted before docker finished. */
    aborted: boolean;
}

export interface DockerCallOptions {
    signal?: AbortSignal;
    /** Keep stdout as raw bytes (docker cp … - writes a tar stream). */
    binary?: boolean;
}

/** Runs `docker <args>` (found on PATH); never throws for a non-zero exit. */
export function docker(args: string[], opts: DockerCallOptions = {}): Promise<DockerResult & { bytes: Buffer }> {
    return new Promise((resolve, reject) => {
        const none = { code: null, stdout: "", stderr: "", combined: "", bytes: Buffer.alloc(0), aborted: true };
        if (opts.signal?.aborted) return resolve(none);
        const child = spawn("docker", args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        const both: Buffer[] = [];
        child.stdout.on("data", (b: Buffer) => (out.push(b), both.push(b)));
        child.stderr.on("data", (b: Buffer) => (err.push(b), both.push(b)));
        const onAbort = () => {
            child.kill("SIGKILL");
            resolve(none);
        };
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        child.on("error", (e) => {
            opts.signal?.removeEventListener("abort", onAbort);
            reject(new Error(`cannot run docker: ${e.message}`));
        });
        child.on("close", (code) => {
            opts.signal?.removeEventListener("abort", onAbort);
            const bytes = Buffer.concat(out);
            resolve({
                code,
                stdout: opts.binary ? "" : bytes.toString("utf8"),
                stderr: Buffer.concat(err).toString("utf8"),
                combined: opts.binary ? Buffer.concat(err).toString("utf8") : Buffer.concat(both).toString("utf8"),
                bytes,
                aborted: opts.signal?.aborted ?? false,
            });
        });
    });
}

/** The first regular file in a tar stream (what `docker cp CONTAINER:FILE -` prints). */
export function firstFileInTar(tar: Buffer): { name: string; content: Buffer } | undefined {
    for (let offset = 0; offset + 512 <= tar.length;) {
        const header = tar.subarray(offset, offset + 512);
        if (header.every((b) => b === 0)) return undefined;
        const field = (start: number, length: number) =>
            header
                .subarray(start, start + length)
                .toString("latin1")
                .replace(/\0.*$/s, "");
        const size = parseInt(field(124, 12).trim() || "0", 8);
        const type = field(156, 1) || "0";
        const body = offset + 512;
        if (type === "0") return { name: field(0, 100), content: tar.subarray(body, body + size) };
        offset = body + Math.ceil(size / 512) * 512;
    }
    return undefined;
}

/** The last lines of a text, each indented, for a failure's details. */
export function tail(text: string, lines = 30): string[] {
    return text
        .replace(/\s+$/, "")
        .split(/\r?\n/)
        .slice(-lines)
        .filter((l, i, all) => all.length > 1 || l !== "");
}
