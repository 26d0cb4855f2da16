// Everything a benchmark creates (containers, images, temp dirs, emulators) is
// registered here as it is created, and undone in reverse order: at the end of
// the benchmark, or at once on Ctrl-C / SIGTERM.

type Undo = () => Promise<unknown> | unknown;

const pending: Array<{ what: string; undo: Undo }> = [];

/** Registers an undo step; returns a function that runs it now (and only once). */
export function onCleanup(what: string, undo: Undo): () => Promise<void> {
    const entry = { what, undo };
    pending.push(entry);
    return async () => {
        const i = pending.indexOf(entry);
        if (i < 0) return;
        pending.splice(i, 1);
        await runOne(entry);
    };
}

async function runOne(entry: { what: string; undo: Undo }): Promise<void> {
    try {
        await entry.undo();
    } catch (err) {
        console.error(`bench: cleanup of ${entry.what} failed: ${(err as Error).message}`);
    }
}

/** Runs every pending undo step, newest first. */
export async function cleanupAll(): Promise<void> {
    while (pending.length > 0) await runOne(pending.pop()!);
}

/** Runs `fn`, then undoes whatever it registered that is still pending. */
export async function withCleanup<T>(fn: () => Promise<T>): Promise<T> {
    const mark = pending.length;
    try {
        return await fn();
    } finally {
        while (pending.length > mark) await runOne(pending.pop()!);
    }
}

let installed = false;

/** On SIGINT/SIGTERM: clean up, then exit with 128+signal. */
export function installSignalCleanup(): void {
    if (installed) return;
    installed = true;
    for (const [signal, code] of [
        ["SIGINT", 130],
        ["SIGTERM", 143],
    ] as const) {
        process.once(signal, () => {
            console.error(`\nbench: ${signal}: cleaning up...`);
            void cleanupAll().finally(() => process.exit(code));
        });
    }
}
