// Instances and machines go away through the worker and the rollout's own
// resources, never behind the worker's back.
import { ResourceValidationPolicy, validateResourceOfType } from "@pulumi/policy";
import { COMMAND_TEXT_FIELDS, label, shellSegments, TYPES, withFix } from "./helpers";
import { contractClass, read } from "./props";

/**
 * The destructive calls in command text that bypass the worker: `fly apps destroy`, `fly destroy`,
 * `fly machine(s) destroy|remove|rm`, `fly volume(s) destroy`, any other `flyctl ... destroy`, and
 * HTTP DELETEs (curl, wget, httpie) against the Fly Machines API (/v1/apps/..., machines).
 */
export function findDestroyCalls(text: string): string[] {
    const found = new Set<string>();
    for (const segment of shellSegments(text)) {
        const fly = /(?:^|[\s/"'(`])(?:fly|flyctl)\s+(.*)$/.exec(segment);
        if (fly) {
            const rest = ` ${fly[1]} `;
            if (/\sapps?\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly apps destroy`");
            else if (/\s(?:machines?|m)\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly machine destroy`");
            else if (/\s(?:volumes?|vol)\s+(?:destroy|delete|remove|rm)\s/.test(rest)) found.add("`fly volume destroy`");
            else if (/\sdestroy\s/.test(rest)) found.add("`fly ... destroy`");
        }
        const httpDelete =
            (/\bcurl\b/.test(segment) && /(?:^|\s)(?:-X\s*|--request(?:=|\s+))["']?DELETE\b/i.test(segment)) ||
            (/\bwget\b/.test(segment) && /--method(?:=|\s+)["']?DELETE\b/i.test(segment)) ||
            /(?:^|\s)(?:http|https|xh)\s+(?:-\S+\s+)*DELETE\s/.test(segment);
        if (httpDelete && /\/v1\/apps\/|machines\.dev|\/machines(?:\/|\b)/.test(segment)) {
            found.add("an HTTP DELETE against the Fly Machines API");
        }
    }
    return [...found];
}

const DESTROY_FIX =
    "remove it: instances are removed by the WorkerInstance resource (on `pulumi destroy` or replacement) through the worker's " +
    "POST /api/platform/destroy, which keeps the worker's Durable Object state consistent; the warm machine is removed by the WarmMachine resource.";

/** 8. Nothing destroys Fly apps or machines behind the worker's back. */
export const destroyThroughWorker: ResourceValidationPolicy = {
    name: "destroy-through-worker",
    description:
        "No command runs `fly apps destroy`, `fly machine(s) destroy|remove|rm`, another `flyctl ... destroy`, or an HTTP DELETE against the " +
        "Fly Machines API (/v1/apps/dev-..., machines): that leaves the worker's Durable Object state behind.",
    enforcementLevel: "mandatory",
    remediationSteps: `Remove the command: ${DESTROY_FIX}`,
    validateResource: validateResourceOfType(contractClass(TYPES.command), (command, args, reportViolation) => {
        const props = read(command);
        const found: string[] = [];
        for (const field of COMMAND_TEXT_FIELDS) {
            const text = props.string(field);
            if (typeof text !== "string") continue;
            for (const call of findDestroyCalls(text)) found.push(`${call} in ${field}`);
        }
        if (found.length === 0) return;
        reportViolation(withFix(`${label(args)} bypasses the worker: ${found.join("; ")}.`, DESTROY_FIX));
    }),
};
