// What a build consumes from its context (lib/dockerfileSources.ts) and the image tag hashed
// from it (lib/contextHash.ts), on small contexts and on the realistic kiloclaw checkout.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { hashBuildContext, imageTagForContext } from "../../lib/contextHash";
import { consumedInputs, parseDockerfileInputs } from "../../lib/dockerfileSources";
import { stageBuildContext } from "../../lib/stagedContext";
import { FIXTURE_IMAGE_FILES, materializeCheckout, touchWranglerState } from "../../sandbox/fixtures/checkout";
import { scratchDir } from "../scratch";

function tempContext(files: Record<string, string>): string {
    const dir = scratchDir("kiloclaw-ctx-");
    for (const [rel, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), content);
    }
    return dir;
}

const consumed = (dir: string, dockerfile?: string, args?: Record<string, string>) =>
    consumedInputs(dir, dockerfile, args).entries.map((e) => (e.kind === "file" ? e.path : `${e.path} (${e.kind})`));

describe("Dockerfile sources", () => {
    it("reads shell and JSON forms, several sources, flags, and skips --from and URLs", () => {
        const text = [
            "FROM base AS build",
            "COPY --chown=1000:1000 --chmod=755 a.js b.js /app/",
            'COPY ["with space.js", "c.js", "/app/"]',
            'COPY --link ["d.js", "/app/"]',
            "COPY --from=build /out /out",
            "COPY --from=node:22 /usr/local/bin/node /usr/local/bin/",
            "ADD https://example.com/tool.tgz /tmp/",
            "ADD git@github.com:org/repo.git /src",
            "ADD local.tgz /tmp/",
            "",
        ].join("\n");
        const inputs = parseDockerfileInputs(text);
        assert.deepEqual(
            inputs.contextSources.map((s) => `${s.line} ${s.keyword} ${s.pattern}`),
            ["2 COPY a.js", "2 COPY b.js", "3 COPY with space.js", "3 COPY c.js", "4 COPY d.js", "9 ADD local.tgz"],
        );
        assert.deepEqual(inputs.urls, ["https://example.com/tool.tgz", "git@github.com:org/repo.git"]);
    });

    it("follows line continuations, comments, the escape directive and here-documents", () => {
        const text = [
            "# escape=`",
            "FROM base",
            "# COPY commented.js /nowhere/",
            "COPY one.js `",
            "     # a comment inside the continuation",
            "     two.js /app/",
            'COPY ["three.js", `',
            '      "/app/"]',
            "COPY <<EOF /etc/motd",
            "hello from a here-document",
            "EOF",
            "",
        ].join("\n");
        assert.deepEqual(
            parseDockerfileInputs(text).contextSources.map((s) => `${s.line} ${s.pattern}`),
            ["4 one.js", "4 two.js", "7 three.js"],
        );
    });

    it("expands ARG and ENV variables, with --build-arg values overriding ARG defaults", () => {
        const text = "FROM base\nARG DIR=controller\nENV SKILLS=skills\nCOPY $DIR/ ${SKILLS}/ ${MISSING:-fallback}/ /app/\n";
        assert.deepEqual(
            parseDockerfileInputs(text).contextSources.map((s) => s.pattern),
            ["controller", "skills", "fallback"],
        );
        assert.deepEqual(
            parseDockerfileInputs(text, { DIR: "controller-v2", SKILLS: "ignored: not an ARG" }).contextSources.map((s) => s.pattern),
            ["controller-v2", "skills", "fallback"],
        );
    });

    it("scopes a global ARG to the stages that re-declare it", () => {
        const text = "ARG DIR=skills\nFROM base AS one\nARG DIR\nCOPY $DIR/ /a/\nFROM base AS two\nCOPY ${DIR:-controller}/ /b/\n";
        assert.deepEqual(
            parseDockerfileInputs(text).contextSources.map((s) => s.pattern),
            ["skills", "controller"],
        );
        assert.deepEqual(
            parseDockerfileInputs(text, { DIR: "skills-v2" }).contextSources.map((s) => s.pattern),
            ["skills-v2", "controller"],
        );
    });

    it("keeps sources inside the context: leading / and .. cannot leave it", () => {
        const text = "FROM base\nCOPY /abs/x.js ../../up.js ./ /app/\n";
        assert.deepEqual(
            parseDockerfileInputs(text).contextSources.map((s) => s.pattern),
            ["abs/x.js", "up.js", "."],
        );
    });
});

describe("consumed files", () => {
    it("takes directories recursively and wildcards per path segment", () => {
        const dir = tempContext({
            Dockerfile: "FROM base\nCOPY skills/ /s/\nCOPY *.js /bin/\nCOPY conf/*/app.json /c/\nCOPY docs/**/*.md /d/\n",
            "skills/a/SKILL.md": "a",
            "skills/b/deep/SKILL.md": "b",
            "one.js": "1",
            "two.js": "2",
            "lib/nested.js": "not matched by *.js",
            "conf/x/app.json": "x",
            "conf/x/other.json": "no",
            "conf/y/z/app.json": "too deep for conf/*/app.json",
            "docs/guide.md": "g",
            "docs/a/b/c.md": "c",
            "unrelated.txt": "u",
        });
        assert.deepEqual(consumed(dir), [
            "conf/x/app.json",
            "docs/a/b/c.md",
            "docs/guide.md",
            "one.js",
            "skills/a/SKILL.md",
            "skills/b/deep/SKILL.md",
            "two.js",
        ]);
    });

    it("keeps symlinks as links and names an empty directory a source copies", () => {
        const dir = tempContext({ Dockerfile: "FROM base\nCOPY data/ /data/\nCOPY empty /empty\n", "data/real.txt": "r" });
        fs.symlinkSync("real.txt", path.join(dir, "data", "link.txt"));
        fs.mkdirSync(path.join(dir, "empty"));
        assert.deepEqual(consumed(dir), ["data/link.txt (symlink)", "data/real.txt", "empty (dir)"]);
    });

    it("applies .dockerignore, with ! exceptions, and COPY . takes what it lets through", () => {
        const dir = tempContext({
            Dockerfile: "FROM base\nCOPY . /app/\n",
            ".dockerignore": "node_modules\n*.log\n.dev.vars\ndocs/**\n!docs/keep.md\n",
            "node_modules/x/index.js": "x",
            "debug.log": "noise",
            ".dev.vars": "INTERNAL_API_SECRET=s",
            "docs/a.md": "a",
            "docs/keep.md": "keep",
            "start.sh": "#!/bin/sh\n",
        });
        assert.deepEqual(consumed(dir), [".dockerignore", "Dockerfile", "docs/keep.md", "start.sh"]);
    });

    it("prefers <Dockerfile>.dockerignore to .dockerignore, as BuildKit does", () => {
        const dir = tempContext({
            Dockerfile: "FROM base\nCOPY . /app/\n",
            "Dockerfile.dockerignore": "*.log\n",
            ".dockerignore": "*.txt\n",
            "a.log": "l",
            "b.txt": "t",
        });
        assert.deepEqual(consumed(dir), [".dockerignore", "Dockerfile", "Dockerfile.dockerignore", "b.txt"]);
    });

    it("fails on a missing source, naming the Dockerfile line and the fix", () => {
        const dir = tempContext({ Dockerfile: "FROM base\n\nCOPY present.sh /x/\nCOPY missing.sh /x/\nCOPY *.nothing /y/\n", "present.sh": "p" });
        assert.throws(
            () => consumedInputs(dir),
            (err: Error) => {
                assert.match(
                    err.message,
                    new RegExp(`${path.join(dir, "Dockerfile")}:4: COPY source "missing.sh" does not exist in the build context`),
                );
                assert.match(err.message, /Dockerfile:5: COPY source "\*\.nothing" matches no file/);
                assert.match(err.message, /Fix the path on that line/);
                return true;
            },
        );
    });

    it("fails on a source that .dockerignore excludes, saying so", () => {
        const dir = tempContext({ Dockerfile: "FROM base\nCOPY secret.txt /x/\n", ".dockerignore": "secret.txt\n", "secret.txt": "s" });
        assert.throws(() => consumedInputs(dir), /Dockerfile:2: COPY source "secret.txt" is excluded by \.dockerignore/);
    });
});

describe("image tag", () => {
    it("is stable for the same inputs and gives a dev- tag of 12 hex digits", () => {
        const files = { Dockerfile: "FROM base\nCOPY a.sh /\n", "a.sh": "#!/bin/sh\n" };
        assert.equal(hashBuildContext(tempContext(files)), hashBuildContext(tempContext(files)));
        assert.match(imageTagForContext(tempContext(files)), /^dev-[0-9a-f]{12}$/);
    });

    it("changes with the Dockerfile, .dockerignore, build args, an ADD URL, a consumed file's content or executable bit", () => {
        const dir = tempContext({ Dockerfile: "FROM base\nARG V=1\nCOPY a.sh /\n", "a.sh": "#!/bin/sh\n" });
        const seen = new Set<string>([hashBuildContext(dir)]);
        const step = (what: string, change: () => void, args?: Record<string, string>) => {
            change();
            const hash = hashBuildContext(dir, "Dockerfile", args);
            assert.ok(!seen.has(hash), `${what} left the hash unchanged`);
            seen.add(hash);
        };
        step("a build arg", () => undefined, { V: "2" });
        step("the executable bit", () => fs.chmodSync(path.join(dir, "a.sh"), 0o755));
        step("the content", () => fs.writeFileSync(path.join(dir, "a.sh"), "#!/bin/sh\necho\n"));
        step("a .dockerignore", () => fs.writeFileSync(path.join(dir, ".dockerignore"), "*.log\n"));
        step("an ADD URL", () => fs.appendFileSync(path.join(dir, "Dockerfile"), "ADD https://example.com/v2.tgz /tmp/\n"));
    });

    describe("on the realistic kiloclaw checkout", () => {
        let dir: string;
        let tag: string;
        beforeEach(() => {
            dir = materializeCheckout(path.join(scratchDir("kiloclaw-checkout-"), "kiloclaw"));
            tag = imageTagForContext(dir);
        });

        it("consumes only the image's files", () => {
            assert.deepEqual(consumed(dir), [
                "controller/package.json",
                "controller/src/index.js",
                "openclaw-device-pairing-list.js",
                "openclaw-pairing-list.js",
                "skills/gateway-debug/SKILL.md",
                "skills/kilo-setup/SKILL.md",
                "start-openclaw.sh",
            ]);
            // The checkout really has the worker's files beside them.
            assert.ok(fs.readdirSync(path.join(dir, "node_modules")).length >= 10);
            assert.ok(fs.lstatSync(path.join(dir, "node_modules", ".bin", "wrangler")).isSymbolicLink());
        });

        for (const [what, edit] of [
            ["src/", (d: string) => fs.appendFileSync(path.join(d, "src", "index.ts"), "// worker-only change\n")],
            ["test/", (d: string) => fs.writeFileSync(path.join(d, "test", "new.test.ts"), "// new test\n")],
            [".wrangler/", (d: string) => touchWranglerState(d, "GET /api/platform/status")],
            ["node_modules/", (d: string) => fs.writeFileSync(path.join(d, "node_modules", "zod", "dist", "chunk-1.js"), "// patched\n")],
            [".dev.vars", (d: string) => fs.writeFileSync(path.join(d, ".dev.vars"), "FLY_IMAGE_TAG=dev-new\nOPENCLAW_VERSION=2026.2.9\n")],
            ["package.json / wrangler.jsonc", (d: string) => fs.appendFileSync(path.join(d, "wrangler.jsonc"), "\n// edited\n")],
        ] as const) {
            it(`leaves the tag unchanged when ${what} changes`, () => {
                edit(dir);
                assert.equal(imageTagForContext(dir), tag);
            });
        }

        for (const file of ["start-openclaw.sh", "controller/src/index.js", "skills/kilo-setup/SKILL.md", "openclaw-pairing-list.js"]) {
            it(`changes the tag when the COPY'd ${file} changes`, () => {
                fs.appendFileSync(path.join(dir, file), "\n# edited\n");
                assert.notEqual(imageTagForContext(dir), tag);
            });
        }

        it("changes the tag when the pin changes", () => {
            const dockerfile = path.join(dir, "Dockerfile");
            fs.writeFileSync(dockerfile, fs.readFileSync(dockerfile, "utf8").replace("openclaw@2026.2.9", "openclaw@2026.2.10"));
            assert.notEqual(imageTagForContext(dir), tag);
        });
    });
});

describe("staged build context", () => {
    let root: string;
    let checkout: string;
    beforeEach(() => {
        root = path.join(scratchDir("kiloclaw-contexts-"), "contexts");
        checkout = materializeCheckout(path.join(scratchDir("kiloclaw-checkout-"), "kiloclaw"));
    });

    /** path → mode and content of every entry under `dir`. */
    const listing = (dir: string): Record<string, string> => {
        const out: Record<string, string> = {};
        const walk = (rel: string) => {
            for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
                const r = path.posix.join(rel, e.name);
                const stat = fs.lstatSync(path.join(dir, r));
                out[r] = `${(stat.mode & 0o7777).toString(8)} ${e.isDirectory() ? "dir" : fs.readFileSync(path.join(dir, r), "utf8")}`;
                if (e.isDirectory()) walk(r);
            }
        };
        walk("");
        return out;
    };

    it("holds only the consumed files and the Dockerfile, under the tag, with their permission bits", () => {
        const staged = stageBuildContext(checkout, "Dockerfile", {}, root);
        assert.equal(staged.dir, path.join(root, imageTagForContext(checkout)));
        const entries = listing(staged.dir);
        const files = Object.keys(entries).filter((f) => !entries[f].endsWith(" dir"));
        assert.deepEqual(files.sort(), FIXTURE_IMAGE_FILES);
        assert.equal(
            fs.statSync(path.join(staged.dir, "start-openclaw.sh")).mode & 0o777,
            fs.statSync(path.join(checkout, "start-openclaw.sh")).mode & 0o777,
        );
    });

    it("keeps the checkout's directory modes inside copied directories, and the tag covers them", () => {
        const skillDir = path.join(checkout, "skills", "gateway-debug");
        fs.chmodSync(skillDir, 0o775); // a group-writable checkout (umask 002)
        const staged = stageBuildContext(checkout, "Dockerfile", {}, root);
        assert.equal((fs.statSync(path.join(staged.dir, "skills", "gateway-debug")).mode & 0o777).toString(8), "775");
        fs.chmodSync(skillDir, 0o755);
        assert.notEqual(imageTagForContext(checkout), staged.tag, "a directory mode reaches the image: the tag moves");
        assert.equal(
            (fs.statSync(path.join(stageBuildContext(checkout, "Dockerfile", {}, root).dir, "skills", "gateway-debug")).mode & 0o777).toString(8),
            "755",
        );
    });

    it("is the same directory with the same files for the same inputs, and restages a hand-edited copy", () => {
        const first = stageBuildContext(checkout, "Dockerfile", {}, root);
        const before = listing(first.dir);
        fs.writeFileSync(path.join(checkout, ".dev.vars"), "FLY_IMAGE_TAG=dev-other\n");
        const second = stageBuildContext(checkout, "Dockerfile", {}, root);
        assert.equal(second.dir, first.dir);
        assert.deepEqual(listing(second.dir), before);
        fs.appendFileSync(path.join(first.dir, "start-openclaw.sh"), "# edited in the cache\n");
        assert.deepEqual(listing(stageBuildContext(checkout, "Dockerfile", {}, root).dir), before);
    });

    it("leaves no half-staged directory behind when copying fails", () => {
        // The CommonJS module object (the `import * as` namespace is read-only): what lib/stagedContext.ts calls.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const nodeFs: typeof fs = require("node:fs");
        const copy = nodeFs.copyFileSync;
        let calls = 0;
        nodeFs.copyFileSync = (...args: Parameters<typeof fs.copyFileSync>) => {
            if (++calls === 3) throw new Error("disk full (simulated)");
            return copy(...args);
        };
        try {
            assert.throws(() => stageBuildContext(checkout, "Dockerfile", {}, root), /disk full/);
        } finally {
            nodeFs.copyFileSync = copy;
        }
        assert.equal(calls, 3, "the simulated failure did not happen");
        assert.deepEqual(fs.readdirSync(root), []);
    });
});
