// LocalImages, the provider that removes the local images a build-mode stack made: its text as
// serialized into the state (from the program under mocks), driven against the real Docker engine.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { COMPONENT_TYPES, LocalImagesOutputs, RESOURCE_TYPES } from "../../lib/contract";
import { assertDockerRunning, run } from "../../sandbox/docker";
import { scratchDir } from "../scratch";
import { fakeCheckout, findResource, parentOf, ProgramRun, runProgram, unwrapSecrets, loadSerializedProvider } from "../program-harness";

const exists = async (ref: string) => (await run("docker", ["image", "inspect", ref])).code === 0;

describe("LocalImages: the local images a build-mode rollout made", function () {
    this.timeout(300_000);
    let program: ProgramRun;
    let provider: Required<import("@pulumi/pulumi").dynamic.ResourceProvider>;
    const suffix = randomBytes(4).toString("hex");
    const refs = [`kiloclaw-local-images-${suffix}:a`, `127.0.0.1:1/kiloclaw-local-images-${suffix}:a`];

    before(async () => {
        assertDockerRunning();
        const checkout = fakeCheckout();
        program = await runProgram({
            config: { "kiloclaw:kiloclawDir": checkout.kiloclawDir, "kiloclaw:userId": "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c06" },
            secretKeys: [],
        });
        assert.equal(program.error, undefined, program.error);
        provider = loadSerializedProvider(findResource(program, RESOURCE_TYPES.localImages).inputs.__provider, "LocalImages");
        // Two tags of one small image, as the build and the push leave them.
        for (const ref of refs) {
            const tag = await run("docker", ["tag", "kiloclaw-fixture-base:2", ref]);
            assert.equal(tag.code, 0, `${tag.stderr} (is the fixture base imported? bootstrap/start-docker.sh)`);
        }
    });
    after(() => run("docker", ["rmi", ...refs]));

    it("tracks the built image (named by the stack's identity) and its staged context, after the push, inside its component", () => {
        const res = findResource(program, RESOURCE_TYPES.localImages);
        const { images, contexts } = unwrapSecrets(res.inputs) as LocalImagesOutputs;
        // Only the stack's own name: the pushed <registry>/<app>:<tag> is not kept locally (push-image.sh) and another stack may share it.
        assert.equal(images.length, 1);
        assert.match(images[0], /^kiloclaw-kiloclaw-rollout-[a-z0-9-]+:dev-[0-9a-f]{12}$/);
        const tag = images[0].split(":")[1];
        assert.equal(contexts?.length, 1);
        assert.equal(path.basename(contexts![0]), tag);
        assert.equal(parentOf(program, res)?.type, COMPONENT_TYPES.localImages);
        // The warm machine waits for it, so destroy removes the images only after the instance is gone.
        const warm = program.resources.find((r) => r.type === COMPONENT_TYPES.warmMachine)!;
        assert.ok(
            warm.dependencies.some((d) => d.endsWith("::local-images-cleanup")),
            warm.dependencies.join(", "),
        );
    });

    it("a new tag replaces it (old images go at the end of the update); the same tag is no change", async () => {
        const olds: LocalImagesOutputs = { images: refs };
        assert.deepEqual(await provider.diff("id", olds, { images: refs }), { changes: false, replaces: [], deleteBeforeReplace: false });
        const changed = await provider.diff("id", olds, { images: ["kiloclaw:dev-000000000001"] });
        assert.deepEqual(changed, { changes: true, replaces: ["images"], deleteBeforeReplace: false });
    });

    it("delete removes every tag it tracks and the staged contexts, and a second delete (nothing left) succeeds", async () => {
        const stackDir = path.join(scratchDir("kiloclaw-local-images-contexts-"), "kiloclaw-rollout-stack");
        const contexts = ["dev-00000000000a", "dev-00000000000b"].map((tag) => path.join(stackDir, tag));
        for (const dir of contexts) {
            fs.mkdirSync(dir, { recursive: true });
            fs.writeFileSync(path.join(dir, "Dockerfile"), "FROM scratch\n");
        }
        const { id, outs } = await provider.create({ images: refs, contexts: [contexts[0]] });
        for (const ref of refs) assert.ok(await exists(ref), `${ref} missing before delete`);
        await provider.delete(id, outs);
        for (const ref of refs) assert.ok(!(await exists(ref)), `${ref} is still in the engine`);
        // The context of these images is gone; the stack's other tag stays, and so does its directory.
        assert.deepEqual(fs.readdirSync(stackDir), ["dev-00000000000b"]);
        await provider.delete(id, outs);
        await provider.delete(id, { images: [], contexts: [contexts[1]] });
        assert.ok(!fs.existsSync(stackDir), "the stack's empty context directory is left");
    });

    it("a moved context is recorded in place, never a replacement that would remove the images", async () => {
        const olds: LocalImagesOutputs = { images: refs, contexts: ["/old/dev-1"] };
        assert.deepEqual(await provider.diff("id", olds, { images: refs, contexts: ["/new/dev-1"] }), {
            changes: true,
            replaces: [],
            deleteBeforeReplace: false,
        });
        assert.deepEqual((await provider.update("id", olds, { images: refs, contexts: ["/new/dev-1"] })).outs, {
            images: refs,
            contexts: ["/new/dev-1"],
        });
    });

    it("says how to recover when Docker does not answer, instead of forgetting the images", async () => {
        const saved = process.env.DOCKER_HOST;
        process.env.DOCKER_HOST = "tcp://127.0.0.1:1";
        try {
            await assert.rejects(provider.delete("id", { images: refs }), /Docker is not running.*start Docker.*pulumi destroy/s);
        } finally {
            if (saved === undefined) delete process.env.DOCKER_HOST;
            else process.env.DOCKER_HOST = saved;
        }
    });
});
