// Macaroon tokens sent as Bearer fail with "no tokens found in header", so the
// scheme depends on the token's prefix.

/** The Authorization header value for a Fly API token. */
export function flyAuthorizationHeader(token: string): string {
    const t = token.trim();
    if (/^(Bearer|FlyV1)\s/i.test(t)) return t;
    if (/^fm[12]/.test(t)) return `FlyV1 ${t}`;
    return `Bearer ${t}`;
}
