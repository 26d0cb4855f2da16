// How the worker names things, reproduced so a rollout can predict them.
import * as crypto from "node:crypto";

/** The per-user dev Fly app: `dev-` + the first 20 hex digits of sha256(userId). */
export function devFlyAppName(userId: string): string {
    return `dev-${crypto.createHash("sha256").update(userId, "utf8").digest("hex").slice(0, 20)}`;
}

/** The worker's sandboxId: base64url of the userId, without padding. */
export function sandboxIdFor(userId: string): string {
    return Buffer.from(userId, "utf8").toString("base64url");
}

/** Decodes the Cloud UI's Instance ID (base64 of the userId), rejecting text that is not one. */
export function decodeInstanceId(instanceId: string): string {
    const trimmed = instanceId.trim();
    const normalized = trimmed.replace(/-/g, "+").replace(/_/g, "/");
    if (!trimmed || !/^[A-Za-z0-9+/]+={0,2}$/.test(normalized)) {
        throw new Error(`instanceId "${trimmed}" is not base64: copy the Instance ID from localhost:3000/claw → Instance tab.`);
    }
    const bytes = Buffer.from(normalized, "base64");
    const userId = bytes.toString("utf8");
    const roundTrip = Buffer.from(userId, "utf8").toString("base64").replace(/=+$/, "");
    if (!userId || roundTrip !== normalized.replace(/=+$/, "") || /\p{Cc}|\ufffd/u.test(userId)) {
        throw new Error(`instanceId "${trimmed}" does not decode to a userId: copy the Instance ID from localhost:3000/claw → Instance tab.`);
    }
    return userId;
}
