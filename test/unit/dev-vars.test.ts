// `.dev.vars` is edited as a careful human would: only the two values change. One
// test per case, a property test over generated files (a small seeded generator,
// no dependency), and the provider's write through a symlink.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { configureFromStack } from "../../dynamic-providers/settings";
import { workerImageVersionProvider } from "../../dynamic-providers/workerImageVersionProvider";
import { parseDevVars, updateDevVars } from "../../lib/devVars";
import { scratchDir } from "../scratch";

const NEW = { FLY_IMAGE_TAG: "dev-abcdef012345", OPENCLAW_VERSION: "2026.2.22" };

describe(".dev.vars edits (one case each)", () => {
    const cases: Array<[string, string, string]> = [
        ["plain values", "A=1\nFLY_IMAGE_TAG=dev-1\nOPENCLAW_VERSION=1.2.3\n", "A=1\nFLY_IMAGE_TAG=dev-abcdef012345\nOPENCLAW_VERSION=2026.2.22\n"],
        [
            "double quotes and an inline comment",
            'FLY_IMAGE_TAG="dev-1" # pinned by hand, see ticket 42\nOPENCLAW_VERSION=1.2.3\n',
            'FLY_IMAGE_TAG="dev-abcdef012345" # pinned by hand, see ticket 42\nOPENCLAW_VERSION=2026.2.22\n',
        ],
        [
            "single quotes",
            "FLY_IMAGE_TAG='dev-1'\nOPENCLAW_VERSION='1.2.3'#c\n",
            "FLY_IMAGE_TAG='dev-abcdef012345'\nOPENCLAW_VERSION='2026.2.22'#c\n",
        ],
        [
            "unquoted value, spaces and a comment",
            "export FLY_IMAGE_TAG = dev-1   # x\nOPENCLAW_VERSION=1.2.3#y\n",
            "export FLY_IMAGE_TAG = dev-abcdef012345   # x\nOPENCLAW_VERSION=2026.2.22#y\n",
        ],
        [
            "an empty value before a comment",
            "FLY_IMAGE_TAG= # set by the rollout\nOPENCLAW_VERSION=\n",
            "FLY_IMAGE_TAG=dev-abcdef012345 # set by the rollout\nOPENCLAW_VERSION=2026.2.22\n",
        ],
        [
            "one CRLF line among LF lines keeps its own ending",
            "A=1\nFLY_IMAGE_TAG=dev-1\r\nOPENCLAW_VERSION=1.2.3\nB=2\n",
            "A=1\nFLY_IMAGE_TAG=dev-abcdef012345\r\nOPENCLAW_VERSION=2026.2.22\nB=2\n",
        ],
        ["no final newline", "FLY_IMAGE_TAG=dev-1\nOPENCLAW_VERSION=1.2.3", "FLY_IMAGE_TAG=dev-abcdef012345\nOPENCLAW_VERSION=2026.2.22"],
        [
            "missing keys are appended with the file's line ending; commented ones stay",
            "# FLY_IMAGE_TAG=old\r\nWORKER_ENV=development",
            "# FLY_IMAGE_TAG=old\r\nWORKER_ENV=development\r\nFLY_IMAGE_TAG=dev-abcdef012345\r\nOPENCLAW_VERSION=2026.2.22\r\n",
        ],
        [
            "a duplicate key: every active line (dotenv takes the last)",
            "FLY_IMAGE_TAG=a\nFLY_IMAGE_TAG=b\nOPENCLAW_VERSION=1\n",
            "FLY_IMAGE_TAG=dev-abcdef012345\nFLY_IMAGE_TAG=dev-abcdef012345\nOPENCLAW_VERSION=2026.2.22\n",
        ],
    ];
    for (const [name, before, after] of cases) {
        it(name, () => {
            assert.equal(updateDevVars(before, NEW), after);
            assert.equal(updateDevVars(after, NEW), after, "a second rollout with the same values changes nothing");
        });
    }
});

/** Deterministic PRNG (mulberry32), so a failure names a seed that reproduces it. */
function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/** A random .dev.vars: comments, blanks, other keys in every quoting, the two keys (or not), mixed line endings. */
function generateDevVars(random: () => number): { text: string; had: Record<string, string> } {
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
    const token = () => pick(["dev-1", "2026.2.9", "x", "", "dev-1771448521", "1.0.0-rc.1"]);
    const anyValue = () => pick(["a b", "#notacomment", "x=y", "é€", "quoted 'inner'", ...["dev-9", ""]]);
    const comment = () => pick(["", " # note", "   # pinned, see ticket 42", "#c"]);
    const assignment = (key: string, value: string, anyQuote: boolean) => {
        const quote = pick(anyQuote ? ['"', "'", "`", ""] : ['"', "'", ""]);
        const v = quote ? `${quote}${value}${quote}` : value;
        const sep = pick(["=", " = ", "= ", " ="]);
        return `${pick(["", "export ", "  "])}${key}${sep}${v}${quote || value ? comment() : ""}`;
    };
    const lines: string[] = [];
    const had: Record<string, string> = {};
    const n = Math.floor(random() * 12);
    for (let i = 0; i < n; i++) {
        const kind = random();
        if (kind < 0.15) lines.push(pick(["# KiloClaw worker", "#FLY_IMAGE_TAG=commented", "", "   ", "# OPENCLAW_VERSION=0.0.1"]));
        else if (kind < 0.5)
            lines.push(
                assignment(
                    pick(["A", "INTERNAL_API_SECRET", "FLY_APP_NAME", "WORKER_ENV"]),
                    pick(["k", "v 1", "x#y"].map(String)).replace("#", ""),
                    true,
                ),
            );
        else if (kind < 0.6) lines.push(`B=${JSON.stringify(anyValue())}`);
        else {
            // Each at most once here (a duplicate with another value cannot be restored; its case is above).
            const key = pick(["FLY_IMAGE_TAG", "OPENCLAW_VERSION"].filter((k) => !(k in had)));
            if (!key) continue;
            const value = token();
            had[key] = value;
            lines.push(assignment(key, value, false));
        }
    }
    let text = "";
    for (let i = 0; i < lines.length; i++) text += lines[i] + (i < lines.length - 1 || random() < 0.7 ? pick(["\n", "\n", "\r\n"]) : "");
    return { text, had };
}

describe(".dev.vars edits (property: a rollout changes nothing but the two values)", () => {
    it("for 3000 generated files: the new values parse, every other key parses as before, and setting the old values back restores every byte", () => {
        for (let seed = 1; seed <= 3000; seed++) {
            const { text } = generateDevVars(rng(seed));
            const next = updateDevVars(text, NEW);
            const context = `seed ${seed}: ${JSON.stringify(text)} → ${JSON.stringify(next)}`;
            const before = parseDevVars(text);
            const after = parseDevVars(next);
            assert.deepEqual(after, { ...before, ...NEW }, context);
            // Writing the old values of the keys the file had back gives the file back; keys it lacked were appended after it.
            const old = Object.fromEntries(
                Object.keys(NEW)
                    .filter((k) => k in before)
                    .map((k) => [k, before[k]]),
            );
            const back = updateDevVars(next, old);
            const appended = Object.keys(NEW).filter((k) => !(k in before));
            if (appended.length === 0) assert.equal(back, text, context);
            else {
                assert.ok(back.startsWith(text), context);
                const tail = back.slice(text.length).replace(/^\r?\n/, "");
                assert.equal(
                    tail,
                    appended.map((k) => `${k}=${NEW[k as keyof typeof NEW]}`).join(tail.includes("\r\n") ? "\r\n" : "\n") +
                        (tail.includes("\r\n") ? "\r\n" : "\n"),
                    context,
                );
            }
        }
    });
});

describe(".dev.vars written by the rollout (the provider's write)", () => {
    const provider = workerImageVersionProvider as Required<pulumi.dynamic.ResourceProvider>;
    const inputs = { imageTag: NEW.FLY_IMAGE_TAG, openclawVersion: NEW.OPENCLAW_VERSION, publish: false };
    /** What the engine does before create: the stack config names the checkout whose .dev.vars is written. */
    async function createIn(kiloclawDir: string): Promise<void> {
        const config: Record<string, string> = { "kiloclaw:kiloclawDir": kiloclawDir, "kiloclaw:workerUrl": "http://127.0.0.1:9" };
        await configureFromStack({ config: { get: (k: string) => config[k], require: (k: string) => config[k] } } as pulumi.dynamic.ConfigureRequest);
        await provider.create(inputs);
    }

    it("a symlinked .dev.vars stays a link; its target is edited in place with its mode, and no temp file is left", async () => {
        const dir = scratchDir("kiloclaw-devvars-link-");
        const shared = path.join(dir, "shared");
        fs.mkdirSync(shared);
        const target = path.join(shared, "kiloclaw.dev.vars");
        const original = 'INTERNAL_API_SECRET=k\r\nFLY_IMAGE_TAG="dev-1" # pinned by hand\nOPENCLAW_VERSION=1.2.3\n';
        fs.writeFileSync(target, original, { mode: 0o600 });
        const kiloclaw = path.join(dir, "kiloclaw");
        fs.mkdirSync(kiloclaw);
        const link = path.join(kiloclaw, ".dev.vars");
        fs.symlinkSync(path.join("..", "shared", "kiloclaw.dev.vars"), link);
        await createIn(kiloclaw);
        assert.ok(fs.lstatSync(link).isSymbolicLink(), "the link is still a link");
        assert.equal(fs.readlinkSync(link), path.join("..", "shared", "kiloclaw.dev.vars"));
        assert.equal(
            fs.readFileSync(target, "utf8"),
            'INTERNAL_API_SECRET=k\r\nFLY_IMAGE_TAG="dev-abcdef012345" # pinned by hand\nOPENCLAW_VERSION=2026.2.22\n',
        );
        assert.equal(fs.statSync(target).mode & 0o777, 0o600);
        assert.deepEqual(fs.readdirSync(shared), ["kiloclaw.dev.vars"]);
        assert.deepEqual(fs.readdirSync(kiloclaw), [".dev.vars"]);
    });

    it("a regular .dev.vars is replaced atomically, byte for byte except the two values", async () => {
        const dir = scratchDir("kiloclaw-devvars-file-");
        const file = path.join(dir, ".dev.vars");
        fs.writeFileSync(file, "A=1\nFLY_IMAGE_TAG='dev-1'\r\nOPENCLAW_VERSION=1.2.3 # keep in sync");
        await createIn(dir);
        assert.equal(fs.readFileSync(file, "utf8"), "A=1\nFLY_IMAGE_TAG='dev-abcdef012345'\r\nOPENCLAW_VERSION=2026.2.22 # keep in sync");
        assert.deepEqual(fs.readdirSync(dir), [".dev.vars"]);
    });
});
