// The one HTTP helper the clients share: undici with per-call timeouts, and undici's own
// RetryAgent told what may be re-sent. The agent is made inside each call: providers that
// use this module are serialized into the Pulumi state, where agents do not survive.
import type { Dispatcher } from "undici";

export interface HttpRequest {
    method: "GET" | "POST" | "PUT" | "DELETE";
    url: string;
    headers?: Record<string, string>;
    body?: unknown;
    /** Time allowed for the response headers, and again for the body (long-poll calls raise it). */
    timeoutMs?: number;
    /**
     * May the request be sent again after its answer was lost (timeout, dropped connection)?
     * Defaults to true for GET/PUT/DELETE and false for POST. A non-idempotent request is
     * re-sent only when the server said it did not process it (429/503), or when no
     * connection was made at all.
     */
    idempotent?: boolean;
    /** Attempts in all (default 4). */
    attempts?: number;
    /** First backoff delay; doubles each retry. A Retry-After header wins. */
    backoffMs?: number;
}

export interface HttpResponse {
    status: number;
    body: unknown;
    headers: Record<string, string>;
    /** The URL asked, for messages about an answer that is not the service's own (a proxy's HTML page). */
    url?: string;
}

/** Statuses that say the server did not process the request (502 only for idempotent requests: a proxy may have passed it on). */
export const RETRYABLE_STATUSES = [429, 502, 503];
const NOT_PROCESSED_STATUSES = [429, 503];

/** Failures before any byte reached the server: safe to retry for every method. */
const NO_CONNECTION_CODES = ["ECONNREFUSED", "ENOTFOUND", "ENETDOWN", "ENETUNREACH", "EHOSTDOWN", "EHOSTUNREACH", "UND_ERR_CONNECT_TIMEOUT"];
/** Failures after the request may have been sent: the answer is lost, the server may have acted. */
const LOST_ANSWER_CODES = ["ECONNRESET", "EPIPE", "UND_ERR_SOCKET"];
/** Timeouts are never retried: the caller's deadline, not this helper, decides what comes next. */
const TIMEOUT_CODES = ["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"];

/** An error from the network layer (no HTTP answer), with undici's or Node's code. */
export interface NetworkError extends Error {
    code: string;
    url: string;
    /**
     * True when the request may have reached the server (timeout, dropped connection): it may
     * have acted. Read the state before doing anything again. False: nothing was sent.
     */
    answerLost: boolean;
}

export function isNetworkError(err: unknown): err is NetworkError {
    return err instanceof Error && typeof (err as NetworkError).code === "string" && typeof (err as NetworkError).url === "string";
}

/** A network error after which the server may have acted on the request (see NetworkError.answerLost). */
export function isLostAnswer(err: unknown): err is NetworkError {
    return isNetworkError(err) && err.answerLost;
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether a request may be re-sent after a lost answer, by its own flag or by HTTP method semantics. */
function isIdempotent(req: HttpRequest): boolean {
    return req.idempotent ?? req.method !== "POST";
}

/**
 * undici, required on the first request: the serialized providers then load it only when they talk HTTP (a
 * no-op preview's diffs do not; loading it costs ~0.1 CPU-second per dynamic-provider start).
 */
function undici(): typeof import("undici") {
    return require("undici");
}

/** The dispatcher for one call: retries what this request allows, nothing else. */
function retryingDispatcher(req: HttpRequest): Dispatcher {
    const { Agent, RetryAgent } = undici();
    const idempotent = isIdempotent(req);
    return new RetryAgent(new Agent(), {
        // Hand the last answer back after the retries instead of throwing: callers explain it.
        throwOnError: false,
        maxRetries: Math.max(1, req.attempts ?? 4) - 1,
        minTimeout: req.backoffMs ?? 250,
        timeoutFactor: 2,
        maxTimeout: 10_000,
        retryAfter: true,
        methods: [req.method],
        statusCodes: idempotent ? RETRYABLE_STATUSES : NOT_PROCESSED_STATUSES,
        errorCodes: idempotent ? [...NO_CONNECTION_CODES, ...LOST_ANSWER_CODES] : NO_CONNECTION_CODES,
    });
}

function networkError(req: HttpRequest, err: unknown): NetworkError {
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code ?? "ENETWORK";
    const answerLost = LOST_ANSWER_CODES.includes(code) || TIMEOUT_CODES.includes(code);
    return Object.assign(new Error(`${req.method} ${req.url} failed: ${e.message} (${code})`), { code, url: req.url, answerLost });
}

/**
 * Sends one JSON request and returns the answer (also 4xx/5xx ones, after the retries the request
 * allows), or throws a NetworkError when no answer came.
 */
export async function requestJson(req: HttpRequest): Promise<HttpResponse> {
    const dispatcher = retryingDispatcher(req);
    try {
        const res = await undici().request(req.url, {
            dispatcher,
            method: req.method,
            headers: {
                accept: "application/json",
                ...(req.body === undefined ? {} : { "content-type": "application/json" }),
                ...req.headers,
            },
            body: req.body === undefined ? undefined : JSON.stringify(req.body),
            headersTimeout: req.timeoutMs ?? 30_000,
            bodyTimeout: req.timeoutMs ?? 30_000,
        });
        const text = await res.body.text();
        let body: unknown = text;
        try {
            body = text ? JSON.parse(text) : undefined;
        } catch {
            // Not JSON: keep the text for the error message.
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) {
            if (typeof v === "string") headers[k] = v;
            else if (Array.isArray(v)) headers[k] = v.join(", ");
        }
        return { status: res.statusCode, body, headers, url: req.url };
    } catch (err) {
        throw networkError(req, err);
    } finally {
        await dispatcher.destroy();
    }
}

/** The `error` field of a JSON error body, or a one-line summary of a text body. */
export function errorText(body: unknown): string {
    if (body && typeof body === "object" && "error" in body) return String((body as { error: unknown }).error);
    if (typeof body === "string") return summarizeText(body);
    return JSON.stringify(body ?? null);
}

/** One line for a body that is not JSON: an HTML page by its title (a proxy's error page), other text collapsed and cut. */
export function summarizeText(text: string): string {
    if (/<(?:!doctype|html|head|body|title)\b/i.test(text)) {
        const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.replace(/\s+/g, " ").trim();
        const words = text
            .replace(/<(script|style)[\s\S]*?<\/\1>/gi, " ")
            .replace(/<[^>]*>/g, " ")
            .replace(/\s+/g, " ")
            .trim();
        return `an HTML page (${JSON.stringify((title || words).slice(0, 100))}), not the service's JSON`;
    }
    const line = text.replace(/\s+/g, " ").trim();
    return line.length > 160 ? `${line.slice(0, 160)}…` : line;
}
