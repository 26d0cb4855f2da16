// The developer's local settings that the worker and the Cloud app read:
// .dev.vars (DEV_MODE, KILOCODE_API_BASE_URL, OPENCLAW_ALLOWED_ORIGINS) and
// .env.development.local, as the WorkerImageVersion component records them.
import { ReportViolation, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy, validateResourceOfType } from "@pulumi/policy";
import { COMPONENT_TYPES } from "../lib/contract";
import { label, TYPES, withFix } from "./helpers";
import { contractClass, ContractResource, ofType, read, UNKNOWN, Unknown } from "./props";

/** The user the worker substitutes for every request when DEV_MODE=true. */
export const DEV_MODE_USER_ID = "dev@kilocode.ai";

export const ENV_LOCAL_FORBIDDEN_KEYS: readonly string[] = ["NEXTAUTH_SECRET", "OPENROUTER_API_KEY"];

/** The origins of a comma-separated OPENCLAW_ALLOWED_ORIGINS value. */
export function parseAllowedOrigins(value: string): string[] {
    return value
        .split(",")
        .map((origin) => origin.trim())
        .filter((origin) => origin.length > 0);
}

function sameOrigin(a: string, b: string): boolean {
    const norm = (o: string) => o.trim().replace(/\/+$/, "").toLowerCase();
    return norm(a) === norm(b);
}

/** Whether a base URL has the shape the worker hands to machines: https://<host>/api/openrouter/. */
export function isTunnelBaseUrl(url: string): boolean {
    return /^https:\/\/[A-Za-z0-9.-]+(?::\d+)?\/api\/openrouter\/$/.test(url);
}

/** The tunnel base URL that a near miss was meant to be, when its host can be read. */
export function suggestTunnelBaseUrl(url: string): string {
    const host = /^[a-z]+:\/\/([^/?#\s]+)/i.exec(url.trim())?.[1]?.replace(/^[^@]*@/, "");
    return `https://${host ?? "<your-tunnel-host>"}/api/openrouter/`;
}

type WorkerImageVersionComponent = ContractResource<typeof COMPONENT_TYPES.workerImageVersion>;

/** One .dev.vars setting as a WorkerImageVersion component records it. */
function workerSetting(version: WorkerImageVersionComponent, key: string): string | Unknown | undefined {
    return version.props.string("workerSettings", key);
}

/** 5. .env.development.local does not override NEXTAUTH_SECRET or OPENROUTER_API_KEY. */
export const noSecretOverridesInEnvLocal: ResourceValidationPolicy = {
    name: "no-secret-overrides-in-env-local",
    description:
        "WorkerImageVersion.envLocalKeys (the names set in .env.development.local) include neither NEXTAUTH_SECRET nor OPENROUTER_API_KEY: " +
        "those must come from the Vercel-pulled .env.local.",
    enforcementLevel: "mandatory",
    remediationSteps:
        "Delete the NEXTAUTH_SECRET and OPENROUTER_API_KEY lines from .env.development.local and restart the Cloud dev server: they must come from " +
        "the Vercel-pulled .env.local, or the JWTs and API keys Fly machines use to call back through the tunnel do not work.",
    validateResource: validateResourceOfType(contractClass(COMPONENT_TYPES.workerImageVersion), (facts, args, reportViolation) => {
        const keys = read(facts).array("envLocalKeys");
        if (keys === UNKNOWN || keys === undefined) return;
        const overridden = ENV_LOCAL_FORBIDDEN_KEYS.filter((k) => keys.some((key) => typeof key === "string" && key.trim() === k));
        if (overridden.length === 0) return;
        reportViolation(
            withFix(
                `.env.development.local overrides ${overridden.join(" and ")} (${label(args)}.envLocalKeys).`,
                `delete the ${overridden.join(" and ")} line${overridden.length > 1 ? "s" : ""} from .env.development.local ` +
                    "and restart the Cloud dev server; " +
                    "they must come from the Vercel-pulled .env.local so JWTs and API keys work when Fly machines call back through the tunnel.",
            ),
        );
    }),
};

/** 9. DEV_MODE=true only with the user the worker substitutes. */
export const devModeMatchesUser: StackValidationPolicy = {
    name: "dev-mode-matches-user",
    description:
        `When .dev.vars DEV_MODE is "true" (WorkerImageVersion.workerSettings.DEV_MODE), the worker treats every request as ${DEV_MODE_USER_ID}, ` +
        "so WorkerInstance.userId must be that user.",
    enforcementLevel: "advisory",
    remediationSteps: `Set the instance's userId to "${DEV_MODE_USER_ID}", or set DEV_MODE=false in .dev.vars and restart the worker.`,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const devMode = ofType(args.resources, COMPONENT_TYPES.workerImageVersion).some((v) => {
            const value = workerSetting(v, "DEV_MODE");
            return typeof value === "string" && value.trim().toLowerCase() === "true";
        });
        if (!devMode) args.notApplicable("DEV_MODE is not true");
        for (const instance of ofType(args.resources, TYPES.workerInstance)) {
            const userId = instance.props.string("userId");
            if (typeof userId !== "string" || userId === DEV_MODE_USER_ID) continue;
            reportViolation(
                withFix(
                    `DEV_MODE=true makes the worker treat every request as ${DEV_MODE_USER_ID}, but ${label(instance)} is for userId "${userId}": ` +
                        "its provision, status and destroy would act on another instance.",
                    `set the instance's userId to "${DEV_MODE_USER_ID}", or set DEV_MODE=false in .dev.vars and restart the worker.`,
                ),
                instance.urn,
            );
        }
    },
};

/** 10. The tunnel base URL has the shape the machines need. */
export const tunnelBaseUrl: ResourceValidationPolicy = {
    name: "tunnel-base-url",
    description:
        "When .dev.vars KILOCODE_API_BASE_URL is set (WorkerImageVersion.workerSettings), it is `https://<host>/api/openrouter/`, " +
        "trailing slash included.",
    enforcementLevel: "advisory",
    remediationSteps:
        "Set KILOCODE_API_BASE_URL=https://<your-tunnel-host>/api/openrouter/ in .dev.vars (https, path /api/openrouter/ with the trailing slash), " +
        "restart the worker and re-provision.",
    validateResource: validateResourceOfType(contractClass(COMPONENT_TYPES.workerImageVersion), (facts, args, reportViolation) => {
        const url = read(facts).string("workerSettings", "KILOCODE_API_BASE_URL");
        if (typeof url !== "string" || url.trim() === "" || isTunnelBaseUrl(url.trim())) return;
        reportViolation(
            withFix(
                `KILOCODE_API_BASE_URL "${url}" is not of the form https://<host>/api/openrouter/ (trailing slash included), ` +
                    "so machines cannot reach models through the tunnel.",
                `set KILOCODE_API_BASE_URL=${suggestTunnelBaseUrl(url)} in .dev.vars, restart the worker and re-provision.`,
            ),
        );
    }),
};

/** 11. The allowed origins include the instance's Fly app. */
export const allowedOriginsIncludeApp: StackValidationPolicy = {
    name: "allowed-origins-include-app",
    description:
        "When .dev.vars OPENCLAW_ALLOWED_ORIGINS is set (WorkerImageVersion.workerSettings), its comma-separated list includes " +
        "`https://<flyAppName>.fly.dev` for each WorkerInstance (expectedFlyAppName, or the flyAppName output).",
    enforcementLevel: "advisory",
    remediationSteps: "Add https://<flyAppName>.fly.dev to OPENCLAW_ALLOWED_ORIGINS in .dev.vars (comma-separated) and restart the worker.",
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const settings = ofType(args.resources, COMPONENT_TYPES.workerImageVersion)
            .map((v) => workerSetting(v, "OPENCLAW_ALLOWED_ORIGINS"))
            .filter((value): value is string => typeof value === "string" && value.trim() !== "");
        if (settings.length === 0) args.notApplicable("OPENCLAW_ALLOWED_ORIGINS is not set");
        const origins = parseAllowedOrigins(settings[0]);
        if (origins.includes("*")) return;
        for (const instance of ofType(args.resources, TYPES.workerInstance)) {
            let app = instance.props.string("expectedFlyAppName");
            if (app === undefined || app === "") app = instance.props.string("flyAppName");
            if (typeof app !== "string" || app === "") continue;
            const origin = `https://${app}.fly.dev`;
            if (origins.some((o) => sameOrigin(o, origin))) continue;
            reportViolation(
                withFix(
                    `OPENCLAW_ALLOWED_ORIGINS does not include ${origin}, the Fly app of ${label(instance)}: ` +
                        'WebSocket connections to the gateway would be refused ("Origin not allowed").',
                    `set OPENCLAW_ALLOWED_ORIGINS=${[...origins, origin].join(",")} in .dev.vars and restart the worker.`,
                ),
                instance.urn,
            );
        }
    },
};
