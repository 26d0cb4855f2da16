// The stack: read the `kiloclaw` config once and declare the rollout.
import { loadRolloutConfig } from "./lib/config";
import { rollout } from "./rollout";

const outputs = rollout(loadRolloutConfig());

export const imageRef = outputs.imageRef;
export const tag = outputs.tag;
export const openclawVersion = outputs.openclawVersion;
export const userId = outputs.userId;
export const flyAppName = outputs.flyAppName;
export const flyMachineId = outputs.flyMachineId;
export const status = outputs.status;
export const trackedImageTag = outputs.trackedImageTag;
export const runningImage = outputs.runningImage;
export const gatewayState = outputs.gatewayState;
export const gatewayToken = outputs.gatewayToken;
export const validationReport = outputs.validationReport;
export const imageSizeBytes = outputs.imageSizeBytes;
export const imageSizeChangeBytes = outputs.imageSizeChangeBytes;
