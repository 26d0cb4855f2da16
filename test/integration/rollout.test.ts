// A whole rollout on real Docker and a real registry: build the fixture, the
// three smoke tests, push with Fly-style auth, warm through the Docker-backed
// Fly emulator (the image is really pulled), provision through the worker
// emulator, destroy through the worker — and nothing left behind.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { pushedDigest } from "../../components/RegistryPush";
import { configureFromStack } from "../../dynamic-providers/settings";
import { warmMachineProvider } from "../../dynamic-providers/warmMachineProvider";
import { workerImageVersionProvider } from "../../dynamic-providers/workerImageVersionProvider";
import { workerInstanceProvider } from "../../dynamic-providers/workerInstanceProvider";
import { imageTagForContext } from "../../lib/contextHash";
import { devFlyAppName } from "../../lib/identity";
import { parseOpenclawPin } from "../../lib/openclawPin";
import { INSTANCE_LABEL } from "../../sandbox/emulators/docker-machines";
import { FlyEmulator } from "../../sandbox/emulators/fly";
import { WorkerEmulator } from "../../sandbox/emulators/worker";
import {
    assertDockerRunning,
    containersWithLabel,
    dockerBuild,
    LocalRegistry,
    removeImages,
    runScript,
    SMOKE_LABEL,
    startRegistry,
} from "../../sandbox/docker";
import { scratchDir } from "../scratch";
import { materializeCheckout } from "../../sandbox/fixtures/checkout";

const USER = "0b6a3c1e-5d2f-4a7b-9c8d-1e2f3a4b5c04";
const INTERNAL_KEY = "rollout-internal-key";
const REGISTRY_APP = "kiloclaw-rehearsal";
/** This run's id: on its image's name and its machine containers, so it counts only its own beside other runs. */
const RUN_ID = randomBytes(5).toString("hex");

describe("a rollout on real Docker", function () {
    this.timeout(600_000);
    let registry: LocalRegistry;
    let fly: FlyEmulator;
    let worker: WorkerEmulator;
    let checkout: string;
    let tag: string;
    let version: string;
    const images: string[] = [];

    before(async () => {
        assertDockerRunning();
        registry = await startRegistry();
        // Shaped like the real cloud/kiloclaw: the worker's files, node_modules/ and .wrangler/ beside the image's.
        checkout = materializeCheckout(path.join(scratchDir("kiloclaw-rehearsal-"), "kiloclaw"));
        fs.writeFileSync(
            path.join(checkout, ".dev.vars"),
            [
                `INTERNAL_API_SECRET=${INTERNAL_KEY}`,
                "GATEWAY_TOKEN_SECRET=rehearsal-gateway-secret",
                `FLY_API_TOKEN=${registry.token}`,
                "WORKER_ENV=development",
                `FLY_REGISTRY_APP=${REGISTRY_APP}`,
                "FLY_IMAGE_TAG=dev-previous",
                "",
            ].join("\n"),
        );
        fly = await FlyEmulator.start({
            token: registry.token,
            docker: { registryAuth: { server: registry.server, username: "x", password: registry.token }, instance: RUN_ID },
        });
        worker = await WorkerEmulator.start({ devVarsPath: path.join(checkout, ".dev.vars"), flyApiUrl: fly.url, registryServer: registry.server });
        tag = imageTagForContext(checkout);
        version = parseOpenclawPin(fs.readFileSync(path.join(checkout, "Dockerfile"), "utf8")).version;
    });

    after(async () => {
        await worker?.close();
        await fly?.close();
        await registry?.stop();
        await removeImages(images);
    });

    it("builds, smoke-tests, pushes, warms, re-provisions and destroys", async () => {
        const local = `kiloclaw-rollout-test-${RUN_ID}:${tag}`;
        const target = `${registry.server}/${REGISTRY_APP}:${tag}`;
        images.push(local, target);
        await dockerBuild(checkout, local);

        const smoke = await runScript("smoke-test.sh", [], {
            env: { IMAGE: local, EXPECTED_OPENCLAW_VERSION: version, STARTUP_DEADLINE_SECONDS: "30", GATEWAY_DEADLINE_SECONDS: "30" },
        });
        assert.equal(smoke.code, 0, smoke.stdout + smoke.stderr);
        assert.deepEqual(await containersWithLabel(SMOKE_LABEL, [local]), []);

        const push = await runScript("push-image.sh", [], {
            env: { SOURCE_IMAGE: local, TARGET_IMAGE: target, REGISTRY_SERVER: registry.server, REGISTRY_USERNAME: "x" },
            input: registry.token,
        });
        assert.equal(push.code, 0, push.stdout + push.stderr);
        const digest = pushedDigest(push.stdout);
        assert.match(digest, /^sha256:[0-9a-f]{64}$/);
        const manifest = await registry.request(`/v2/${REGISTRY_APP}/manifests/${tag}`, {
            method: "HEAD",
            headers: { accept: "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" },
        });
        assert.equal(manifest.status, 200);
        assert.equal(manifest.headers.get("docker-content-digest"), digest);
        // The image must come from the registry, not from the local build.
        await removeImages([target]);

        await configureFromStack({
            config: {
                get: (k: string) =>
                    (
                        ({
                            "kiloclaw:flyApiUrl": fly.url,
                            "kiloclaw:flyApiToken": registry.token,
                            "kiloclaw:workerUrl": worker.url,
                            "kiloclaw:internalApiKey": INTERNAL_KEY,
                            "kiloclaw:kiloclawDir": checkout,
                        }) as Record<string, string>
                    )[k],
                require: (k: string) => k,
            },
        });
        const warm = await warmMachineProvider.create({
            appName: REGISTRY_APP,
            region: "iad",
            image: target,
            env: { KILOCODE_API_KEY: "warm" },
            owner: "kiloclaw-rollout.rehearsal",
            timeoutSeconds: 120,
            waitSeconds: 60,
        });
        assert.ok(fly.pulledImages.includes(target), `pulled: ${fly.pulledImages.join(", ")}`);
        assert.equal(fly.machine(REGISTRY_APP, warm.id)?.state, "destroyed");
        assert.deepEqual(await containersWithLabel(`${INSTANCE_LABEL}=${RUN_ID}`), []);

        await workerImageVersionProvider.create!({
            imageTag: tag,
            imageDigest: digest,
            openclawVersion: version,
            publish: true,
        });
        // The developer restarts `pnpm start` so the worker reads the new FLY_IMAGE_TAG.
        await worker.restart();

        const instanceInputs = {
            userId: USER,
            imageTag: tag,
            imageRef: target,
            openclawVersion: version,
            region: "iad",
            kilocodeApiKey: "test-key",
            expectedFlyAppName: devFlyAppName(USER),
            timeoutSeconds: 120,
            pollMs: 200,
        };
        const created = await workerInstanceProvider.create!(instanceInputs);
        const outs = created.outs!;
        assert.equal(outs.status, "running");
        assert.equal(outs.runningImage, target);
        const running = await containersWithLabel(`${INSTANCE_LABEL}=${RUN_ID}`);
        assert.equal(running.length, 1, `machine containers: ${running.join(", ")}`);
        const port = fly.hostPort(devFlyAppName(USER), outs.flyMachineId!);
        const page = await fetch(`http://127.0.0.1:${port}/`);
        assert.equal(page.status, 200);

        await workerInstanceProvider.delete!(created.id, outs);
        assert.equal(worker.instance(USER), undefined);
        let left: string[] = ["?"];
        for (let i = 0; i < 100 && left.length; i++) {
            left = await containersWithLabel(`${INSTANCE_LABEL}=${RUN_ID}`);
            if (left.length) await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(left, [], "a machine container outlived the destroy");
        assert.deepEqual(fly.deletedApps, [], "the app must not be deleted directly");
    });
});
