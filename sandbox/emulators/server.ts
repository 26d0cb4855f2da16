// The HTTP plumbing both emulators share: JSON bodies, a request log the tests
// can assert on, and fault injection (status codes, delays, dropped connections).
import * as http from "node:http";
import { AddressInfo } from "node:net";

export interface FaultRule {
    /** HTTP method to match; any when absent. */
    method?: string;
    /** Substring or regex matched against the pathname; any when absent. */
    path?: string | RegExp;
    /** Answer with this status instead of handling the request. */
    status?: number;
    /** JSON body sent with `status` (default `{"error":"injected fault"}`). */
    body?: unknown;
    /** Wait this long first; the request is then handled normally unless `status` or `drop` is set. */
    delayMs?: number;
    /** Destroy the socket without answering. */
    drop?: boolean;
    /** Handle the request, then destroy the socket instead of answering (the server acted, the client never hears). */
    dropAfter?: boolean;
    /** Only requests whose parsed JSON body passes this (e.g. one caller's provision among several). */
    when?: (body: unknown) => boolean;
    /** How many matching requests the rule applies to (default 1). */
    times?: number;
    /** Hold the request until the test releases it (then handle it as the rule says). */
    hold?: Hold;
}

/** Holds a request in flight: a test acts (e.g. interrupts the client) while it is held, then releases it. */
export class Hold {
    private releaseFn!: () => void;
    private arrivedFn!: () => void;
    private handledFn!: () => void;
    private readonly released = new Promise<void>((resolve) => (this.releaseFn = resolve));
    /** Resolves when a matching request has arrived and is being held. */
    readonly arrived = new Promise<void>((resolve) => (this.arrivedFn = resolve));
    /** Resolves once the released request was handled (answered, or its client gone). */
    readonly handled = new Promise<void>((resolve) => (this.handledFn = resolve));

    release(): void {
        this.releaseFn();
    }

    /** @internal the server's side */
    async enter(): Promise<void> {
        this.arrivedFn();
        await this.released;
    }

    /** @internal */
    leave(): void {
        this.handledFn();
    }
}

export interface RequestLogEntry {
    method: string;
    path: string;
    query: Record<string, string>;
    body: unknown;
    status: number;
    headers: Record<string, string>;
    at: number;
    /** True when a fault rule answered (or dropped) this request. */
    faulted: boolean;
}

export interface JsonReply {
    status: number;
    body?: unknown;
    headers?: Record<string, string>;
}

export interface IncomingJson {
    method: string;
    path: string;
    query: Record<string, string>;
    headers: http.IncomingHttpHeaders;
    /** Parsed JSON body; `undefined` when empty, the raw text when it is not JSON. */
    body: unknown;
    rawBody: string;
}

export type Handler = (req: IncomingJson) => Promise<JsonReply>;

/** Headers whose values are credentials: logged as "<redacted>". */
const SECRET_HEADERS = new Set(["authorization", "x-internal-api-key", "fly-machine-lease-nonce"]);

export class EmulatorServer {
    readonly requests: RequestLogEntry[] = [];
    private faults: Array<FaultRule & { remaining: number }> = [];
    private readonly sockets = new Set<import("node:net").Socket>();
    private server!: http.Server;
    url = "";

    constructor(private readonly handler: Handler) {}

    async listen(port = 0): Promise<string> {
        this.server = http.createServer((req, res) => void this.serve(req, res));
        this.server.on("connection", (s) => {
            this.sockets.add(s);
            s.on("close", () => this.sockets.delete(s));
        });
        await new Promise<void>((resolve, reject) => {
            this.server.once("error", reject);
            this.server.listen(port, "127.0.0.1", () => resolve());
        });
        const { port: bound } = this.server.address() as AddressInfo;
        this.url = `http://127.0.0.1:${bound}`;
        return this.url;
    }

    inject(rule: FaultRule): void {
        this.faults.push({ ...rule, remaining: rule.times ?? 1 });
    }

    clearFaults(): void {
        this.faults = [];
    }

    async close(): Promise<void> {
        for (const s of this.sockets) s.destroy();
        await new Promise<void>((resolve) => this.server.close(() => resolve()));
    }

    private takeFault(method: string, path: string, body: unknown): FaultRule | undefined {
        const rule = this.faults.find(
            (f) =>
                f.remaining > 0 &&
                (!f.method || f.method.toUpperCase() === method) &&
                (!f.path || (typeof f.path === "string" ? path.includes(f.path) : f.path.test(path))) &&
                (!f.when || f.when(body)),
        );
        if (rule) rule.remaining -= 1;
        return rule;
    }

    private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const url = new URL(req.url ?? "/", "http://127.0.0.1");
        const method = (req.method ?? "GET").toUpperCase();
        const rawBody = await readBody(req);
        let body: unknown = undefined;
        if (rawBody.length > 0) {
            try {
                body = JSON.parse(rawBody);
            } catch {
                body = rawBody;
            }
        }
        const entry: RequestLogEntry = {
            method,
            path: url.pathname,
            query: Object.fromEntries(url.searchParams),
            body,
            status: 0,
            headers: redactHeaders(req.headers),
            at: Date.now(),
            faulted: false,
        };
        this.requests.push(entry);

        const fault = this.takeFault(method, url.pathname, body);
        try {
            await this.answer(req, res, entry, fault, rawBody, body);
        } finally {
            fault?.hold?.leave();
        }
    }

    private async answer(
        req: http.IncomingMessage,
        res: http.ServerResponse,
        entry: RequestLogEntry,
        fault: FaultRule | undefined,
        rawBody: string,
        body: unknown,
    ): Promise<void> {
        if (fault?.hold) await fault.hold.enter();
        if (fault?.delayMs) await sleep(fault.delayMs);
        if (fault?.drop) {
            entry.faulted = true;
            req.socket.destroy();
            return;
        }
        if (fault?.status) {
            entry.faulted = true;
            entry.status = fault.status;
            sendJson(res, { status: fault.status, body: fault.body ?? { error: "injected fault" } });
            return;
        }

        let reply: JsonReply;
        try {
            reply = await this.handler({ method: entry.method, path: entry.path, query: entry.query, headers: req.headers, body, rawBody });
        } catch (err) {
            reply = { status: 500, body: { error: err instanceof Error ? err.message : String(err) } };
        }
        entry.status = reply.status;
        if (fault?.dropAfter) {
            entry.faulted = true;
            req.socket.destroy();
            return;
        }
        sendJson(res, reply);
    }
}

function redactHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) {
        if (v === undefined) continue;
        out[k] = SECRET_HEADERS.has(k) ? "<redacted>" : Array.isArray(v) ? v.join(", ") : v;
    }
    return out;
}

function sendJson(res: http.ServerResponse, reply: JsonReply): void {
    if (res.destroyed) return;
    const text = reply.body === undefined ? "" : JSON.stringify(reply.body);
    res.writeHead(reply.status, { "content-type": "application/json", ...(reply.headers ?? {}) });
    res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

/**
 * What every emulator shares: one EmulatorServer (request log, fault injection) and the
 * timers that stand in for background work (alarms, pulls), all cancelled by close().
 * Subclasses route requests in `handle` and add their own teardown in `onClose`.
 */
export abstract class Emulator {
    protected readonly server: EmulatorServer;
    private readonly timers = new Set<NodeJS.Timeout>();
    protected closed = false;

    protected constructor() {
        this.server = new EmulatorServer((req) => this.handle(req));
    }

    protected abstract handle(req: IncomingJson): Promise<JsonReply>;

    /** Extra teardown after the timers are cancelled and before the server closes. */
    protected async onClose(): Promise<void> {}

    get url(): string {
        return this.server.url;
    }

    get requests(): RequestLogEntry[] {
        return this.server.requests;
    }

    inject(rule: FaultRule): void {
        this.server.inject(rule);
    }

    clearFaults(): void {
        this.server.clearFaults();
    }

    async close(): Promise<void> {
        this.closed = true;
        for (const t of this.timers) clearTimeout(t);
        this.timers.clear();
        await this.onClose();
        await this.server.close();
    }

    /** Runs `fn` after `ms` unless close() came first; its errors are the emulator's own business. */
    protected later(ms: number, fn: () => unknown): void {
        const t = setTimeout(() => {
            this.timers.delete(t);
            if (!this.closed)
                void Promise.resolve()
                    .then(fn)
                    .catch(() => undefined);
        }, ms);
        this.timers.add(t);
    }
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `predicate` to hold, checking every `stepMs`, for at most `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
        if (Date.now() >= deadline) return false;
        await sleep(stepMs);
    }
    return true;
}
