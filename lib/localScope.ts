// What a stack creates on this machine carries the stack's identity: the Pulumi project and stack,
// and, in a sandbox, the sandbox's instance id (two clones' sandboxes run stacks of the same name).
// Built images are named by it and staged build contexts live under it, so two stacks on one
// Docker engine never share a name and each cleanup removes only its own.

/** Label whose value is `localIdentity(scope)`. */
export const STACK_LABEL = "kiloclaw-rollout.stack";

export interface LocalScope {
    project: string;
    stack: string;
    /** The sandbox's instance id (kiloclaw:sandboxInstance), when a sandbox runs the stack. */
    sandboxInstance?: string;
}

/** `<project>.<stack>[@<sandbox instance>]`. */
export function localIdentity(scope: LocalScope): string {
    return `${scope.project}.${scope.stack}${scope.sandboxInstance ? `@${scope.sandboxInstance}` : ""}`;
}

/** `<project>-<stack>[-<sandbox instance>]`, lowercase, usable in Docker names and as a directory name. */
export function localScopeSlug(scope: LocalScope): string {
    return [scope.project, scope.stack, scope.sandboxInstance]
        .filter((part): part is string => !!part)
        .map((part) =>
            part
                .toLowerCase()
                .replace(/[^a-z0-9]+/g, "-")
                .replace(/^-+|-+$/g, ""),
        )
        .join("-");
}

/** `kiloclaw-<slug>`: the local repository of the stack's built images (`kiloclaw-<slug>:<tag>`). */
export function localImageRepository(scope: LocalScope): string {
    return `kiloclaw-${localScopeSlug(scope)}`;
}

/** A sandbox instance id is short lowercase hex or alphanumerics (it goes into image and container names). */
export function isSandboxInstance(value: string): boolean {
    return /^[a-z0-9]{1,32}$/.test(value);
}
