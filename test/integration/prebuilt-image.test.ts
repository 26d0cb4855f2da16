// Prebuilt mode's image check, as the engine would run it: the serialized PrebuiltImage provider
// text from the program, against a real registry holding the fixture image (pin 2026.2.9).
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import { randomBytes } from "node:crypto";
import { assertDockerRunning, buildFixture, LocalRegistry, removeImages, run, runScript, startRegistry } from "../../sandbox/docker";
import { fakeCheckout, findResource, runProgram, unwrapSecrets, loadSerializedProvider } from "../program-harness";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c05";

/** Temporary docker configs a check may leave behind (it must not). */
const dockerConfigs = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("kiloclaw-docker-config-"));

describe("prebuilt image check (real Docker and registry)", function () {
    this.timeout(300_000);
    let registry: LocalRegistry;
    let ref: string;
    let providerText: string;
    let inputs: Record<string, any>;
    const local = `kiloclaw-prebuilt-test:${randomBytes(4).toString("hex")}`;

    /** The provider as the engine loads it, configured with `token` as the stack's kiloclaw:flyApiToken. */
    async function provider(token: string): Promise<any> {
        const p = loadSerializedProvider(providerText, "PrebuiltImage");
        const config: Record<string, string> = { "kiloclaw:flyApiToken": token };
        await p.configure?.({ config: { get: (k: string) => config[k], require: (k: string) => config[k] } });
        return p;
    }

    before(async () => {
        assertDockerRunning();
        registry = await startRegistry();
        ref = `${registry.server}/kiloclaw-prebuilt:dev-prebuilt01`;
        await buildFixture(local);
        const push = await runScript("push-image.sh", [], {
            env: { SOURCE_IMAGE: local, TARGET_IMAGE: ref, REGISTRY_SERVER: registry.server },
            input: registry.token,
        });
        assert.equal(push.code, 0, push.stderr);
        await removeImages([local, ref]);

        const checkout = fakeCheckout();
        const config = {
            "kiloclaw:kiloclawDir": checkout.kiloclawDir,
            "kiloclaw:userId": USER,
            "kiloclaw:imageRef": ref,
            "kiloclaw:registryServer": registry.server,
        };
        const program = await runProgram({ config });
        assert.equal(program.error, undefined, program.error);
        const check = findResource(program, "pulumi-nodejs:dynamic/kiloclaw:PrebuiltImage");
        const { __provider, ...rest } = unwrapSecrets(check.inputs);
        providerText = __provider;
        inputs = rest;
    });

    after(async () => {
        await registry?.stop();
        await removeImages([local, ...(ref ? [ref] : [])]);
    });

    it("passes an image whose openclaw matches, with the registry's digest, and leaves no image or login behind", async () => {
        const configsBefore = dockerConfigs();
        const created = await (await provider(registry.token)).create(inputs);
        const manifest = await registry.request("/v2/kiloclaw-prebuilt/manifests/dev-prebuilt01", {
            method: "HEAD",
            headers: { accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" },
        });
        assert.equal(created.outs.digest, manifest.headers.get("docker-content-digest"));
        assert.equal(created.outs.openclawVersion, "2026.2.9");
        assert.equal(created.id, `${ref}@${created.outs.digest}`);
        assert.notEqual((await run("docker", ["image", "inspect", ref])).code, 0, "the pulled image was left on the engine");
        assert.deepEqual(dockerConfigs(), configsBefore, "a temporary DOCKER_CONFIG (with the login) was left behind");
    });

    it("stops on an openclaw version the stack would not publish, naming both and the fix", async () => {
        const p = await provider(registry.token);
        await assert.rejects(
            p.create({ ...inputs, expectedOpenclawVersion: "2026.2.10", versionSource: "kiloclaw:openclawVersion" }),
            (err: Error) => {
                assert.match(err.message, /runs openclaw 2026\.2\.9, but this stack would publish 2026\.2\.10 \(kiloclaw:openclawVersion\)/);
                assert.match(err.message, /pulumi config set kiloclaw:openclawVersion 2026\.2\.9/);
                return true;
            },
        );
        assert.notEqual((await run("docker", ["image", "inspect", ref])).code, 0);
    });

    it("names a refused token without printing it", async () => {
        const wrong = `wrong-${randomBytes(8).toString("hex")}`;
        const configsBefore = dockerConfigs();
        await assert.rejects((await provider(wrong)).create(inputs), (err: Error) => {
            assert.match(err.message, /refused the Fly token \(user x\) for pulling the prebuilt image.*fly tokens deploy --app kiloclaw-prebuilt/s);
            assert.match(err.message, /Nothing was changed/);
            assert.ok(!err.message.includes(wrong), "the token is in the error");
            return true;
        });
        assert.deepEqual(dockerConfigs(), configsBefore);
    });
});
