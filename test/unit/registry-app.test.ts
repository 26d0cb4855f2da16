// One registry app: the program pushes where the worker pulls from, and says which key to change
// when the stack disagrees with the worker.
import * as assert from "node:assert/strict";
import * as path from "node:path";
import { resolveSettings } from "../../lib/config";

const DIR = path.resolve("/checkout/kiloclaw");
const DOCKERFILE = "FROM base\nRUN npm install -g openclaw@2026.2.9 \\\n    && openclaw --version\n";

function settings(devVars: string, registryApp?: string) {
    const files: Record<string, string> = { [path.join(DIR, ".dev.vars")]: devVars, [path.join(DIR, "Dockerfile")]: DOCKERFILE };
    return resolveSettings({ kiloclawDir: DIR, userId: "44792035-0fb0-45e1-9115-ac6575f1ffa7", registryApp }, (file) => files[file]);
}

describe("registry app", () => {
    it("pushes to the worker's default app when .dev.vars names none", () => {
        const s = settings("INTERNAL_API_SECRET=k\n");
        assert.equal(s.workerRegistryApp, "kiloclaw-machines");
        assert.equal(s.registryApp, "kiloclaw-machines");
    });

    it("follows FLY_REGISTRY_APP, then FLY_APP_NAME, as the worker does", () => {
        assert.equal(settings("FLY_APP_NAME=app-b\nFLY_REGISTRY_APP=app-a\n").registryApp, "app-a");
        assert.equal(settings("FLY_APP_NAME=app-b\n").registryApp, "app-b");
    });

    it("accepts an explicit kiloclaw:registryApp that agrees with the worker", () => {
        assert.equal(settings("FLY_REGISTRY_APP=kiloclaw-dev\n", "kiloclaw-dev").registryApp, "kiloclaw-dev");
    });

    it("rejects a kiloclaw:registryApp that disagrees, naming the key to change", () => {
        assert.throws(
            () => settings("FLY_REGISTRY_APP=kiloclaw-dev\n", "kiloclaw-other"),
            (err: Error) => {
                assert.match(err.message, /kiloclaw:registryApp is "kiloclaw-other" but the worker pulls from "kiloclaw-dev" \(FLY_REGISTRY_APP in /);
                assert.match(err.message, /`pulumi config rm kiloclaw:registryApp`/);
                assert.match(err.message, /FLY_REGISTRY_APP=kiloclaw-other/);
                return true;
            },
        );
        assert.throws(() => settings("INTERNAL_API_SECRET=k\n", "kiloclaw-dev"), /worker pulls from "kiloclaw-machines" \(the worker's default/);
    });
});
