// A dynamic provider that fails to serialize surfaces only as an unhandled
// rejection; turn it into a failing test instead of a hang.
process.on("unhandledRejection", (reason) => {
    throw reason instanceof Error ? reason : new Error(String(reason));
});
