// One OpenClaw release everywhere: the Dockerfile pins it exactly, and the
// smoke test, .dev.vars, the published version and the instance all name it.
import { ReportViolation, StackValidationArgs, StackValidationPolicy } from "@pulumi/policy";
import { COMPONENT_TYPES } from "../lib/contract";
import { label, TYPES, withFix } from "./helpers";
import { ofType, UNKNOWN, Unknown } from "./props";

const EXACT_VERSION = /^\d+\.\d+\.\d+$/;

export function isExactVersion(spec: string): boolean {
    return EXACT_VERSION.test(spec);
}

/** Why an `openclaw@<spec>` pin is not an exact x.y.z, or undefined when it is. */
export function describePinProblem(spec: string | undefined): string | undefined {
    const pin = spec?.trim() ?? "";
    if (pin === "") return "openclaw is installed without a version (no pin)";
    if (isExactVersion(pin)) return undefined;
    if (/^latest$/i.test(pin)) return `\`openclaw@${pin}\` is not a pin: it floats to whatever npm serves`;
    if (/[\^~<>=*|]|\s|(?:^|\.)[xX](?:\.|$)/.test(pin)) return `\`openclaw@${pin}\` is a version range, not a pin`;
    return `\`openclaw@${pin}\` is not an exact x.y.z version`;
}

const PIN_FIX =
    "pin an exact version on the Dockerfile's install line, e.g. `RUN npm install -g openclaw@2026.2.9 && openclaw --version`, " +
    "so the image, the smoke test, .dev.vars OPENCLAW_VERSION and the published version all name one release.";

/** 1. The Dockerfile pins openclaw to an exact x.y.z (not applicable in prebuilt-image mode). */
export const openclawVersionPinned: StackValidationPolicy = {
    name: "openclaw-version-pinned",
    description:
        "The Dockerfile's `npm install -g openclaw@<pin>` (WorkerImageVersion.openclawPin) is an exact x.y.z: " +
        "no `latest`, no range, no missing pin. " +
        "Not applicable in prebuilt-image mode (no pin and no docker Image in the stack).",
    enforcementLevel: "mandatory",
    remediationSteps: `In the Dockerfile, ${PIN_FIX}`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const versions = ofType(args.resources, COMPONENT_TYPES.workerImageVersion);
        if (versions.length === 0) args.notApplicable("no WorkerImageVersion in the stack");
        const builds = ofType(args.resources, TYPES.dockerImage);
        let applicable = false;
        for (const version of versions) {
            const pin = version.props.string("openclawPin");
            if (pin === UNKNOWN) {
                applicable = true;
                continue;
            }
            // No pin and nothing built here: the rollout publishes a prebuilt image.
            if ((pin === undefined || pin.trim() === "") && builds.length === 0) continue;
            applicable = true;
            const problem = describePinProblem(pin);
            if (problem) {
                const built = builds.length ? ` while the stack builds ${label(builds[0])}` : "";
                reportViolation(withFix(`${label(version)}: ${problem}${built}.`, PIN_FIX), version.urn);
            }
        }
        if (!applicable) args.notApplicable("prebuilt-image mode: no openclaw pin and no docker Image in the stack");
    },
};

/** One OpenClaw version as one place in the stack states it. */
export interface VersionSource {
    source: string;
    value: string;
    urn: string;
}

/** Every place the stack states the OpenClaw version (unknown and absent ones left out). */
export function collectVersionSources(resources: StackValidationArgs["resources"]): VersionSource[] {
    const sources: VersionSource[] = [];
    const add = (r: { type: string; name: string; urn: string }, what: string, path: string, value: string | Unknown | undefined) => {
        if (typeof value === "string" && value.trim() !== "") {
            sources.push({ source: `${what} (${label(r)}.${path})`, value: value.trim(), urn: r.urn });
        }
    };
    for (const r of ofType(resources, COMPONENT_TYPES.workerImageVersion)) add(r, "Dockerfile pin", "openclawPin", r.props.string("openclawPin"));
    for (const r of ofType(resources, TYPES.command)) {
        add(r, "smoke test", "environment.EXPECTED_OPENCLAW_VERSION", r.props.string("environment", "EXPECTED_OPENCLAW_VERSION"));
    }
    for (const r of ofType(resources, TYPES.workerImageVersion)) {
        add(r, ".dev.vars OPENCLAW_VERSION / published version", "openclawVersion", r.props.string("openclawVersion"));
    }
    for (const r of ofType(resources, TYPES.workerInstance)) add(r, "instance", "openclawVersion", r.props.string("openclawVersion"));
    return sources;
}

const CONSISTENT_FIX =
    "make every one of them the Dockerfile's `openclaw@x.y.z` pin: let the program derive EXPECTED_OPENCLAW_VERSION, .dev.vars OPENCLAW_VERSION " +
    "and the instance's version from the pin (remove any version override in the stack config), then run `pulumi up` again.";

/** 2. Pin, smoke-test expectation, .dev.vars/published version and instance version agree. */
export const openclawVersionConsistent: StackValidationPolicy = {
    name: "openclaw-version-consistent",
    description:
        "The Dockerfile pin (WorkerImageVersion.openclawPin), the smoke test's EXPECTED_OPENCLAW_VERSION, WorkerImageVersion.openclawVersion " +
        "(.dev.vars OPENCLAW_VERSION and the published version) and WorkerInstance.openclawVersion are one version.",
    enforcementLevel: "mandatory",
    remediationSteps: `Versions disagree: ${CONSISTENT_FIX}`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const sources = collectVersionSources(args.resources);
        if (sources.length === 0) args.notApplicable("no resource in the stack states an OpenClaw version");
        const distinct = new Set(sources.map((s) => s.value));
        if (distinct.size <= 1) return;
        const listing = sources.map((s) => `${s.source} = ${s.value}`).join("; ");
        const versions = ofType(args.resources, COMPONENT_TYPES.workerImageVersion);
        reportViolation(withFix(`OpenClaw versions disagree: ${listing}.`, CONSISTENT_FIX), versions.length === 1 ? versions[0].urn : undefined);
    },
};
