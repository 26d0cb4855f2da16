// `scripts/smoke-test.sh` runs this (the ImageValidation component runs that
// script via @pulumi/command). Environment:
//   IMAGE (required)                     local image reference or id
//   EXPECTED_OPENCLAW_VERSION (required) the Dockerfile's pin, e.g. 2026.2.9
//   EXPECTED_NODE_VERSION                the Dockerfile's Node pin, e.g. 22.13.1 (unchecked when empty)
//   PREVIOUS_IMAGE                       image to compare sizes with (default: newest other tag of the repository)
//   STARTUP_DEADLINE_SECONDS (60)        each short check
//   GATEWAY_DEADLINE_SECONDS (90)        first 2xx after docker run (the real gateway: 15-62 s)
//   PUSHED_BESIDE                        the registry reference pushed while this ran (a failure says nothing points at it)
//   SMOKE_RUN_ID                         the run's identity (container name prefix, label kiloclaw-rollout.smoke.run)
//   DOCTOR_DEADLINE_SECONDS (startup's) openclaw doctor (the real one: 4-6 s once the gateway booted, 23-66 s fresh);
//                                        beside: counted from the gateway's answer
//   DOCTOR_MODE (beside)                 beside: in the gateway's container at the lowest priority once the config is
//                                        written; exec: there once the gateway answers; fresh: its own container
// Stdout: the report, then one summary line (SUMMARY_MARKER + JSON). Stderr: failures with their next step.
// Exit: 0 all passed, 1 a check failed, 2 setup problem, 130/143 interrupted (containers removed first; the report
// says which checks did not finish).
import { formatFailures, formatReport, summaryLine } from "./report";
import { DEFAULT_DOCTOR_MODE, DOCTOR_MODES, DoctorMode, validateImage, ValidationSetupError } from "./validate";

function usage(message: string): never {
    process.stderr.write(`smoke-test: ${message}\n`);
    process.exit(2);
}

function seconds(name: string, fallback: number): number {
    const raw = process.env[name];
    if (raw === undefined || raw === "") return fallback;
    if (!/^[1-9][0-9]*$/.test(raw)) usage(`${name} must be a positive whole number of seconds, got '${raw}'`);
    return Number(raw);
}

/** The push runs beside the validation (rollout.ts): after a failure its tag is in the registry, unused. */
function pushedBesideNote(): string[] {
    const ref = process.env.PUSHED_BESIDE;
    if (!ref) return [];
    return [
        `Note: ${ref} was pushed while this validation ran; nothing points at it (the worker and the instance keep their tag).`,
        "  Fix the image and run `pulumi up` again; to push only validated images: `pulumi config set kiloclaw:strictOrder true`.",
    ];
}

async function main(): Promise<number> {
    const image = process.env.IMAGE ?? "";
    const expected = process.env.EXPECTED_OPENCLAW_VERSION ?? "";
    if (!image) usage("IMAGE is required (the local image to test)");
    if (!expected) usage("EXPECTED_OPENCLAW_VERSION is required (e.g. 2026.2.9)");
    const startup = seconds("STARTUP_DEADLINE_SECONDS", 60);
    const gateway = seconds("GATEWAY_DEADLINE_SECONDS", 90);
    const doctorDeadline = seconds("DOCTOR_DEADLINE_SECONDS", startup);
    const doctorMode = (process.env.DOCTOR_MODE || DEFAULT_DOCTOR_MODE) as DoctorMode;
    if (!DOCTOR_MODES.includes(doctorMode)) usage(`DOCTOR_MODE must be one of ${DOCTOR_MODES.join(", ")}, got '${doctorMode}'`);

    const runId = process.env.SMOKE_RUN_ID || undefined;
    if (runId !== undefined && !/^[a-z0-9][a-z0-9_.-]{0,62}$/.test(runId)) usage(`SMOKE_RUN_ID must be a container name prefix, got '${runId}'`);

    const interrupt = new AbortController();
    // smoke-test.sh runs this under `timeout`: if that wrapper is killed (SIGKILL), nobody would pass a signal on;
    // being orphaned (a new parent) is the interrupt then.
    const parent = process.ppid;
    const orphaned = setInterval(() => {
        if (process.ppid !== parent && exitCode === 0) {
            exitCode = 143;
            interrupt.abort("its parent process was killed");
        }
    }, 500);
    orphaned.unref();
    let exitCode = 0;
    for (const [signal, code] of [
        ["SIGINT", 130],
        ["SIGTERM", 143],
    ] as const) {
        process.on(signal, () => {
            if (exitCode !== 0) return; // already stopping
            exitCode = code;
            interrupt.abort(signal);
        });
    }
    try {
        const report = await validateImage({
            image,
            expectedOpenclawVersion: expected,
            expectedNodeVersion: process.env.EXPECTED_NODE_VERSION || undefined,
            previousImage: process.env.PREVIOUS_IMAGE || undefined,
            startupDeadlineSeconds: startup,
            gatewayDeadlineSeconds: gateway,
            doctorDeadlineSeconds: doctorDeadline,
            doctorMode,
            runId,
            signal: interrupt.signal,
        });
        process.stdout.write(formatReport(report).join("\n") + "\n" + summaryLine(report) + "\n");
        if (exitCode !== 0) {
            // Interrupted: the containers are gone; no verdict, but which checks did not finish.
            process.stderr.write(`smoke-test: ${report.stopped ?? "interrupted"}; every container of the run was removed\n`);
            return exitCode;
        }
        if (!report.passed) process.stderr.write([...formatFailures(report), ...pushedBesideNote()].join("\n") + "\n");
        return report.passed ? 0 : 1;
    } catch (err) {
        if (exitCode !== 0) {
            process.stderr.write(`smoke-test: ${err instanceof Error ? err.message : String(err)}\n`);
            return exitCode;
        }
        if (err instanceof ValidationSetupError) usage(err.message);
        throw err;
    }
}

main().then(
    (code) => process.exit(code),
    (err: Error) => {
        process.stderr.write(`smoke-test: ${err.stack ?? err.message}\n`);
        process.exit(2);
    },
);
