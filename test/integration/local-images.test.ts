// LocalImages, the provider that removes the local images a build-mode stack made: its text as
// serialized into the state (from the program under mocks), driven against the real Docker engine.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { COMPONENT_TYPES, LocalImagesOutputs, RESOURCE_TYPES } from "../../lib/contract";
import { assertDockerRunning, run } from "../../sandbox/docker";
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

    it("tracks the built image and the pushed tag, after the push, inside its component", () => {
        const res = findResource(program, RESOURCE_TYPES.localImages);
        const images: string[] = unwrapSecrets(res.inputs).images;
        assert.equal(images.length, 2);
        assert.match(images[0], /^kiloclaw:dev-[0-9a-f]{12}$/);
        const tag = images[0].split(":")[1];
        assert.match(images[1], new RegExp(`^registry\\.fly\\.io/[a-z0-9-]+:${tag}$`));
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

    it("delete removes every tag it tracks, and a second delete (nothing left) succeeds", async () => {
        const { id, outs } = await provider.create({ images: refs });
        for (const ref of refs) assert.ok(await exists(ref), `${ref} missing before delete`);
        await provider.delete(id, outs);
        for (const ref of refs) assert.ok(!(await exists(ref)), `${ref} is still in the engine`);
        await provider.delete(id, outs);
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
