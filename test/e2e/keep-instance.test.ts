// A failure before the instance step keeps the old instance: the real engine (Automation API,
// prebuilt mode) against one sandbox world per worker generation. Each row breaks one step before
// the instance (the image, the registry, the warm machine, the publish, a worker that was not
// restarted), runs `up`, and checks from the worker's and Fly's state, not from wording, that the
// instance that ran before still runs on the same machine with its old image; the error must name
// the fix. Validation and push failures exist only in build mode (the docker/command plugins, which
// CI cannot install): there they sit upstream of the warm machine like the image check here, and the
// providers' diffs (test/unit/replace-order.test.ts) keep every step before the instance create-before-delete.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigMap, Stack } from "@pulumi/pulumi/automation";
import { WORKER_PROFILES, WorkerProfileName } from "../../sandbox/emulators/worker-profiles";
import { assertDockerRunning, buildFixture, freePort, LocalRegistry, removeImages, startRegistry } from "../../sandbox/docker";
import { findPulumi, openRehearsalStack } from "../../sandbox/workspace";
import { E2eWorld, failure, pushTags, startE2eWorld } from "./world";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c12";
const APP = "kiloclaw-keep";
const INTERNAL_KEY = "keep-internal-key-5e21a9";

describe("a failure before the instance step keeps the old instance (engine, every worker generation)", function () {
    this.timeout(1_800_000);
    let pulumi: Awaited<ReturnType<typeof findPulumi>>;
    let registry: LocalRegistry;
    const tags = { old: "dev-keep0000000a", next: "dev-keep0000000b", wrongVersion: "dev-keep0000000w" };
    const refs = { old: "", next: "", wrongVersion: "" };
    const tally = { rows: 0, lost: 0 };

    before(async () => {
        pulumi = await findPulumi();
        assertDockerRunning();
        registry = await startRegistry();
        const built = { good: "kiloclaw-keep:good", wrong: "kiloclaw-keep:wrong-version" };
        await buildFixture(built.good);
        await buildFixture(built.wrong, "wrong-version");
        for (const [key, tag] of Object.entries(tags) as Array<[keyof typeof tags, string]>) {
            [refs[key]] = await pushTags(registry, APP, key === "wrongVersion" ? built.wrong : built.good, [tag]);
        }
        await removeImages([built.good, built.wrong, ...Object.values(refs)]);
    });

    after(async () => {
        console.log(`      instances lost to a failure before the instance step: ${tally.lost} of ${tally.rows}`);
        await registry?.stop();
        await removeImages(Object.values(refs));
        assert.equal(tally.lost, 0);
    });

    for (const profile of WORKER_PROFILES) {
        describe(`worker generation "${profile}"`, () => {
            let work: string;
            let world: E2eWorld;
            let stack: Stack;
            let machineBefore = "";

            const setImage = (ref: string) => stack.setConfig("kiloclaw:imageRef", { value: ref });

            /** The instance of before, read from the worker's Durable Object state and from Fly: same machine, started, old image. */
            function keptOldInstance(): string | undefined {
                const rec = world.services.worker.instance(USER);
                if (!rec) return "the worker has no instance";
                if (rec.flyMachineId !== machineBefore) return `the worker's machine is ${rec.flyMachineId}, not ${machineBefore}`;
                if (rec.status !== "running") return `the worker reports "${rec.status}"`;
                if (rec.machineImage !== refs.old) return `the worker's machine image is ${rec.machineImage}`;
                const machine = world.services.fly.machines().find((m) => m.id === machineBefore);
                if (machine?.state !== "started") return `Fly has the machine ${machine?.state ?? "nowhere"}`;
                if (machine.config?.image !== refs.old) return `Fly runs ${machine.config?.image}`;
                return undefined;
            }

            /** One fault row: break, `up` must fail naming the fix, the old instance must still run; then undo. */
            async function faultRow(inject: () => Promise<void>, fix: RegExp, undo: () => Promise<void>): Promise<void> {
                await inject();
                let lost: string | undefined;
                try {
                    const err = await failure(stack.up());
                    assert.match(err.message, fix);
                } finally {
                    lost = keptOldInstance();
                    tally.rows += 1;
                    if (lost) tally.lost += 1;
                    await undo();
                }
                assert.equal(lost, undefined, `instance lost: ${lost}`);
            }

            before(async () => {
                work = fs.mkdtempSync(path.join(os.tmpdir(), `kiloclaw-keep-${profile}-`));
                world = await startE2eWorld({
                    work,
                    registry,
                    app: APP,
                    internalKey: INTERNAL_KEY,
                    gatewaySecret: "keep-gateway-secret",
                    workerProfile: profile as WorkerProfileName,
                });
                stack = await openRehearsalStack({ dir: path.join(work, "engine"), stackName: "keep", pulumi, pulumiHome: path.join(work, "home") });
                const plain: Record<string, string> = {
                    kiloclawDir: world.checkout,
                    userId: USER,
                    imageRef: refs.old,
                    workerUrl: world.services.worker.url,
                    flyApiUrl: world.services.fly.url,
                    registryServer: registry.server,
                    registryApp: APP,
                    warmTimeoutSeconds: "120",
                    instanceTimeoutSeconds: "120",
                };
                const config: ConfigMap = Object.fromEntries(Object.entries(plain).map(([k, value]) => [`kiloclaw:${k}`, { value }]));
                config["kiloclaw:internalApiKey"] = { value: INTERNAL_KEY, secret: true };
                config["kiloclaw:flyApiToken"] = { value: registry.token, secret: true };
                await stack.setAllConfig(config);
                await stack.up();
                machineBefore = world.services.worker.instance(USER)?.flyMachineId ?? "";
                assert.equal(keptOldInstance(), undefined);
            });

            after(async () => {
                if (stack) await stack.destroy().catch(() => undefined);
                await world?.services.close();
                if (work) fs.rmSync(work, { recursive: true, force: true });
            });

            it("a tag that is not in the registry (a typo)", () =>
                faultRow(
                    () => setImage(`${registry.server}/${APP}:dev-keeptypo000b`),
                    /docker pull .*dev-keeptypo000b failed.*Nothing was changed.*kiloclaw:imageRef/s,
                    () => setImage(refs.old),
                ));

            it("an image whose openclaw is not the version this stack publishes", () =>
                faultRow(
                    () => setImage(refs.wrongVersion),
                    /runs openclaw .* but this stack would publish .*pulumi config set kiloclaw:openclawVersion/s,
                    () => setImage(refs.old),
                ));

            it("a registry that is down", async () => {
                const dead = `127.0.0.1:${await freePort()}`;
                await faultRow(
                    async () => {
                        await stack.setConfig("kiloclaw:registryServer", { value: dead });
                        await setImage(`${dead}/${APP}:${tags.next}`);
                    },
                    /Cannot reach the registry 127\.0\.0\.1:\d+ .*Check kiloclaw:registryServer.*Nothing was changed/s,
                    async () => {
                        await stack.setConfig("kiloclaw:registryServer", { value: registry.server });
                        await setImage(refs.old);
                    },
                );
            });

            it("a warm machine Fly will not create", () =>
                faultRow(
                    async () => {
                        world.services.fly.inject({ method: "POST", path: `/apps/${APP}/machines`, status: 503, times: 1000 });
                        await setImage(refs.next);
                    },
                    /Fly kept answering 503 .*run `pulumi up` again/s,
                    async () => {
                        world.services.fly.clearFaults();
                        await setImage(refs.old);
                    },
                ));

            if (profile !== "early") {
                // The early worker has no publish route: nothing is published there.
                it("a publish-image-version the worker fails", () =>
                    faultRow(
                        async () => {
                            world.services.worker.inject({ method: "POST", path: "/publish-image-version", status: 500, times: 1000 });
                            await setImage(refs.next);
                        },
                        /Publishing openclaw .* failed \(500 .*the `pnpm start` terminal\) shows why.*pulumi up/s,
                        async () => {
                            world.services.worker.clearFaults();
                            await setImage(refs.old);
                        },
                    ));
            }

            if (profile === "newest") {
                it("a worker that was not restarted still provisions the new tag (pinnedImageTag): no restart needed", async () => {
                    world.services.worker.setReloadDevVarsOnRequest(false);
                    await setImage(refs.next);
                    await stack.up();
                    const rec = world.services.worker.instance(USER);
                    assert.equal(rec?.machineImage, refs.next);
                    assert.equal(world.services.fly.machines().find((m) => m.id === rec?.flyMachineId)?.config?.image, refs.next);
                });
            } else {
                it("a worker that was not restarted: stops before the instance with the restart command; after it, up rolls out", async () => {
                    world.services.worker.setReloadDevVarsOnRequest(false);
                    const fix =
                        profile === "early"
                            ? /offers no read that tells which image its next provision will use.*cd cloud\/kiloclaw && pnpm start.*kiloclaw:workerRestartedForTag=dev-keep0000000b/s
                            : /will not provision dev-keep0000000b: it tracks dev-keep0000000a.*cd cloud\/kiloclaw && pnpm start/s;
                    await faultRow(
                        () => setImage(refs.next),
                        fix,
                        async () => undefined,
                    );
                    // The fix the message names: restart the worker (and, on the early worker, say so).
                    await world.services.worker.restart();
                    world.services.worker.setReloadDevVarsOnRequest(true);
                    if (profile === "early") await stack.setConfig("kiloclaw:workerRestartedForTag", { value: tags.next });
                    await stack.up();
                    const rec = world.services.worker.instance(USER);
                    assert.equal(rec?.machineImage, refs.next);
                    assert.equal(world.services.fly.machines().find((m) => m.id === rec?.flyMachineId)?.config?.image, refs.next);
                });
            }
        });
    }
});
