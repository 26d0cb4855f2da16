// The policy pack reads props by the names lib/contract.ts declares: renaming a
// property there must fail typecheck of the pack, not silently switch a policy
// off. Compiles the pack (policy/tsconfig.json) against edited copies of the
// contract, held in memory.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";

const ROOT = path.join(__dirname, "..", "..");
const POLICY_DIR = path.join(ROOT, "policy");
const CONTRACT = path.join(ROOT, "lib", "contract.ts");

/** Every property the pack reads, by the interface that declares it (`A+B`: renamed in both). */
const READ_BY_THE_PACK: Array<[string, string]> = [
    ["WarmMachineInputs", "image"],
    ["WarmMachineInputs", "env"],
    ["WorkerImageVersionInputs", "openclawVersion"],
    ["WorkerImageVersionFacts", "openclawPin"],
    ["WorkerImageVersionFacts", "registryServer"],
    ["WorkerImageVersionFacts", "registryApp"],
    ["WorkerImageVersionFacts", "workerRegistryApp"],
    ["WorkerImageVersionFacts", "workerSettings"],
    ["WorkerImageVersionFacts", "envLocalKeys"],
    ["WorkerInstanceInputs", "userId"],
    ["WorkerInstanceInputs", "openclawVersion"],
    // Both resources that carry the key: the pack reads the name on either (policy/secrets.ts, SECRET_INPUT_NAMES).
    ["WorkerInstanceInputs+WorkerImageVersionInputs", "kilocodeApiKey"],
    ["WorkerInstanceInputs", "expectedFlyAppName"],
    ["WorkerInstanceOutputs", "flyAppName"],
    ["WorkerInstanceOutputs", "gatewayToken"],
    ["SmokeTestEnvironment", "EXPECTED_OPENCLAW_VERSION"],
    ["PushEnvironment", "TARGET_IMAGE"],
];

/** The contract's text with one property of one interface renamed. */
function renameProperty(text: string, iface: string, prop: string): string {
    const start = text.indexOf(`export interface ${iface} `);
    assert.ok(start >= 0, `lib/contract.ts has no interface ${iface}`);
    const end = text.indexOf("\n}", start);
    const body = text.slice(start, end);
    const declaration = new RegExp(`\\n    ${prop}(\\??):`);
    assert.match(body, declaration, `${iface} declares no property ${prop}`);
    return text.slice(0, start) + body.replace(declaration, `\n    ${prop}Renamed$1:`) + text.slice(end);
}

describe("the policy pack and the typed contract", function () {
    this.timeout(300_000);
    const config = ts.getParsedCommandLineOfConfigFile(
        path.join(POLICY_DIR, "tsconfig.json"),
        {},
        { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
    );
    const original = fs.readFileSync(CONTRACT, "utf8");
    let previous: ts.Program | undefined;
    // Parsed once: every compile below differs only in the contract.
    const parsed = new Map<string, ts.SourceFile | undefined>();

    /** Diagnostics in policy/ when the pack is compiled against this contract text. */
    function packErrors(contract: string): string[] {
        assert.ok(config, "policy/tsconfig.json parses");
        const host = ts.createCompilerHost(config.options);
        const getSourceFile = host.getSourceFile.bind(host);
        host.getSourceFile = (file, language, ...rest) => {
            if (path.resolve(file) === CONTRACT) return ts.createSourceFile(file, contract, language);
            if (!parsed.has(file)) parsed.set(file, getSourceFile(file, language, ...rest));
            return parsed.get(file);
        };
        const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, host, oldProgram: previous });
        previous = program;
        // Only the pack's own files are checked: the errors that matter are there, and it is much faster than the whole program.
        return program
            .getSourceFiles()
            .filter((file) => path.resolve(file.fileName).startsWith(POLICY_DIR + path.sep))
            .flatMap((file) => [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)])
            .map((d) => `${path.relative(ROOT, d.file!.fileName)}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
    }

    it("compiles against the contract as it is", () => {
        assert.deepEqual(packErrors(original), []);
    });

    for (const [iface, prop] of READ_BY_THE_PACK) {
        it(`fails to compile when ${iface}.${prop} is renamed`, () => {
            const errors = packErrors(iface.split("+").reduce((text, one) => renameProperty(text, one, prop), original));
            assert.ok(
                errors.some((e) => e.includes(`"${prop}"`)),
                `renaming ${iface}.${prop} left the pack compiling: ${errors.join("\n") || "(no errors)"}`,
            );
        });
    }
});
