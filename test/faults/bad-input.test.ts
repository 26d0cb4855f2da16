// Bad input, as a new user gives it: each case runs through the whole program (in
// process, under Pulumi's mocks, with the preflight against real local servers where
// the case is a service's answer). Each must end in one message that names the fix,
// register no resource (so nothing is built, pushed, started or recorded in the
// state), and leave the checkout — .dev.vars included — byte for byte as it was.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { resolveSettings } from "../../lib/config";
import { preflightReport, verifyServices } from "../../preflight";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import { fakeCheckout, findResource, runProgram } from "../program-harness";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c20";
const SECRETS = { "kiloclaw:internalApiKey": "internal-secret-from-dev-vars", "kiloclaw:flyApiToken": "fly-token-from-dev-vars" };
const GOOD_DOCKERFILE = "FROM debian:bookworm-slim\nRUN npm install -g openclaw@2026.2.9 && openclaw --version\nEXPOSE 18789\n";

/** Every file and link under a directory, with its bytes (or link target) and kind: the checkout as the user has it. */
function snapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (d: string) => {
        for (const name of fs.readdirSync(d)) {
            const p = path.join(d, name);
            const st = fs.lstatSync(p);
            const rel = path.relative(dir, p);
            if (st.isSymbolicLink()) out[rel] = `link → ${fs.readlinkSync(p)}`;
            else if (st.isDirectory()) {
                out[rel] = `dir ${(st.mode & 0o777).toString(8)}`;
                walk(p);
            } else out[rel] = `file ${(st.mode & 0o777).toString(8)} ${fs.readFileSync(p).toString("base64")}`;
        }
    };
    walk(dir);
    return out;
}

interface Case {
    name: string;
    /** The checkout to start from (default: a good one). */
    checkout?: { dockerfile?: string; devVars?: string };
    /** Breaks the checkout before the run. */
    setup?: (kiloclawDir: string, root: string) => void | Promise<void>;
    config: (kiloclawDir: string, root: string) => Record<string, string>;
    secretKeys?: string[];
    /** The message must name the fix (a command or the file and line to change). */
    fix: RegExp;
    /** Wrong follow-on messages the message must not carry. */
    not?: RegExp;
}

const base = (dir: string) => ({ "kiloclaw:kiloclawDir": dir, "kiloclaw:userId": USER, ...SECRETS });
let worker: WorkerEmulator | undefined;
let proxy: http.Server | undefined;

const CASES: Case[] = [
    // ---- config and files ----
    {
        name: "userId that is not a UUID",
        config: (d) => ({ ...base(d), "kiloclaw:userId": "not a uuid" }),
        fix: /kiloclaw:userId "not a uuid" is not a userId.*`pulumi config set kiloclaw:userId/,
    },
    {
        name: "instanceId that is base64 of any text",
        config: (d) => ({ "kiloclaw:kiloclawDir": d, ...SECRETS, "kiloclaw:instanceId": Buffer.from("hello world").toString("base64") }),
        fix: /decodes to "hello world", which is not a userId.*`pulumi config set kiloclaw:instanceId/,
    },
    {
        name: "instanceId that is not base64",
        config: (d) => ({ "kiloclaw:kiloclawDir": d, ...SECRETS, "kiloclaw:instanceId": "%%%" }),
        fix: /not base64: copy the Instance ID/,
    },
    {
        name: "no userId nor instanceId",
        config: (d) => ({ "kiloclaw:kiloclawDir": d, ...SECRETS }),
        fix: /`pulumi config set kiloclaw:userId <your userId>`/,
    },
    {
        name: "kiloclawDir not set",
        config: () => ({ "kiloclaw:userId": USER, ...SECRETS }),
        fix: /kiloclaw:kiloclawDir is not set: `pulumi config set kiloclaw:kiloclawDir/,
    },
    {
        name: "kiloclawDir missing (with a registryApp that would add a follow-on)",
        config: (d) => ({ ...base(path.join(d, "nope")), "kiloclaw:registryApp": "kiloclaw-dev" }),
        fix: /kiloclaw:kiloclawDir .*nope does not exist: point it at the kiloclaw\/ folder.*`pulumi config set kiloclaw:kiloclawDir/,
        not: /registryApp|\.dev\.vars|Dockerfile/,
    },
    {
        name: "kiloclawDir is a file",
        config: (d) => ({ ...base(path.join(d, "Dockerfile")), "kiloclaw:registryApp": "kiloclaw-dev" }),
        fix: /is a file, not a directory.*`pulumi config set kiloclaw:kiloclawDir/,
        not: /registryApp|\.dev\.vars/,
    },
    {
        name: "kiloclawDir is the checkout root, not kiloclaw/",
        config: (_d, root) => ({ ...base(root), "kiloclaw:registryApp": "kiloclaw-dev" }),
        fix: /has neither a Dockerfile nor a \.dev\.vars: is it cloud\/kiloclaw\?.*`pulumi config set kiloclaw:kiloclawDir/,
        not: /registryApp/,
    },
    {
        name: ".dev.vars missing (with a registryApp that would add a follow-on)",
        setup: (d) => fs.rmSync(path.join(d, ".dev.vars")),
        config: (d) => ({ ...base(d), "kiloclaw:registryApp": "kiloclaw-dev" }),
        fix: /\.dev\.vars does not exist: copy \.dev\.vars\.example to \.dev\.vars/,
        not: /registryApp/,
    },
    {
        name: ".dev.vars is a directory (EISDIR)",
        setup: (d) => {
            fs.rmSync(path.join(d, ".dev.vars"));
            fs.mkdirSync(path.join(d, ".dev.vars"));
        },
        config: base,
        fix: /kiloclaw\/\.dev\.vars is a directory, not a file: copy \.dev\.vars\.example/,
    },
    {
        name: 'empty secret (config set --secret … "")',
        config: (d) => ({ ...base(d), "kiloclaw:flyApiToken": "" }),
        secretKeys: ["kiloclaw:flyApiToken"],
        fix: /kiloclaw:flyApiToken is set but empty: `pulumi config set --secret kiloclaw:flyApiToken/,
    },
    {
        name: "empty secret in .dev.vars",
        checkout: { devVars: "INTERNAL_API_SECRET=k\nFLY_API_TOKEN=\nFLY_REGISTRY_APP=kiloclaw-dev\n" },
        config: (d) => ({ "kiloclaw:kiloclawDir": d, "kiloclaw:userId": USER }),
        fix: /kiloclaw:flyApiToken is not set and FLY_API_TOKEN in .*\.dev\.vars is empty: `pulumi config set --secret kiloclaw:flyApiToken/,
    },
    {
        name: "two different openclaw pins",
        checkout: { dockerfile: "FROM debian\nRUN npm install -g openclaw@2026.2.9\nRUN npm install -g \\\n    openclaw@2026.2.10\n" },
        config: base,
        fix: /2 different openclaw pins \(line 2: openclaw@2026\.2\.9, line 4: openclaw@2026\.2\.10\)\. Keep exactly one/,
    },
    {
        name: "openclaw pinned to latest",
        checkout: { dockerfile: "FROM debian\nRUN npm install -g openclaw@latest\n" },
        config: base,
        fix: /Dockerfile:2: `openclaw@latest` is not an exact version.*Pin an exact x\.y\.z/,
    },
    {
        name: "no openclaw pin",
        checkout: { dockerfile: "FROM debian\nRUN echo hi\n" },
        config: base,
        fix: /no `npm install -g openclaw@x\.y\.z` line found.*Pin the OpenClaw version/,
    },
    {
        name: "Dockerfile syntax error (FROMM)",
        checkout: { dockerfile: "FROMM debian:bookworm-slim\nRUN npm install -g openclaw@2026.2.9\n" },
        config: base,
        fix: /Dockerfile:1: unknown instruction `FROMM`.*fix the typo/,
    },
    {
        name: "missing COPY source",
        checkout: { dockerfile: `${GOOD_DOCKERFILE}COPY no-such-file.sh /usr/local/bin/\n` },
        config: base,
        fix: /Dockerfile:4: COPY source "no-such-file\.sh"/,
    },
    {
        name: "registryApp the worker does not pull from",
        config: (d) => ({ ...base(d), "kiloclaw:registryApp": "other-app" }),
        fix: /`pulumi config rm kiloclaw:registryApp`/,
    },
    {
        name: "imageRef without a tag",
        config: (d) => ({ ...base(d), "kiloclaw:imageRef": "registry.fly.io/kiloclaw-dev" }),
        fix: /kiloclaw:imageRef .* is not <registry>\/<app>:<tag>/,
    },
    {
        name: "openclawVersion not x.y.z",
        config: (d) => ({ ...base(d), "kiloclaw:openclawVersion": "latest" }),
        fix: /kiloclaw:openclawVersion "latest" is not an exact x\.y\.z/,
    },
    {
        name: "a timeout that is not positive",
        config: (d) => ({ ...base(d), "kiloclaw:warmTimeoutSeconds": "0" }),
        fix: /kiloclaw:warmTimeoutSeconds must be a positive number/,
    },
];

describe("bad input: one clear error that names the fix, nothing of the user's changed", function () {
    this.timeout(120_000);
    let tried = 0;
    let clear = 0;
    let changed = 0;

    before(async () => {
        const workerCheckout = fakeCheckout();
        worker = await WorkerEmulator.start({ devVarsPath: path.join(workerCheckout.kiloclawDir, ".dev.vars"), flyApiUrl: "http://127.0.0.1:9" });
        proxy = http.createServer((_req, res) => {
            res.writeHead(502, { "content-type": "text/html" });
            res.end(
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
            );
        });
        await new Promise<void>((resolve) => proxy!.listen(0, "127.0.0.1", resolve));
    });

    after(async () => {
        await worker?.close();
        await new Promise((resolve) => proxy?.close(resolve));
        console.log(`      bad inputs tried: ${tried}, clear errors: ${clear}, user files changed: ${changed}`);
    });

    for (const c of CASES) {
        it(c.name, async () => {
            tried++;
            const { kiloclawDir, root } = fakeCheckout(c.checkout ?? {});
            await c.setup?.(kiloclawDir, root);
            const before = snapshot(root);
            const run = await runProgram({ config: c.config(kiloclawDir, root), secretKeys: c.secretKeys });
            const after = snapshot(root);
            if (JSON.stringify(after) !== JSON.stringify(before)) changed++;
            assert.deepEqual(after, before, "the checkout (.dev.vars included) is unchanged");
            assert.ok(run.error, "the program stopped");
            // Nothing registered: no image built, no container run, nothing pushed or started, nothing in the stack's state.
            assert.deepEqual(
                run.resources.filter((r) => r.type !== "pulumi:pulumi:Stack").map((r) => r.type),
                [],
            );
            assert.match(run.error, c.fix);
            if (c.not) assert.doesNotMatch(run.error, c.not);
            // One message, no stack trace: a configuration problem is a RunError raised before the first resource.
            assert.doesNotMatch(run.error.split("\n")[0], /^\s+at /);
            assert.ok(!run.error.includes("\u001b["), "no ANSI colour codes");
            clear++;
        });
    }

    // Services answering badly: the program's preflight (the step that gates the first resource) against real local servers.
    const services: Array<{ name: string; workerUrl: () => string; key: string; fix: RegExp; not?: RegExp }> = [
        {
            name: "wrong internal API key (the worker refuses it)",
            workerUrl: () => worker!.url,
            key: "wrong-key",
            fix: /refused the internal API key.*`pulumi config set --secret kiloclaw:internalApiKey/s,
        },
        {
            name: "a proxy answers the worker's URL with an HTML 502",
            workerUrl: () => `http://127.0.0.1:${(proxy!.address() as { port: number }).port}`,
            key: "internal-secret-from-dev-vars",
            fix: /127\.0\.0\.1:\d+\/api\/platform\/status answered 502 with an HTML page \("502 Bad Gateway"\).*check kiloclaw:workerUrl/s,
            not: /<html|complete \.dev\.vars/,
        },
    ];
    for (const c of services) {
        it(c.name, async () => {
            tried++;
            const { root } = fakeCheckout();
            const before = snapshot(root);
            const report = preflightReport(
                await verifyServices({ workerUrl: c.workerUrl(), internalApiKey: c.key, userId: USER, checkDocker: false }),
            );
            if (JSON.stringify(snapshot(root)) !== JSON.stringify(before)) changed++;
            assert.ok(report);
            assert.match(report, c.fix);
            if (c.not) assert.doesNotMatch(report, c.not);
            assert.match(report, /nothing was built or changed/);
            clear++;
        });
    }

    it("an unreadable .dev.vars (EACCES) names the path (as root the file stays readable, so its read is made to fail)", () => {
        tried++;
        const denied = Object.assign(new Error("EACCES: permission denied, open"), { code: "EACCES" });
        const dir = path.resolve("/checkout/kiloclaw");
        const read = (file: string) => {
            if (file.endsWith(".dev.vars")) throw denied;
            return file.endsWith("Dockerfile") ? GOOD_DOCKERFILE : undefined;
        };
        assert.throws(
            () => resolveSettings({ kiloclawDir: dir, userId: USER }, read),
            (err: Error) =>
                /\/checkout\/kiloclaw\/\.dev\.vars cannot be read \(permission denied\): `chmod u\+r \/checkout\/kiloclaw\/\.dev\.vars`/.test(
                    err.message,
                ),
        );
        clear++;
    });

    it("is not refused: a pin on a continuation line is read as Docker joins it", async () => {
        const { kiloclawDir } = fakeCheckout({
            dockerfile: "FROM debian\nRUN npm install -g \\\n    openclaw@2026.2.9 \\\n  && openclaw --version\n",
        });
        const run = await runProgram({ config: { ...base(kiloclawDir), "kiloclaw:warm": "false" } });
        assert.equal(run.error, undefined);
        assert.equal(findResource(run, "kiloclaw:index:WorkerImageVersion").inputs.openclawVersion, "2026.2.9");
    });
});
