/** The error a promise rejects with; fails when it resolves (node's assert.rejects does not hand the error back). */
export async function rejects(p: Promise<unknown>): Promise<Error> {
    try {
        await p;
    } catch (err) {
        return err as Error;
    }
    throw new Error("expected a rejection");
}
