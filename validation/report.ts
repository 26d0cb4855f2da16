// The report a developer reads: one line per check with its result and the time
// it finished, then what to do about a failure.
import { CHECK_NAMES, CheckResult, seconds, ValidationReport } from "./validate";

/** Prefix of the report's last stdout line: the numbers the component turns into stack outputs. */
export const SUMMARY_MARKER = "::kiloclaw-validation::";

export interface ValidationSummary {
    passed: boolean;
    totalMs: number;
    imageSizeBytes: number;
    previousImage?: string;
    imageSizeChangeBytes?: number;
}

const MARK: Record<CheckResult["status"], string> = { passed: "✔", failed: "✘", skipped: "–" };
const WIDTH = Math.max(...CHECK_NAMES.map((n) => n.length));

export function checkLine(c: CheckResult): string {
    const time = c.status === "skipped" ? "" : seconds(c.atMs);
    return `  ${MARK[c.status]} ${c.name.padEnd(WIDTH)}  ${time.padStart(6)}  ${c.summary}`;
}

/** The report's lines (stdout): header, notes, one line per check (+ doctor's warnings), verdict. */
export function formatReport(r: ValidationReport): string[] {
    const node = r.expectedNodeVersion ? `, node ${r.expectedNodeVersion}` : "";
    const lines = [`image validation: ${r.image} (expecting openclaw ${r.expectedOpenclawVersion}${node})`];
    if (r.engine.emulated) {
        lines.push(
            `  note: the Docker engine is ${r.engine.architecture} and the image ${r.engine.imagePlatform}: it runs emulated, so the ` +
                `deadlines are ×${r.engine.deadlineFactor} (checks ${r.engine.startupDeadlineSeconds}s, gateway ${r.engine.gatewayDeadlineSeconds}s)`,
        );
    }
    for (const c of r.sweptContainers) lines.push(`  note: removed leftover container ${c} of an earlier run`);
    for (const c of r.checks) {
        lines.push(checkLine(c));
        if (c.status === "passed") lines.push(...c.details.map((d) => `      ! ${d}`));
    }
    const failed = r.checks.filter((c) => c.status === "failed");
    const unfinished = r.checks.filter((c) => c.status === "skipped" && c.summary.startsWith("did not finish")).map((c) => c.name);
    const cut = unfinished.length > 0 ? `; did not finish: ${unfinished.join(", ")}` : "";
    lines.push(
        r.passed
            ? `all ${r.checks.length} checks passed in ${seconds(r.totalMs)}`
            : failed.length > 0
              ? `FAILED: ${failed.map((c) => c.name).join(", ")} (after ${seconds(r.totalMs)}${cut}; nothing was pushed)`
              : `STOPPED: ${r.stopped ?? "the validation stopped"} (after ${seconds(r.totalMs)}${cut}; nothing was pushed)`,
    );
    return lines;
}

/** What went wrong and what to do (stderr): each failed check with its log tail and the runbook's next step. */
export function formatFailures(r: ValidationReport): string[] {
    return r.checks
        .filter((c) => c.status === "failed")
        .flatMap((c) => [`✘ ${c.name}: ${c.summary}`, ...c.details.map((d) => `    | ${d}`), ...c.nextSteps.map((s) => `  ${s}`)]);
}

export function summaryLine(r: ValidationReport): string {
    const summary: ValidationSummary = {
        passed: r.passed,
        totalMs: r.totalMs,
        imageSizeBytes: r.imageSizeBytes,
        previousImage: r.previousImage,
        imageSizeChangeBytes: r.imageSizeChangeBytes,
    };
    return SUMMARY_MARKER + JSON.stringify(summary);
}

/** Splits the CLI's stdout into the human report and the summary (the component's outputs). */
export function parseValidationOutput(stdout: string): { report: string; summary?: ValidationSummary } {
    const lines = stdout.replace(/\s+$/, "").split("\n");
    const marker = lines.findIndex((l) => l.startsWith(SUMMARY_MARKER));
    if (marker < 0) return { report: lines.join("\n") };
    const summary = JSON.parse(lines[marker].slice(SUMMARY_MARKER.length)) as ValidationSummary;
    return { report: lines.filter((_, i) => i !== marker).join("\n"), summary };
}
