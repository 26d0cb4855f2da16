// Which mode rehearse and the e2e suites choose: build mode only when the CLI has the docker and command resource
// plugins at the versions the SDKs pin, since the engine loads no other version (one at another version made
// `up` fail with "no resource plugin … at version v5.2.0" instead of choosing prebuilt mode).
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { PluginInfo, Workspace } from "@pulumi/pulumi/automation";
import { buildModePlugins, missingBuildPlugins } from "../../sandbox/workspace";

const sdkVersion = (name: string) =>
    JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "node_modules", "@pulumi", name, "package.json"), "utf8")).version as string;

/** A workspace whose CLI lists these plugins (`pulumi plugin ls`). */
const listing = (plugins: Array<Pick<PluginInfo, "name" | "version" | "kind">>) =>
    ({ listPlugins: async () => plugins as PluginInfo[] }) as unknown as Workspace;

describe("build-mode plugins", () => {
    it("are the docker and command plugins at the installed SDKs' versions", () => {
        assert.deepEqual(buildModePlugins(), [
            { name: "docker", version: sdkVersion("docker") },
            { name: "command", version: sdkVersion("command") },
        ]);
    });

    it("count as missing when installed at another version or as another kind", async () => {
        const [docker, command] = buildModePlugins();
        assert.deepEqual(
            await missingBuildPlugins(
                listing([
                    { name: "docker", version: "5.1.0", kind: "resource" },
                    { name: "command", version: command.version, kind: "language" },
                ]),
            ),
            [`docker ${docker.version}`, `command ${command.version}`],
        );
        assert.deepEqual(
            await missingBuildPlugins(
                listing([
                    { name: "docker", version: docker.version, kind: "resource" },
                    { name: "command", version: command.version, kind: "resource" },
                ]),
            ),
            [],
        );
    });
});
