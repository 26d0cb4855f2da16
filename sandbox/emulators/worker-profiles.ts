// The generations of the KiloClaw worker's platform API the emulator can play, as facts
// (see shared/reference/platform-api.md, "Generations", checked against the public
// worker source: Kilo-Org/cloud kiloclaw/ and the later history in evan-claw/cloud).
import { ZodWording } from "./worker-validation";

export type WorkerProfileName = "early" | "current" | "newest";

export const WORKER_PROFILES: readonly WorkerProfileName[] = ["early", "current", "newest"];

export interface WorkerProfile {
    name: WorkerProfileName;
    /** `POST /publish-image-version` exists (else it falls through to the 401 session catch-all). */
    publishRoute: boolean;
    /** `GET /gateway/status` exists. */
    gatewayStatusRoute: boolean;
    /** `GET /debug-status` exists (with lastStartErrorMessage, lastMetadataRecoveryAt). */
    debugStatusRoute: boolean;
    /** Provision starts the machine; false = `provisioned` until `/start`. */
    autoStart: boolean;
    /** Provision answers at once with `starting`; the start and the health probe run in the background. */
    backgroundStart: boolean;
    /** Provision accepts `pinnedImageTag`. */
    pinnedImageTag: boolean;
    /** Status carries trackedImageTag, openclawVersion, imageVariant, machineSize. */
    versionInStatus: boolean;
    /** A never-provisioned user's counts read 0 (else null). */
    zeroCountsWhenAbsent: boolean;
    /** After Fly's `started`, block on the gateway health probe (up to 60 s), then mark `running` anyway. */
    healthProbe: boolean;
    /** `/start` without Durable Object state restores from the Postgres row the worker's destroy leaves active. */
    restoreOnStart: boolean;
    /** A status read starts a live check of the Fly machine (at most once per 30 s). */
    liveCheck: boolean;
    /** 500 bodies are `"<operation> failed"`; the detail stays in the worker's log and debug-status. */
    sanitizedErrors: boolean;
    /** After a start that failed before a machine existed, `/start` fails at once for 30 minutes unless `skipCooldown`. */
    startCooldown: boolean;
    /** Destroy while `restoring` is refused. */
    refuseDestroyWhileRestoring: boolean;
    /** The machine config the current worker sends (one 443 service, controller check, variant metadata); else the early one. */
    realMachineConfig: boolean;
    zod: ZodWording;
}

// Early = the worker source of 2026-02-20 (before publish-image-version): it already ships zod 4, counts an
// absent instance's env vars/secrets/channels as 0, restores from Postgres on /start and live-checks on status reads.
const EARLY: WorkerProfile = {
    name: "early",
    publishRoute: false,
    gatewayStatusRoute: false,
    debugStatusRoute: false,
    autoStart: false,
    backgroundStart: false,
    pinnedImageTag: false,
    versionInStatus: false,
    zeroCountsWhenAbsent: true,
    healthProbe: false,
    restoreOnStart: true,
    liveCheck: true,
    sanitizedErrors: false,
    startCooldown: false,
    refuseDestroyWhileRestoring: false,
    realMachineConfig: false,
    zod: 4,
};

const CURRENT: WorkerProfile = {
    ...EARLY,
    name: "current",
    publishRoute: true,
    gatewayStatusRoute: true,
    autoStart: true,
    versionInStatus: true,
    healthProbe: true,
    realMachineConfig: true,
};

const NEWEST: WorkerProfile = {
    ...CURRENT,
    name: "newest",
    debugStatusRoute: true,
    backgroundStart: true,
    pinnedImageTag: true,
    sanitizedErrors: true,
    startCooldown: true,
    refuseDestroyWhileRestoring: true,
};

export function workerProfile(name: WorkerProfileName = "current"): WorkerProfile {
    const profile = { early: EARLY, current: CURRENT, newest: NEWEST }[name];
    if (!profile) throw new Error(`unknown worker profile "${name}" (one of ${WORKER_PROFILES.join(", ")})`);
    return profile;
}

/** What every generation answers for a `/api/platform/*` route it does not have (the user-session catch-all). */
export const NO_SUCH_ROUTE = { status: 401, body: { error: "Authentication required", hint: "No active session. Please log in." } };
