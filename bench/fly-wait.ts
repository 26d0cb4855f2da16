// Benchmark 5: how many wait calls the Fly client sends when Fly answers at once. Fly allows
// about one request per second per action per machine; a client that loops on 408 without a
// pause sent 12,797 wait requests in 10 s to a machine destroyed mid-wait. Counts come from
// the Fly emulator's request log.
import * as fly from "../dynamic-providers/flyMachinesClient";
import { requestJson } from "../dynamic-providers/http";
import { FlyEmulator } from "../sandbox/emulators/fly";
import { until } from "../sandbox/emulators/server";
import { onCleanup, withCleanup } from "./cleanup";
import { BenchResult } from "./report";

const TOKEN = "fm2_bench-fly-wait";
const APP = "kiloclaw-bench";
const IMAGE = `registry.fly.io/${APP}:dev-0123456789ab`;
/** Real seconds the paced client waits against a Fly that answers 408 at once. */
const PACED_WINDOW_S = 15;
/** Real seconds of the unpaced contrast loop (kept short: it is a busy loop). */
const UNPACED_WINDOW_S = 2;

/** A Fly emulator (real time) holding one warm machine in `replacing`: its first pull takes an hour. */
async function flyWithPullingMachine(): Promise<{ emu: FlyEmulator; id: string; api: fly.FlyApi }> {
    const emu = await FlyEmulator.start({ token: TOKEN, msPerSecond: 1000, firstPullDelayMs: 3_600_000 });
    onCleanup("Fly emulator", () => emu.close());
    const api = { baseUrl: emu.url, token: TOKEN };
    const config = { image: IMAGE, auto_destroy: true, restart: { policy: "no" as const } };
    const { id } = await fly.createMachine(api, APP, { name: `bench-${Date.now()}`, config });
    return { emu, id, api };
}

/** The same, with every wait answered 408 at once. */
async function flyAnsweringAtOnce(): Promise<{ emu: FlyEmulator; id: string; api: fly.FlyApi }> {
    const pulling = await flyWithPullingMachine();
    pulling.emu.inject({ method: "GET", path: /\/wait$/, status: 408, body: { error: "deadline_exceeded" }, times: 10_000_000 });
    return pulling;
}

function waitCalls(emu: FlyEmulator, id: string): number {
    return emu.requests.filter((r) => r.path.endsWith(`/machines/${id}/wait`)).length;
}

export async function flyWaitBenchmark(): Promise<BenchResult> {
    const paced = await withCleanup(async () => {
        const { emu, id, api } = await flyAnsweringAtOnce();
        await fly.waitForStarted(api, APP, id, { deadline: Date.now() + PACED_WINDOW_S * 1000, waitSeconds: 60, image: IMAGE });
        return { waits: waitCalls(emu, id), all: emu.requests.length };
    });
    const unpaced = await withCleanup(async () => {
        // The loop the client had before: one wait right after the other, on every 408.
        const { emu, id } = await flyAnsweringAtOnce();
        const url = `${emu.url}/v1/apps/${APP}/machines/${id}/wait?state=started&timeout=60`;
        const end = Date.now() + UNPACED_WINDOW_S * 1000;
        while (Date.now() < end) await requestJson({ method: "GET", url, headers: { authorization: `FlyV1 ${TOKEN}` } });
        return { waits: waitCalls(emu, id) };
    });
    const destroyed = await withCleanup(async () => {
        // The case: the process exits mid-wait and auto_destroy removes the machine.
        const { emu, id, api } = await flyWithPullingMachine();
        const waiting = fly.waitForStarted(api, APP, id, { deadline: Date.now() + 60_000, waitSeconds: 60, image: IMAGE }).catch((e: Error) => e);
        await until(() => waitCalls(emu, id) > 0, 10_000);
        emu.exitProcess(APP, id);
        const outcome = await waiting;
        return {
            waits: waitCalls(emu, id),
            all: emu.requests.filter((r) => r.path.includes(`/machines/${id}`)).length,
            ended: outcome instanceof Error,
        };
    });
    const perMinute = (calls: number, seconds: number) => ((calls * 60) / seconds).toFixed(0);
    return {
        id: 5,
        title: "Fly wait: calls when Fly answers at once",
        figures: [
            {
                name: "wait calls per minute, Fly answering 408 at once",
                value: `${perMinute(paced.waits, PACED_WINDOW_S)} (${paced.waits} in ${PACED_WINDOW_S} s)`,
                meaning: `flyMachinesClient.waitForStarted: wait calls start ≥ ${fly.WAIT_CALL_INTERVAL_MS} ms apart (Fly: ~1 request/s per action)`,
            },
            {
                name: "the same without pacing (the old loop)",
                value: `${perMinute(unpaced.waits, UNPACED_WINDOW_S)} (${unpaced.waits} in ${UNPACED_WINDOW_S} s)`,
                meaning: "one wait right after each 408, as before; Fly measured 12,797 in 10 s",
            },
            {
                name: "machine destroyed mid-wait: calls until the client stops",
                value: `${destroyed.waits} wait, ${destroyed.all} in all`,
                meaning: `the 408 that follows the destroy → GET /machines/{id} says 404 → "the image's process exited" (${destroyed.ended ? "ended" : "DID NOT END"})`,
            },
        ],
        tables: [],
        notes: [
            "All three against the Fly emulator at real time (msPerSecond 1000), the machine held in `replacing` so it never starts by itself.",
            `Paced: about one GET /machines/{id} follows each 408 (state read from the machine, not the 408 text): ${paced.all} requests in all.`,
            "Unpaced: each request opens its own connection (http.ts makes its agent per call), so it is slower than Fly's measured keep-alive loop.",
        ],
    };
}
