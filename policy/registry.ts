// The image Fly runs: built for linux/amd64, pushed to and warmed from the
// registry app the worker pulls from.
import { ReportViolation, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy, validateResourceOfType } from "@pulumi/policy";
import { COMPONENT_TYPES } from "../lib/contract";
import { label, TYPES, withFix } from "./helpers";
import { contractClass, ContractResource, ContractType, ofType, read, UNKNOWN } from "./props";

/** The registry the worker pulls from when nothing says otherwise. */
export const DEFAULT_REGISTRY_SERVER = "registry.fly.io";

/** The image name prefix the worker pulls: `<registryServer>/<app>:`. */
export function expectedImagePrefix(registryServer: string | undefined, app: string): string {
    const server = (registryServer ?? "").trim().replace(/\/+$/, "") || DEFAULT_REGISTRY_SERVER;
    return `${server}/${app}:`;
}

const PLATFORM_FIX =
    'set `build.platform: "linux/amd64"` on the docker Image (KiloclawImage): Fly machines run amd64, and an image built for the host\'s ' +
    "architecture (arm64 on Apple Silicon) does not start there.";

/** 3. The image is built for linux/amd64. */
export const imagePlatformAmd64: ResourceValidationPolicy = {
    name: "image-platform-amd64",
    description: "The docker Image is built with build.platform `linux/amd64`, the platform Fly machines run.",
    enforcementLevel: "mandatory",
    remediationSteps: `Set the platform: ${PLATFORM_FIX}`,
    validateResource: validateResourceOfType(contractClass(TYPES.dockerImage), (image, args, reportViolation) => {
        const props = read(image);
        // Inputs carry build.platform; the provider's outputs carry it at the top level.
        let platform = props.string("build", "platform");
        if (platform === undefined) platform = props.string("platform");
        if (platform === UNKNOWN || platform === "linux/amd64") return;
        const what = platform ? `builds for "${platform}"` : "sets no build.platform (docker then builds for the host's architecture)";
        reportViolation(withFix(`${label(args)} ${what}.`, PLATFORM_FIX));
    }),
};

const REGISTRY_FIX_TAIL =
    "(push-dev.sh has this trap: it pushes to registry.fly.io/$FLY_APP_NAME while the worker pulls from " +
    'FLY_REGISTRY_APP ?? FLY_APP_NAME ?? "kiloclaw-machines".)';

function registryFix(workerApp: string, pushApp?: string): string {
    const alt = pushApp ? `, or set FLY_REGISTRY_APP=${pushApp} in .dev.vars and restart the worker` : "";
    return (
        `push to and warm the app the worker pulls from: set the registry app to "${workerApp}" ` +
        `(remove any override so it follows .dev.vars)${alt}. ${REGISTRY_FIX_TAIL}`
    );
}

/** 4. The image is pushed to, and warmed from, the registry app the worker pulls from. */
export const registryAppMatchesWorker: StackValidationPolicy = {
    name: "registry-app-matches-worker",
    description:
        "WorkerImageVersion.registryApp (where the image is pushed) equals workerRegistryApp (where the worker pulls from), and the RegistryPush " +
        "TARGET_IMAGE and the WarmMachine image start with `<registryServer>/<workerRegistryApp>:`.",
    enforcementLevel: "mandatory",
    remediationSteps:
        "Push to the Fly app whose registry the worker pulls from (.dev.vars FLY_REGISTRY_APP ?? FLY_APP_NAME ?? kiloclaw-machines): " +
        "set the stack's registry app to it, or set FLY_REGISTRY_APP in .dev.vars to the app you push to and restart the worker. " +
        REGISTRY_FIX_TAIL,
    validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
        const versions = ofType(args.resources, COMPONENT_TYPES.workerImageVersion);
        if (versions.length === 0) args.notApplicable("no WorkerImageVersion in the stack");
        let prefix: string | undefined;
        let workerApp: string | undefined;
        for (const version of versions) {
            const pushApp = version.props.string("registryApp");
            const pullApp = version.props.string("workerRegistryApp");
            const server = version.props.string("registryServer");
            if (typeof pullApp === "string" && pullApp !== "") {
                workerApp ??= pullApp;
                if (server !== UNKNOWN) prefix ??= expectedImagePrefix(server, pullApp);
            }
            if (typeof pushApp === "string" && typeof pullApp === "string" && pushApp !== pullApp) {
                reportViolation(
                    withFix(
                        `${label(version)} pushes to registry app "${pushApp}" but the worker pulls from "${pullApp}", ` +
                            "so the worker would never run the pushed image.",
                        registryFix(pullApp, pushApp),
                    ),
                    version.urn,
                );
            }
        }
        if (prefix === undefined || workerApp === undefined) return;
        const expected = prefix;
        const pullApp = workerApp;
        const checkImage = (r: ContractResource<ContractType>, path: string, image: unknown) => {
            if (typeof image !== "string" || image.startsWith(expected)) return;
            reportViolation(
                withFix(
                    `${label(r)} ${path} is "${image}", which does not start with "${expected}" (the registry app the worker pulls from).`,
                    registryFix(pullApp),
                ),
                r.urn,
            );
        };
        for (const command of ofType(args.resources, TYPES.command)) {
            checkImage(command, "environment.TARGET_IMAGE", command.props.string("environment", "TARGET_IMAGE"));
        }
        for (const warm of ofType(args.resources, TYPES.warmMachine)) checkImage(warm, "image", warm.props.string("image"));
    },
};
