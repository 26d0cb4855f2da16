// The kiloclaw-rollout policies, one module per concern, and the pack's settings.
//
// This module never constructs the PolicyPack (that starts a gRPC server), so
// tests import it freely; policy/index.ts is the only place that does. Every
// policy is a pure function of its args: no files, no clock, no env.
import { EnforcementLevel, Policies } from "@pulumi/policy";
import { destroyThroughWorker } from "./destroy";
import { imagePlatformAmd64, registryAppMatchesWorker } from "./registry";
import { noSecretsInCommands, warmMachinePlaceholderKey } from "./secrets";
import { openclawVersionConsistent, openclawVersionPinned } from "./versions";
import { allowedOriginsIncludeApp, devModeMatchesUser, noSecretOverridesInEnvLocal, tunnelBaseUrl } from "./worker-settings";

export * from "./destroy";
export * from "./helpers";
export * from "./props";
export * from "./registry";
export * from "./secrets";
export * from "./versions";
export * from "./worker-settings";

export const POLICY_PACK_NAME = "kiloclaw-rollout";

/** Every policy of the pack, in the order the README lists them. */
export const policies: Policies = [
    openclawVersionPinned,
    openclawVersionConsistent,
    imagePlatformAmd64,
    registryAppMatchesWorker,
    noSecretOverridesInEnvLocal,
    warmMachinePlaceholderKey,
    noSecretsInCommands,
    destroyThroughWorker,
    devModeMatchesUser,
    tunnelBaseUrl,
    allowedOriginsIncludeApp,
];

/** The pack's default level; every policy sets its own, so this only matters for new ones. */
export const PACK_ENFORCEMENT_LEVEL: EnforcementLevel = "advisory";
