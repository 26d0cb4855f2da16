// Why a `docker login` failed, read from docker's own error rather than guessed: a
// registry that cannot be reached or whose TLS fails is not a refused token.

export type LoginFailure = "auth" | "tls" | "unreachable" | "other";

/** Sorts docker's login error; TLS and network errors first, since their text may mention a 401 endpoint. */
export function classifyLoginFailure(stderr: string): LoginFailure {
    const text = stderr.toLowerCase();
    if (/x509:|tls:|certificate|server gave http response to https client|first record does not look like a tls handshake/.test(text)) return "tls";
    if (
        /connection refused|no such host|i\/o timeout|network is unreachable|server misbehaving|connection reset|no route to host|timeout exceeded|context deadline exceeded/.test(
            text,
        )
    ) {
        return "unreachable";
    }
    if (/unauthorized|incorrect username or password|authentication required|\b401\b|denied/.test(text)) return "auth";
    return "other";
}

/** One message per cause, each with the next step; `app` is the Fly app the token must reach. */
export function loginFailureMessage(registryServer: string, app: string, stderr: string, purpose: string): string {
    const said = stderr.trim().split("\n").pop() ?? "";
    switch (classifyLoginFailure(stderr)) {
        case "unreachable":
            return (
                `Cannot reach the registry ${registryServer} to log in for ${purpose} (${said}). Check kiloclaw:registryServer ` +
                "and your network (for Fly: registry.fly.io), then run `pulumi up` again. The token was not tried."
            );
        case "tls":
            return (
                `The TLS connection to the registry ${registryServer} failed while logging in for ${purpose} (${said}). Check ` +
                "kiloclaw:registryServer names the registry's HTTPS address (a local registry without TLS must be in Docker's " +
                "insecure-registries). The token was not tried."
            );
        case "auth":
            return (
                `${registryServer} refused the Fly token (user x) for ${purpose}: ${said}. Make a fresh scoped token with ` +
                `\`fly tokens deploy --app ${app}\` and \`pulumi config set --secret kiloclaw:flyApiToken <token>\`.`
            );
        default:
            return `docker login ${registryServer} failed for ${purpose}: ${said}. Fix what docker says, then run \`pulumi up\` again.`;
    }
}
