// The one typed contract between the program, its dynamic providers, the policy
// pack and the tests: resource type tokens and the property names of each
// kiloclaw resource. Renaming a property here breaks every reader at compile time.
import type * as command from "@pulumi/command";
import type * as docker from "@pulumi/docker";
import type { Unwrap } from "@pulumi/pulumi";

/** Type tokens of the resources the rollout registers (what policies and mocks see). */
export const RESOURCE_TYPES = {
    dockerImage: "docker:index/image:Image",
    command: "command:local:Command",
    warmMachine: "pulumi-nodejs:dynamic/kiloclaw:WarmMachine",
    workerImageVersion: "pulumi-nodejs:dynamic/kiloclaw:WorkerImageVersion",
    workerInstance: "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance",
    localImages: "pulumi-nodejs:dynamic/kiloclaw:LocalImages",
    prebuiltImage: "pulumi-nodejs:dynamic/kiloclaw:PrebuiltImage",
} as const;

/** Component type tokens (`kiloclaw:index:X`). */
export const COMPONENT_TYPES = {
    kiloclawImage: "kiloclaw:index:KiloclawImage",
    imageValidation: "kiloclaw:index:ImageValidation",
    registryPush: "kiloclaw:index:RegistryPush",
    warmMachine: "kiloclaw:index:WarmMachine",
    workerImageVersion: "kiloclaw:index:WorkerImageVersion",
    workerInstance: "kiloclaw:index:WorkerInstance",
    localImages: "kiloclaw:index:LocalImages",
    prebuiltImage: "kiloclaw:index:PrebuiltImage",
} as const;

/** The `module:type` every dynamic resource of this program registers under (`pulumi-nodejs:dynamic/<module>:<type>`). */
export const DYNAMIC_MODULE = "kiloclaw";

/** A throwaway machine that pulls the pushed image on Fly. Fly's URL and token come from the stack config at call time. */
export interface WarmMachineInputs {
    /** The Fly app whose registry holds the image (the worker's registry app). */
    appName: string;
    region: string;
    /** The pushed image, `<registry>/<app>:<tag>[@digest]`. */
    image: string;
    env: Record<string, string>;
    /** Written to the machine's metadata so a crashed run's leftover can be found and removed. */
    owner: string;
    /** Overall deadline for the machine to reach `started` (first pulls take 1-3 min). */
    timeoutSeconds: number;
    /** Timeout of each call to Fly's wait endpoint (at most 60). */
    waitSeconds?: number;
}

export interface WarmMachineOutputs extends WarmMachineInputs {
    machineId: string;
    /** How many 408 answers Fly gave before `started`. */
    waitTimeouts: number;
    leftoversRemoved: number;
}

/**
 * What the worker is told: the tag in .dev.vars (and publish-image-version). Access, and where .dev.vars lives
 * (kiloclaw:kiloclawDir), come from the stack config at call time: a moved checkout changes no input.
 */
export interface WorkerImageVersionInputs {
    imageTag: string;
    imageDigest?: string;
    openclawVersion: string;
    /** Call publish-image-version (an older worker without the route is fine). */
    publish: boolean;
    /** The instance's user: before the instance is touched, the provider checks the worker will provision imageTag for it. */
    userId?: string;
    /** Secret. Sent with the current worker's config-only re-provision, which reads back the tag it tracks. */
    kilocodeApiKey?: string;
    /** kiloclaw:workerRestartedForTag: the developer restarted a worker that offers no read of its tag after .dev.vars named this tag. */
    workerRestartedForTag?: string;
}

/** How the provider knows the worker's next provision uses the new tag (README, "Older workers must be restarted after a new tag"). */
export type WorkerTagCheck = "pinned" | "read-back" | "already-running" | "no-instance" | "restart-confirmed" | "skipped";

export interface WorkerImageVersionOutputs extends WorkerImageVersionInputs {
    previousImageTag: string | null;
    published: "published" | "unsupported" | "skipped";
    workerTagCheck?: WorkerTagCheck;
}

/**
 * Facts only the policy pack reads, registered as the props of the WorkerImageVersion
 * component (COMPONENT_TYPES.workerImageVersion), never sent to its provider: editing them
 * causes no provider work.
 */
export interface WorkerImageVersionFacts {
    imageTag: string;
    openclawVersion: string;
    /** What the Dockerfile pins (absent for a prebuilt image). */
    openclawPin?: string;
    registryServer: string;
    /** Where the image was pushed. */
    registryApp: string;
    /** Where the worker pulls from (FLY_REGISTRY_APP ?? FLY_APP_NAME ?? kiloclaw-machines). */
    workerRegistryApp: string;
    /** Non-secret worker settings from .dev.vars. */
    workerSettings: Record<string, string>;
    /** Names of the keys .env.development.local sets. */
    envLocalKeys: string[];
}

/** The instance's identity and what it must run. The worker's URL and key come from the stack config at call time. */
export interface WorkerInstanceInputs {
    userId: string;
    imageTag: string;
    /** The pushed image (`<registry>/<app>:<tag>`): the instance's Fly machine must run exactly this. */
    imageRef: string;
    openclawVersion: string;
    region: string;
    kilocodeApiKey: string;
    expectedFlyAppName: string;
    /** Deadline for provision → running with a gateway that answers, and for destroy → gone. */
    timeoutSeconds: number;
    /** Time allowed for one lifecycle call: leaves room for the worker's own waits (Fly's 60 s + its 60 s health probe). */
    requestTimeoutSeconds?: number;
    /** Pause between status reads. */
    pollMs?: number;
}

/** The gateway as the worker's `gateway/status` reports it ("running"), or "unsupported" on a worker without the route. */
export type GatewayState = string;

export interface WorkerInstanceOutputs extends WorkerInstanceInputs {
    status: string | null;
    sandboxId: string | null;
    flyAppName: string | null;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    trackedImageTag: string | null;
    runningOpenclawVersion: string | null;
    /** `config.image` of the instance's Fly machine, read from Fly after it ran. */
    runningImage: string | null;
    gatewayState: GatewayState | null;
    gatewayToken: string | null;
}

/** Local Docker image references a build-mode rollout made, and the staged build contexts they were built from; removed when superseded or destroyed. */
export interface LocalImagesInputs {
    /** Names carrying the stack's identity (lib/localScope.ts), never a name another stack could share. */
    images: string[];
    /** Staged build context directories (lib/stagedContext.ts), removed with the images. */
    contexts?: string[];
}

export type LocalImagesOutputs = LocalImagesInputs;

/** Prebuilt mode: the image in the registry, checked before the rollout uses it. */
export interface PrebuiltImageInputs {
    /** `<registry>/<app>:<tag>` (kiloclaw:imageRef). */
    imageRef: string;
    registryServer: string;
    /** The openclaw version the stack publishes: `openclaw --version` in the image must print it. */
    expectedOpenclawVersion: string;
    /** Where that version comes from (the Dockerfile pin or kiloclaw:openclawVersion), for the error message. */
    versionSource: string;
}

export interface PrebuiltImageOutputs extends PrebuiltImageInputs {
    /** The manifest digest that was pulled and checked, `sha256:…`. */
    digest: string;
    /** What `openclaw --version` printed in the image. */
    openclawVersion: string;
}

/** Environment of scripts/smoke-test.sh (the ImageValidation Command). */
export interface SmokeTestEnvironment {
    IMAGE: string;
    EXPECTED_OPENCLAW_VERSION: string;
    /** The Dockerfile's `ENV NODE_VERSION`, when it has one. */
    EXPECTED_NODE_VERSION?: string;
    STARTUP_DEADLINE_SECONDS: string;
    GATEWAY_DEADLINE_SECONDS: string;
}

/** Environment of scripts/push-image.sh (the RegistryPush Command); the token goes on stdin. */
export interface PushEnvironment {
    SOURCE_IMAGE: string;
    TARGET_IMAGE: string;
    REGISTRY_SERVER: string;
    REGISTRY_USERNAME: string;
}

/** A local Command as the rollout registers it: the scripts' environment by name. */
export type CommandProps = Omit<Unwrap<command.local.CommandArgs>, "environment"> & {
    environment?: Partial<SmokeTestEnvironment & PushEnvironment>;
};

/** The docker Image's inputs, and the `platform` its provider reports as an output. */
export type DockerImageProps = Unwrap<docker.ImageArgs> & { platform?: string };

/**
 * What each type registers (inputs; for resources, outputs include them), by type token: the
 * names the policy pack (policy/props.ts) and tests read. A property renamed in the interfaces
 * above fails typecheck wherever it is still read by its old name.
 */
export interface PropsByType {
    [RESOURCE_TYPES.dockerImage]: DockerImageProps;
    [RESOURCE_TYPES.command]: CommandProps;
    [RESOURCE_TYPES.warmMachine]: WarmMachineOutputs;
    [RESOURCE_TYPES.workerImageVersion]: WorkerImageVersionOutputs;
    [RESOURCE_TYPES.workerInstance]: WorkerInstanceOutputs;
    [RESOURCE_TYPES.localImages]: LocalImagesOutputs;
    [COMPONENT_TYPES.workerImageVersion]: WorkerImageVersionFacts;
}
