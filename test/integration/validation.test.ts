// The image validation (scripts/smoke-test.sh → validation/) on a real Docker
// engine, on both shapes of the image (Feb-26: start script; newest: controller):
// every check of the runbook's Step 2, each failure variant failing with its own
// message, a doctor that hangs and ignores SIGTERM failing at its deadline, and
// nothing left behind (containers of the run's label, temp dirs), also after
// SIGTERM, SIGINT and SIGKILL.
import * as assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import {
    assertDockerRunning,
    buildFixture,
    containersWithLabel,
    FIXTURE_SHAPES,
    FixtureShape,
    FixtureVariant,
    removeImages,
    run,
    runScript,
    SMOKE_LABEL,
    SMOKE_RUN_KEY,
    startScript,
} from "../../sandbox/docker";
import { parseValidationOutput } from "../../validation/report";
import { CHECK_NAMES, CheckResult, validateImage } from "../../validation/validate";

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Polls `check` every 200 ms until it returns true; throws after `seconds`. */
async function eventually(what: string, seconds: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
    }
}

/** The report line of one check: "✔ gateway   7.2s  HTTP 200 …". */
function line(stdout: string, check: string): string {
    const found = stdout.split("\n").find((l) => new RegExp(`^  [✔✘–] ${escape(check)}\\s`).test(l));
    assert.ok(found, `no report line for ${check} in:\n${stdout}`);
    return found;
}

/** Containers of one run, by its label only. */
const ofRun = (runId: string) => containersWithLabel(`${SMOKE_RUN_KEY}=${runId}`);
const newRunId = () => `kiloclaw-smoke-test-${randomBytes(4).toString("hex")}`;

for (const shape of Object.keys(FIXTURE_SHAPES) as FixtureShape[])
    describe(`image validation against a real engine (${shape} shape)`, function () {
        const PIN = FIXTURE_SHAPES[shape].openclaw;
        const NODE = FIXTURE_SHAPES[shape].node;
        const runId = randomBytes(4).toString("hex");
        const variants: FixtureVariant[] = ["good", "exits", "no-gateway", "wrong-version", "no-clawd", "doctor-crashes", "bad-config"];
        type Doctor = "doctor-hangs" | "config-invalid" | "config-changes";
        const images = Object.fromEntries(
            [...variants, "doctor-hangs", "config-invalid", "config-changes"].map((v) => [v, `kiloclaw-validation-test-${shape}:${v}-${runId}`]),
        ) as Record<FixtureVariant | Doctor, string>;
        const ourImages = Object.values(images);
        let scratch: string;

        before(async function () {
            assertDockerRunning();
            const base = await runScript("import-fixture-base.sh");
            assert.equal(base.code, 0, base.stderr);
            // A gateway that takes a few seconds to boot, like the real one (which takes 15-60 s).
            for (const v of variants) await buildFixture(images[v], v, { bootSeconds: 2, shape });
            await buildFixture(images["doctor-hangs"], "good", { bootSeconds: 2, shape, doctor: "hangs" });
            await buildFixture(images["config-invalid"], "good", { bootSeconds: 2, shape, doctor: "config-invalid" });
            await buildFixture(images["config-changes"], "good", { bootSeconds: 2, shape, doctor: "config-changes" });
        });

        after(async function () {
            await removeImages(ourImages);
        });

        beforeEach(function () {
            scratch = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-validation-test-"));
        });

        afterEach(async function () {
            assert.deepEqual(await containersWithLabel(SMOKE_LABEL, ourImages), [], "validation containers left behind");
            assert.deepEqual(fs.readdirSync(scratch), [], "temp files left behind");
            fs.rmSync(scratch, { recursive: true, force: true });
        });

        const smoke = (image: string, env: Record<string, string> = {}) =>
            runScript("smoke-test.sh", [], {
                env: { IMAGE: image, EXPECTED_OPENCLAW_VERSION: PIN, EXPECTED_NODE_VERSION: NODE, TMPDIR: scratch, ...env },
            });

        it("passes every check of Step 2 on the good image, with placeholders only", async function () {
            // A real-looking secret in our own environment must never reach the containers or the output.
            const r = await smoke(images.good, { KILOCODE_API_KEY: "sk-real-looking-secret-123", PREVIOUS_IMAGE: images["no-clawd"] });
            assert.equal(r.code, 0, r.stdout + r.stderr);
            const { report, summary } = parseValidationOutput(r.stdout);
            for (const check of CHECK_NAMES) assert.match(line(report, check), /^ {2}✔ /, `${check} passed`);
            assert.match(line(report, "openclaw version"), new RegExp(`${escape(PIN)}$`));
            assert.match(line(report, "node version"), new RegExp(`v${escape(NODE)}$`));
            assert.match(line(report, "directories"), /\/root\/\.openclaw, \/root\/clawd/);
            // Beside the boot in the gateway's container, once the runtime config was written: the fixture's doctor warns of
            // two things.
            assert.match(line(report, "openclaw doctor"), /ran beside the boot in the gateway's container, 2 warning\(s\)$/);
            assert.match(report, /! ⚠ Sessions: no session directories found/, "doctor's expected warnings are shown");
            assert.match(line(report, "startup"), /container running the whole time/);
            assert.match(line(report, "gateway"), /HTTP 200 on http:\/\/127\.0\.0\.1:\d+\/ \d+\.\ds after docker run/);
            assert.match(line(report, "runtime config"), /gateway port 18789, model base URL "https:\/\/api\.kilo\.ai\/api\/openrouter\/"/);
            assert.match(report, /all 8 checks passed/);
            assert.ok(!(r.stdout + r.stderr).includes("sk-real-looking-secret-123"), "a secret from the environment was printed");
            assert.ok(!report.includes("test-token") && !report.includes("apiKey"), "the runtime config's token/key left the container");

            // Image size and its change from the previous tag, as the component's outputs see them.
            const size = async (ref: string) => Number((await run("docker", ["image", "inspect", "-f", "{{.Size}}", ref])).stdout.trim());
            const [mine, previous] = await Promise.all([size(images.good), size(images["no-clawd"])]);
            assert.deepEqual(
                { size: summary?.imageSizeBytes, change: summary?.imageSizeChangeBytes, previous: summary?.previousImage },
                { size: mine, change: mine - previous, previous: images["no-clawd"] },
            );
            assert.match(line(report, "image size"), new RegExp(`vs ${escape(images["no-clawd"])}\\)$`));
        });

        it("compares the size with the newest other tag of the repository when none is given", async function () {
            const r = await smoke(images.good);
            assert.equal(r.code, 0, r.stdout + r.stderr);
            const { summary } = parseValidationOutput(r.stdout);
            assert.ok(summary?.previousImage?.startsWith(`kiloclaw-validation-test-${shape}:`), `previous: ${summary?.previousImage}`);
            assert.notEqual(summary?.previousImage, images.good);
        });

        const failures: Array<{ variant: FixtureVariant; check: string; message: RegExp; hint: RegExp; env?: Record<string, string> }> = [
            {
                variant: "wrong-version",
                check: "openclaw version",
                // The fixture's binary is one patch release below its pin.
                message: new RegExp(
                    `openclaw --version printed '${escape(PIN.replace(/\d+$/, (p) => String(Number(p) - 1)))}' but the expected version is '${escape(PIN)}'`,
                ),
                hint: /align the Dockerfile pin/,
            },
            { variant: "no-clawd", check: "directories", message: /missing in the image: \/root\/clawd$/m, hint: /RUN mkdir -p \/root\/\.openclaw/ },
            {
                variant: "doctor-crashes",
                check: "openclaw doctor",
                message: /openclaw doctor crashed beside the boot in the gateway's container \(exit code 1\)/,
                hint: /docker exec kiloclaw-test openclaw doctor$/m,
            },
            {
                variant: "exits",
                check: "startup",
                message: /the container exited with code 1 \d+\.\ds after start/,
                // Generous deadlines: the failure must come from the exit itself, not from waiting a deadline out.
                env: { STARTUP_DEADLINE_SECONDS: "600", GATEWAY_DEADLINE_SECONDS: "600" },
                hint: /"Container won't start"/,
            },
            {
                variant: "no-gateway",
                check: "gateway",
                message:
                    /no HTTP 2xx from http:\/\/127\.0\.0\.1:\d+\/ \(container port 18789\) within its 4s deadline; last error: \w+; nothing listens on 18789 inside the container/,
                hint: /"Gateway not responding"/,
                env: { GATEWAY_DEADLINE_SECONDS: "4" },
            },
            {
                variant: "bad-config",
                check: "runtime config",
                message: /\/root\/\.openclaw\/openclaw\.json is not valid JSON/,
                hint: /Inspect runtime config/,
            },
        ];
        for (const f of failures) {
            it(`fails the ${f.check} check on the ${f.variant} variant, with its own message and next step`, async function () {
                const r = await smoke(images[f.variant], f.env);
                assert.equal(r.code, 1, r.stdout + r.stderr);
                assert.match(line(r.stdout, f.check), /^ {2}✘ /);
                assert.match(r.stderr, new RegExp(`^✘ ${escape(f.check)}: `, "m"));
                assert.match(r.stderr, f.message);
                assert.match(r.stderr, f.hint);
                const failed = r.stdout.split("\n").filter((l) => /^ {2}✘ /.test(l));
                assert.equal(failed.length, 1, `only ${f.check} fails:\n${r.stdout}`);
                assert.match(r.stdout, new RegExp(`FAILED: ${escape(f.check)} `));
            });
        }

        it("shows a failed container's log tail and debugging steps from the image's own command, with commands the image has", async function () {
            // The push ran beside this validation (rollout.ts): the failure says its tag is in the registry, unused.
            const exits = await smoke(images.exits, { PUSHED_BESIDE: "registry.fly.io/kiloclaw-dev:dev-beside00001" });
            assert.match(
                exits.stderr,
                /^Note: registry\.fly\.io\/kiloclaw-dev:dev-beside00001 was pushed while this validation ran; nothing points at it/m,
            );
            assert.match(exits.stderr, /pulumi config set kiloclaw:strictOrder true/);
            // Both streams of the log (stdout and stderr lines interleave by the engine's timestamps, to the microsecond).
            if (shape === "feb26") {
                assert.match(exits.stderr, /^ {4}\| Patching config at: \/root\/\.openclaw\/openclaw\.json$/m);
                assert.match(exits.stderr, /^ {4}\| ERROR: config generation failed/m);
                // The start script's own shell (busybox: sh but no bash, wget but no curl).
                assert.match(exits.stderr, /--entrypoint sh \S+ -x \/usr\/local\/bin\/start-openclaw\.sh/);
            } else {
                assert.match(exits.stderr, /^ {4}\| \[controller\] bootstrap: onboard/m);
                assert.match(exits.stderr, /^ {4}\| \[controller\] ERROR: bootstrap failed/m);
                assert.match(exits.stderr, /run the image's own command \(node \/usr\/local\/bin\/kiloclaw-controller\.js\)/);
                assert.doesNotMatch(exits.stderr + exits.stdout, /start-openclaw/, "names a script this image does not have");
            }
            assert.doesNotMatch(exits.stderr, /\bbash\b/);

            const noGateway = await smoke(images["no-gateway"], { GATEWAY_DEADLINE_SECONDS: "3" });
            assert.match(noGateway.stderr, /^ {4}\| .*waiting for plugins to load/m, "the log tail");
            assert.doesNotMatch(noGateway.stderr, /was pushed/, "a note without a push beside it");
            assert.match(noGateway.stderr, /nothing listens on 18789 inside the container/, "dead or slow told apart");
            assert.match(noGateway.stderr, /docker exec kiloclaw-test wget -qO- http:\/\/localhost:18789\//);
            assert.doesNotMatch(noGateway.stderr, /curl/);
            assert.match(line(noGateway.stdout, "startup"), /^ {2}✔ .*running the whole time/, "the container itself stayed up");
        });

        it("fails the node version check when the image's Node differs from the Dockerfile's pin", async function () {
            const r = await smoke(images.good, { EXPECTED_NODE_VERSION: "22.99.0" });
            assert.equal(r.code, 1, r.stdout + r.stderr);
            assert.match(r.stderr, new RegExp(`node --version printed 'v${escape(NODE)}' but the Dockerfile pins Node 22\\.99\\.0`));
            assert.match(r.stderr, /kiloclaw:expectedNodeVersion/);
        });

        it("lengthens the deadlines and says so when the engine emulates the image's platform", async function () {
            // An Apple Silicon engine, as `docker info` reports it; every other docker call goes to the real engine.
            const bin = path.join(scratch, "bin");
            fs.mkdirSync(bin);
            const realDocker = (await run("bash", ["-c", "command -v docker"])).stdout.trim();
            fs.writeFileSync(
                path.join(bin, "docker"),
                `#!/usr/bin/env bash\nif [[ $1 == info ]]; then echo aarch64; exit 0; fi\nexec '${realDocker}' "$@"\n`,
                { mode: 0o755 },
            );
            try {
                const r = await smoke(images["no-gateway"], {
                    PATH: `${bin}:${process.env.PATH}`,
                    STARTUP_DEADLINE_SECONDS: "20",
                    GATEWAY_DEADLINE_SECONDS: "1",
                });
                assert.equal(r.code, 1, r.stdout + r.stderr);
                assert.match(
                    r.stdout,
                    /the Docker engine is aarch64 and the image linux\/amd64: it runs emulated, so the deadlines are ×3 \(checks 60s, gateway 3s\)/,
                );
                assert.match(r.stderr, /within its 3s deadline/);
                assert.match(r.stderr, /kiloclaw:smokeGatewaySeconds \(now 1s, ×3 under emulation\)/);
            } finally {
                fs.rmSync(bin, { recursive: true, force: true });
            }
        });

        it("rejects a missing IMAGE, a bad deadline and an image that was never built (exit 2)", async function () {
            const noImage = await smoke("");
            assert.equal(noImage.code, 2);
            assert.match(noImage.stderr, /IMAGE is required/);
            const badDeadline = await smoke(images.good, { GATEWAY_DEADLINE_SECONDS: "soon" });
            assert.equal(badDeadline.code, 2);
            assert.match(badDeadline.stderr, /GATEWAY_DEADLINE_SECONDS must be a positive whole number of seconds, got 'soon'/);
            const unknown = await smoke(`kiloclaw-validation-test:never-built-${runId}`);
            assert.equal(unknown.code, 2);
            assert.match(unknown.stderr, /is not in the local Docker engine; build it first/);
        });

        for (const [signal, code] of [
            ["SIGTERM", 143],
            ["SIGINT", 130],
        ] as const) {
            it(`removes its containers when stopped with ${signal} while waiting for the gateway`, async function () {
                const proc = startScript("smoke-test.sh", [], {
                    env: { IMAGE: images["no-gateway"], EXPECTED_OPENCLAW_VERSION: PIN, GATEWAY_DEADLINE_SECONDS: "600", TMPDIR: scratch },
                });
                await eventually("a running gateway container", 120, async () =>
                    (await containersWithLabel(SMOKE_LABEL, [images["no-gateway"]])).some((n) => n.endsWith("-gateway")),
                );
                // To `timeout`, which passes it to its whole process group, as a terminal's Ctrl-C reaches every process
                // of the job: the validation's docker clients (their own groups) must not end first and read as a verdict.
                proc.child.kill(signal);
                const r = await proc.done;
                assert.equal(r.code, code, r.stdout + r.stderr);
                // Stopped in the report, or before the checks began (while the engine and image were looked at).
                const stopped = new RegExp(`^STOPPED: interrupted \\(${signal}\\)|interrupted \\(${signal}\\) before any check started`, "m");
                assert.match(r.stdout + r.stderr, stopped, r.stdout + r.stderr);
                assert.doesNotMatch(r.stdout, /^ {2}✘ /m, "an interrupt is no check's failure");
                // afterEach: no labelled container, no temp file.
            });
        }

        it("sweeps up the containers of an earlier run that was SIGKILLed", async function () {
            const killed = startScript("smoke-test.sh", [], {
                env: { IMAGE: images["no-gateway"], EXPECTED_OPENCLAW_VERSION: PIN, GATEWAY_DEADLINE_SECONDS: "600", TMPDIR: scratch },
            });
            await eventually("a running gateway container", 120, async () =>
                (await containersWithLabel(SMOKE_LABEL, [images["no-gateway"]])).some((n) => n.endsWith("-gateway")),
            );
            // SIGKILL the validation itself (smoke-test.sh runs it under `timeout`): no handler runs, the container stays.
            const [gatewayName] = (await containersWithLabel(SMOKE_LABEL, [images["no-gateway"]])).filter((n) => n.endsWith("-gateway"));
            const owner = await run("docker", ["inspect", "-f", '{{index .Config.Labels "kiloclaw-rollout.smoke.owner"}}', gatewayName]);
            process.kill(Number(owner.stdout.trim().split(":").pop()), "SIGKILL");
            await killed.done;
            await eventually(
                "the short checks' --rm containers to go",
                60,
                async () => (await containersWithLabel(SMOKE_LABEL, [images["no-gateway"]])).length === 1,
            );

            const next = await smoke(images.good);
            assert.equal(next.code, 0, next.stdout + next.stderr);
            assert.match(next.stdout, /note: removed leftover container \w+ \(pid \d+\) of an earlier run/);
        });

        it("validateImage (the module) reports each check as it finishes and cleans up when aborted", async function () {
            const seen: CheckResult[] = [];
            const abort = new AbortController();
            const validation = validateImage({
                image: images["no-gateway"],
                expectedOpenclawVersion: PIN,
                gatewayDeadlineSeconds: 600,
                signal: abort.signal,
                onCheck: (c) => {
                    seen.push(c);
                    // Once the short checks are in, only the gateway is left to wait for: stop there.
                    if (["openclaw version", "node version", "directories"].every((n) => seen.some((s) => s.name === n))) abort.abort("SIGTERM");
                },
            });
            const report = await validation;
            assert.equal(report.passed, false);
            assert.deepEqual(
                report.checks
                    .filter((c) => c.status === "passed")
                    .map((c) => c.name)
                    .sort(),
                ["directories", "node version", "openclaw version", ...(seen.some((c) => c.name === "image size") ? ["image size"] : [])].sort(),
            );
            assert.equal(report.checks.find((c) => c.name === "gateway")!.summary, "did not finish: interrupted (SIGTERM)");
            // Doctor runs beside the boot from the start (the default), so it was stopped too.
            assert.equal(report.checks.find((c) => c.name === "openclaw doctor")!.summary, "did not finish: interrupted (SIGTERM)");
            assert.deepEqual(await containersWithLabel(SMOKE_LABEL, [images["no-gateway"]]), [], "removed before validateImage settled");
        });

        // Beside the boot, its deadline counts from the gateway's answer (until then doctor yields the CPU to the boot).
        for (const mode of ["beside", "exec"] as const) {
            it(`fails a doctor that hangs and ignores SIGTERM at its deadline (DOCTOR_MODE=${mode}), ends the run at once, and leaves no container`, async function () {
                const id = newRunId();
                const r = await smoke(images["doctor-hangs"], { DOCTOR_DEADLINE_SECONDS: "3", DOCTOR_MODE: mode, SMOKE_RUN_ID: id });
                // The process exited (no wait for the doctor's client or its container) with the check's verdict.
                assert.equal(r.code, 1, r.stdout + r.stderr);
                const failed =
                    mode === "beside"
                        ? /^ {2}✘ .*`openclaw doctor` did not finish within its 3s deadline from the gateway's answer \(started [\d.]+s, the gateway's answer ([\d.]+)s, stopped ([\d.]+)s\)$/m.exec(
                              r.stdout,
                          )
                        : /^ {2}✘ .*`openclaw doctor` did not finish within its 3s deadline \(started ([\d.]+)s, stopped ([\d.]+)s\)$/m.exec(
                              r.stdout,
                          );
                assert.ok(failed, r.stdout);
                const total = Number(/^FAILED: .* \(after ([\d.]+)s;/m.exec(r.stdout)?.[1]);
                // By the report's own clock: doctor stopped within its deadline + 5 s, and the run ended within 5 s of that.
                assert.ok(Number(failed[2]) - Number(failed[1]) <= 3 + 5, failed[0]);
                assert.ok(total - Number(failed[2]) <= 5, `run ended ${total}s, doctor stopped ${failed[2]}s`);
                assert.match(line(r.stdout, "gateway"), /^ {2}✔ /, "the gateway answered before doctor's deadline began");
                assert.match(line(r.stdout, "runtime config"), /^ {2}– .*did not finish: the openclaw doctor check failed$/);
                assert.match(r.stdout, /^FAILED: openclaw doctor \(after [\d.]+s; did not finish: runtime config; nothing was pushed\)$/m);
                assert.match(r.stderr, /docker exec kiloclaw-test openclaw doctor/);
                assert.deepEqual(await ofRun(id), [], "containers of the run left behind");
            });
        }

        it("runs doctor again once the gateway answers when the entrypoint changed the config after doctor had read it beside the boot", async function () {
            const r = await smoke(images["config-changes"]);
            assert.equal(r.code, 0, r.stdout + r.stderr);
            assert.match(
                line(r.stdout, "openclaw doctor"),
                /^ {2}✔ .*ran in the gateway's container \(the config changed after doctor had read it beside the boot\), \d+ warning\(s\)$/,
            );
            assert.match(line(r.stdout, "runtime config"), /^ {2}✔ /);
        });

        it("fails a hanging doctor in a fresh container too (DOCTOR_MODE=fresh), and leaves no container", async function () {
            const id = newRunId();
            const r = await smoke(images["doctor-hangs"], { DOCTOR_DEADLINE_SECONDS: "3", DOCTOR_MODE: "fresh", SMOKE_RUN_ID: id });
            assert.equal(r.code, 1, r.stdout + r.stderr);
            assert.match(line(r.stdout, "openclaw doctor"), /did not finish within its 3s deadline \(started [\d.]+s, stopped [\d.]+s\)$/);
            assert.match(r.stderr, /docker run --rm -e KILOCODE_API_KEY=test-key \S+ openclaw doctor/);
            assert.deepEqual(await ofRun(id), []);
        });

        it('fails the runtime config check when doctor says "Config invalid" (and exits 0)', async function () {
            const r = await smoke(images["config-invalid"]);
            assert.equal(r.code, 1, r.stdout + r.stderr);
            assert.match(line(r.stdout, "openclaw doctor"), /^ {2}✔ /);
            assert.match(r.stderr, /^✘ runtime config: openclaw doctor says \/root\/\.openclaw\/openclaw\.json is invalid/m);
            assert.match(r.stderr, /^ {4}\| Config invalid; doctor will run with best-effort config\.$/m, "doctor's whole line");
            assert.match(r.stderr, /docker exec kiloclaw-config openclaw doctor/);
        });

        it("ends at once when interrupted while a hanging doctor runs: the report says which checks did not finish, no container is left", async function () {
            const id = newRunId();
            const proc = startScript("smoke-test.sh", [], {
                env: {
                    IMAGE: images["doctor-hangs"],
                    EXPECTED_OPENCLAW_VERSION: PIN,
                    DOCTOR_DEADLINE_SECONDS: "600",
                    SMOKE_RUN_ID: id,
                    TMPDIR: scratch,
                },
            });
            try {
                await eventually("doctor running in the gateway's container", 120, async () => {
                    const [gateway] = (await ofRun(id)).filter((n) => n.endsWith("-gateway"));
                    return gateway !== undefined && (await run("docker", ["top", gateway])).stdout.includes("openclaw-doctor");
                });
            } catch (e) {
                proc.child.kill("SIGTERM"); // leave nothing running behind a failed test
                await proc.done;
                throw e;
            }
            proc.child.kill("SIGTERM");
            const r = await proc.done;
            assert.equal(r.code, 143, r.stdout + r.stderr);
            assert.match(line(r.stdout, "openclaw doctor"), /^ {2}– .*did not finish: interrupted \(SIGTERM\)$/);
            assert.match(r.stdout, /^STOPPED: interrupted \(SIGTERM\) \(after [\d.]+s; did not finish: [^;]*openclaw doctor/m);
            assert.match(r.stderr, /every container of the run was removed/);
            assert.deepEqual(await ofRun(id), [], "containers of the run left behind");
        });
    });
