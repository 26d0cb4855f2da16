// The one typed contract between the program, its dynamic providers, the policy
// pack and the tests: resource type tokens and the property names of each
// kiloclaw resource. Renaming a property here breaks every reader at compile time.

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

export interface WarmMachineInputs {
    flyApiUrl: string;
    appName: string;
    region: string;
    image: string;
    env: Record<string, string>;
    flyApiToken: string;
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

export interface WorkerImageVersionInputs {
    devVarsPath: string;
    imageTag: string;
    imageDigest?: string;
    openclawVersion: string;
    /** What the Dockerfile pins (absent for a prebuilt image); carried for the policy pack. */
    openclawPin?: string;
    registryServer: string;
    registryApp: string;
    workerRegistryApp: string;
    workerUrl: string;
    internalApiKey: string;
    /** Call publish-image-version (404 from older workers is fine). */
    publish: boolean;
    workerSettings: Record<string, string>;
    envLocalKeys: string[];
}

export interface WorkerImageVersionOutputs extends WorkerImageVersionInputs {
    previousImageTag: string | null;
    published: "published" | "unsupported" | "skipped";
}

export interface WorkerInstanceInputs {
    workerUrl: string;
    userId: string;
    imageTag: string;
    openclawVersion: string;
    region: string;
    kilocodeApiKey: string;
    internalApiKey: string;
    expectedFlyAppName: string;
    /** Deadline for provision → running, and for destroy → gone. */
    timeoutSeconds: number;
    /** Pause between status reads. */
    pollMs?: number;
}

export interface WorkerInstanceOutputs extends WorkerInstanceInputs {
    status: string | null;
    sandboxId: string | null;
    flyAppName: string | null;
    flyMachineId: string | null;
    flyVolumeId: string | null;
    flyRegion: string | null;
    trackedImageTag: string | null;
    runningOpenclawVersion: string | null;
    gatewayToken: string | null;
}

/** Local Docker image references a build-mode rollout made; removed when superseded or destroyed. */
export interface LocalImagesInputs {
    images: string[];
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
