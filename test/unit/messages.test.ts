// Messages from the cause: docker's login errors and non-JSON bodies, as real tools print them.
import * as assert from "node:assert/strict";
import { errorText, summarizeText } from "../../dynamic-providers/http";
import { classifyLoginFailure, loginFailureMessage } from "../../lib/registryLogin";

describe("registry login failures, classified from docker's error", () => {
    const samples: Array<[string, ReturnType<typeof classifyLoginFailure>]> = [
        ['Error response from daemon: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', "unreachable"],
        [
            'Error response from daemon: Get "https://no-such-host.invalid/v2/": dial tcp: lookup no-such-host.invalid on 10.255.255.53:53: no such host',
            "unreachable",
        ],
        ['Error response from daemon: Get "https://registry.example/v2/": x509: certificate signed by unknown authority', "tls"],
        ['Error response from daemon: Get "https://127.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client', "tls"],
        ['Error response from daemon: Get "https://registry.fly.io/v2/": unauthorized: not allowed to access repository', "auth"],
        ["Error response from daemon: login attempt to https://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized", "auth"],
    ];
    for (const [stderr, kind] of samples) it(`${kind}: ${stderr.slice(0, 70)}…`, () => assert.equal(classifyLoginFailure(stderr), kind));

    it("does not call a registry that is down a refused token, and names the app it knows", () => {
        const down = loginFailureMessage("registry.fly.io", "kiloclaw-dev", samples[0][0], "pulling the prebuilt image");
        assert.match(down, /Cannot reach the registry registry\.fly\.io/);
        assert.doesNotMatch(down, /refused the Fly token/);
        const refused = loginFailureMessage("registry.fly.io", "kiloclaw-dev", samples[4][0], "pulling the prebuilt image");
        assert.match(refused, /`fly tokens deploy --app kiloclaw-dev`/);
    });
});

describe("non-JSON bodies in one line", () => {
    it("sums up a proxy's HTML error page by its title, and cuts other text to one line", () => {
        const html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>";
        assert.equal(summarizeText(html), 'an HTML page ("502 Bad Gateway"), not the service\'s JSON');
        assert.equal(errorText("line one\nline two"), "line one line two");
        assert.ok(!summarizeText("x".repeat(1000)).includes("\n"));
        assert.equal(errorText({ error: "GatewayControllerError: Instance not provisioned" }), "GatewayControllerError: Instance not provisioned");
    });
});
