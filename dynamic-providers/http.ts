// The one HTTP helper the clients share: undici with explicit timeouts, and
// retries with backoff for answers that mean "not processed, try again".
// Everything here is plain functions and literals: providers that use it are
// serialized into the Pulumi state, where agents, Maps and classes do not survive.
import { request } from "undici";

export interface HttpRequest {
    method: "GET" | "POST" | "PUT" | "DELETE";
    url: string;
    headers?: Record<string, string>;
    body?: unknown;
    /** Time allowed for the response headers and body (long-poll calls raise it). */
    timeoutMs?: number;
    /** Attempts in all, for retryable statuses and network errors. */
    attempts?: number;
    /** First backoff delay; doubles each retry. */
    backoffMs?: number;
}

export interface HttpResponse {
    status: number;
    body: any;
    headers: Record<string, string>;
}

/** Statuses that say the server did not process the request. */
export const RETRYABLE_STATUSES = [429, 502, 503];

/** An error from the network layer (no HTTP answer), with undici's or Node's code. */
export interface NetworkError extends Error {
    code: string;
    url: string;
}

export function isNetworkError(err: unknown): err is NetworkError {
    return err instanceof Error && typeof (err as NetworkError).code === "string" && typeof (err as NetworkError).url === "string";
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function retryAfterMs(headers: Record<string, string>, fallback: number): number {
    const seconds = Number(headers["retry-after"]);
    return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, 10_000) : fallback;
}

/** Sends one JSON request; retries 429/502/503 and network errors, then returns the last answer or throws a NetworkError. */
export async function requestJson(req: HttpRequest): Promise<HttpResponse> {
    const attempts = Math.max(1, req.attempts ?? 4);
    let delay = req.backoffMs ?? 250;
    for (let attempt = 1; ; attempt++) {
        let response: HttpResponse | undefined;
        try {
            const res = await request(req.url, {
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
            response = { status: res.statusCode, body, headers };
        } catch (err) {
            if (attempt >= attempts) {
                const e = err as Error & { code?: string; cause?: { code?: string } };
                const code = e.code ?? e.cause?.code ?? "ENETWORK";
                throw Object.assign(new Error(`${req.method} ${req.url} failed: ${e.message} (${code})`), { code, url: req.url });
            }
        }
        if (response && (!RETRYABLE_STATUSES.includes(response.status) || attempt >= attempts)) return response;
        await sleep(response ? retryAfterMs(response.headers, delay) : delay);
        delay *= 2;
    }
}

/** The `error` field of a JSON error body, or the raw text. */
export function errorText(body: unknown): string {
    if (body && typeof body === "object" && "error" in body) return String((body as { error: unknown }).error);
    if (typeof body === "string") return body.slice(0, 300);
    return JSON.stringify(body ?? null);
}
