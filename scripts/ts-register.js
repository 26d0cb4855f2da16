// Runs the program's TypeScript without ts-node: Pulumi.yaml starts node with `--require ./scripts/ts-register.js`.
// Each .ts file is transpiled by the project's own TypeScript (transpileModule with tsconfig.json's options, as tsc
// and ts-node emit it, so the dynamic providers serialize as they always did) and the JavaScript is kept in a cache
// keyed by the file's content, its path, tsconfig.json and the TypeScript version. An edited file is a new key: it
// is transpiled again before it runs, so old code never runs. A run whose files are all cached transpiles nothing
// (ts-node transpiled all of them on every preview). Types are checked by `npx tsc --noEmit` (CI).
"use strict";
const crypto = require("node:crypto");
const fs = require("node:fs");
const Module = require("node:module");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const tsconfigPath = path.join(root, "tsconfig.json");
const cacheDir = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "kiloclaw-rollout", "ts-register");
// Bump when this file changes what it emits.
const FORMAT = "1";

let salt; // what every key shares: this hook's format, TypeScript's version, tsconfig.json
let compilerOptions; // parsed on the first cache miss only

function keySalt() {
    if (salt === undefined) {
        const tsVersion = JSON.parse(fs.readFileSync(require.resolve("typescript/package.json", { paths: [root] }), "utf8")).version;
        salt = `${FORMAT}\0${tsVersion}\0${fs.readFileSync(tsconfigPath, "utf8")}`;
    }
    return salt;
}

function transpile(source, filename) {
    const ts = require(require.resolve("typescript", { paths: [root] }));
    if (compilerOptions === undefined) {
        const read = ts.readConfigFile(tsconfigPath, ts.sys.readFile);
        if (read.error) throw new Error(`ts-register: ${tsconfigPath}: ${ts.flattenDiagnosticMessageText(read.error.messageText, "\n")}`);
        const parsed = ts.convertCompilerOptionsFromJson(read.config.compilerOptions ?? {}, root);
        // CommonJS, as node loads it here. No source maps: node would read every module's map on each run to use them.
        compilerOptions = { ...parsed.options, module: ts.ModuleKind.CommonJS, sourceMap: false, inlineSourceMap: false };
    }
    const out = ts.transpileModule(source, { compilerOptions, fileName: filename, reportDiagnostics: true });
    const syntax = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (syntax.length > 0) {
        const err = new SyntaxError(
            ts.formatDiagnostics(syntax, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" }),
        );
        err.stack = err.message;
        throw err;
    }
    return out.outputText;
}

/** The file's JavaScript: from the cache when this exact content was transpiled before, else transpiled now and kept. */
function compiled(source, filename) {
    const key = crypto.createHash("sha256").update(keySalt()).update("\0").update(filename).update("\0").update(source).digest("hex");
    const cached = path.join(cacheDir, `${key}.js`);
    try {
        return fs.readFileSync(cached, "utf8");
    } catch {
        // not cached yet
    }
    const js = transpile(source, filename);
    try {
        fs.mkdirSync(cacheDir, { recursive: true });
        // Written whole then renamed: a run beside this one reads the old state or the new file, never half of it.
        const staging = `${cached}.${process.pid}.tmp`;
        fs.writeFileSync(staging, js);
        fs.renameSync(staging, cached);
    } catch {
        // A read-only cache only costs speed.
    }
    return js;
}

Module._extensions[".ts"] = function (module, filename) {
    module._compile(compiled(fs.readFileSync(filename, "utf8"), filename), filename);
};
