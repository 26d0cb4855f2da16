// scripts/ts-register.js is how the engine runs the program (Pulumi.yaml's nodeargs): an edited .ts file must run
// as edited on the very next run, however the edit looks to the file system, and a warm run transpiles nothing.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { PROGRAM_RUNTIME } from "../../sandbox/workspace";
import { scratchDir } from "../scratch";

const REPO = path.resolve(__dirname, "..", "..");

describe("scripts/ts-register.js (the program's TypeScript loader)", function () {
    this.timeout(60_000);
    let dir: string;
    let cache: string;
    beforeEach(() => {
        dir = scratchDir("kiloclaw-ts-register-");
        cache = scratchDir("kiloclaw-ts-register-cache-");
    });
    afterEach(() => {
        fs.rmSync(dir, { recursive: true, force: true });
        fs.rmSync(cache, { recursive: true, force: true });
    });

    /** Runs `node <Pulumi.yaml's nodeargs> -e <script>` in the repo, as the language host starts the program. */
    const node = (script: string) => {
        const args = [...PROGRAM_RUNTIME.options.nodeargs.split(/\s+/), "-e", script];
        const r = spawnSync("node", args, { cwd: REPO, encoding: "utf8", env: { ...process.env, XDG_CACHE_HOME: cache } });
        assert.equal(r.status, 0, r.stderr);
        return r.stdout.trim();
    };
    const load = (file: string, extra = "") => node(`${extra}console.log(require(${JSON.stringify(file)}).value)`);

    it("is what Pulumi.yaml runs the program with, without ts-node", () => {
        const yaml = fs.readFileSync(path.join(REPO, "Pulumi.yaml"), "utf8");
        assert.match(yaml, /^ {4}typescript: false$/m);
        assert.match(yaml, new RegExp(`^ {4}nodeargs: ${PROGRAM_RUNTIME.options.nodeargs}$`, "m"));
    });

    it("runs an edited file as edited, even with the same size and modification time", () => {
        const file = path.join(dir, "step.ts");
        const imported = path.join(dir, "tag.ts");
        fs.writeFileSync(imported, 'export const tag: string = "aaaa";\n');
        fs.writeFileSync(file, 'import { tag } from "./tag";\nexport const value: string = `one-${tag}`;\n');
        assert.equal(load(file), "one-aaaa");
        assert.equal(load(file), "one-aaaa", "from the cache");

        // Same length, same mtime: only the content says it changed.
        const { mtime } = fs.statSync(imported);
        fs.writeFileSync(imported, 'export const tag: string = "bbbb";\n');
        fs.utimesSync(imported, mtime, mtime);
        assert.equal(load(file), "one-bbbb");
        fs.writeFileSync(file, 'import { tag } from "./tag";\nexport const value: string = `two-${tag}`;\n');
        assert.equal(load(file), "two-bbbb");
        // And back: the older version's cache entry is its own content's, so it is right too.
        fs.writeFileSync(imported, 'export const tag: string = "aaaa";\n');
        assert.equal(load(file), "two-aaaa");
    });

    it("transpiles nothing when every file of the program is cached", () => {
        // Every transpile writes its cache entry (a hit only reads): the entries and their times say what ran.
        const entries = () => {
            const dir = path.join(cache, "kiloclaw-rollout", "ts-register");
            return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => `${f} ${fs.statSync(path.join(dir, f)).mtimeMs}`) : [];
        };
        node('require("./rollout.ts")');
        const cold = entries();
        assert.ok(cold.length >= 30, `a cold cache transpiles every file of the program (${cold.length})`);
        node('require("./rollout.ts")');
        assert.deepEqual(entries(), cold);
    });

    it("fails on a syntax error with the file and line, and caches nothing for it", () => {
        const file = path.join(dir, "broken.ts");
        fs.writeFileSync(file, "export const value = (;\n");
        const r = spawnSync("node", [...PROGRAM_RUNTIME.options.nodeargs.split(/\s+/), "-e", `require(${JSON.stringify(file)})`], {
            cwd: REPO,
            encoding: "utf8",
            env: { ...process.env, XDG_CACHE_HOME: cache },
        });
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /broken\.ts\(1,\d+\): error TS\d+/);
        const cached = path.join(cache, "kiloclaw-rollout", "ts-register");
        assert.deepEqual(fs.existsSync(cached) ? fs.readdirSync(cached) : [], []);
    });
});
