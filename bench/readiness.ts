// Benchmark 3: how soon the providers notice readiness, and how many requests
// they spend waiting. The emulators delay the state change by a known amount
// (msPerSecond 1000, so the waits are real), record when it happened (Fly machine
// events, the worker's instance record) and log every request with its arrival time.
import * as pulumi from "@pulumi/pulumi";
import { warmMachineProvider } from "../dynamic-providers/warmMachineProvider";
import { workerInstanceProvider } from "../dynamic-providers/workerInstanceProvider";
import { FlyEmulatorOptions } from "../sandbox/emulators/fly";
import { RequestLogEntry } from "../sandbox/emulators/server";
import { closeStage, instanceInputs, REGISTRY_APP, startStage, TAG, VERSION, warmInputs } from "../sandbox/stage";
import { WorkerProfileName } from "../sandbox/emulators/worker-profiles";
import { onCleanup, withCleanup } from "./cleanup";
import { BenchResult, Figure, ms, Table } from "./report";

/** The known delay before `started`: a first pull of the image. */
const PULL_MS = 3000;
/** The worker asks Fly to wait 60 s; for the 408 scenario its first wait answers 408 after this. */
const WORKER_WAIT_408_MS = 3000;
const LONG_PULL_MS = 5000;

type Provider = pulumi.dynamic.ResourceProvider;

function statusesOf(entries: RequestLogEntry[]): string {
    const out: string[] = [];
    for (const e of entries) {
        const last = out[out.length - 1];
        const m = last && /^(\d+)×(\d+)$/.exec(last);
        if (m && Number(m[1]) === e.status) out[out.length - 1] = `${e.status}×${Number(m[2]) + 1}`;
        else if (last === String(e.status)) out[out.length - 1] = `${e.status}×2`;
        else out.push(String(e.status));
    }
    return out.join(", ");
}

// ---- Fly: warm machine until `started` ----

interface FlyScenario {
    label: string;
    startedAfterCreateMs: number;
    startedToDeleteMs: number;
    startedToReturnMs: number;
    waitCalls: number;
    waitStatuses: string;
    /** Wait calls per minute of waiting, in the emulator's seconds. */
    waitCallsPerMinute: number;
    totalRequests: number;
}

async function flyScenario(label: string, emu: FlyEmulatorOptions, waitSeconds?: number): Promise<FlyScenario> {
    return withCleanup(async () => {
        const stage = await startStage({ fly: emu });
        onCleanup("emulators and temp dir", () => closeStage(stage));
        const { fly } = stage;
        const inputs = warmInputs(stage, { timeoutSeconds: 120, ...(waitSeconds === undefined ? {} : { waitSeconds }) });
        const { id } = await (warmMachineProvider as Provider).create(inputs);
        const returnedAt = Date.now();
        const machine = fly.machine(REGISTRY_APP, id);
        const startedAt = machine?.events.find((e) => e.status === "started")?.timestamp ?? NaN;
        const create = fly.requests.find((r) => r.method === "POST" && r.path.endsWith("/machines"));
        const del = fly.requests.find((r) => r.method === "DELETE" && r.path.endsWith(`/machines/${id}`));
        const waits = fly.requests.filter((r) => r.path.endsWith(`/machines/${id}/wait`) && r.query.state === "started");
        const secondMs = emu.msPerSecond ?? 1000;
        const waitedMinutes = (startedAt - (waits[0]?.at ?? NaN)) / (60 * secondMs);
        return {
            label,
            startedAfterCreateMs: startedAt - (create?.at ?? NaN),
            startedToDeleteMs: (del?.at ?? NaN) - startedAt,
            startedToReturnMs: returnedAt - startedAt,
            waitCalls: waits.length,
            waitStatuses: statusesOf(waits),
            waitCallsPerMinute: waits.length / waitedMinutes,
            totalRequests: fly.requests.length,
        };
    });
}

// ---- worker: instance until `running` ----

interface WorkerScenario {
    label: string;
    pollMs: string;
    runningAfterProvisionMs: number;
    runningToSeenMs: number;
    runningToReturnMs: number;
    statusCalls: number;
    calls: string;
    provisionPosts: number;
    flyRequests: number;
}

interface WorkerScenarioOptions {
    label: string;
    profile: WorkerProfileName;
    pollMs?: number;
    /** Fly's first wait answers 408 (as a pull longer than the worker's 60 s wait would). */
    firstWait408?: boolean;
    /** The worker answers /provision only after the provider's 1 s per-call timeout (the answer is lost). */
    slowProvision?: boolean;
}

/** How long the worker holds /provision in the slow scenario, past the provider's 1 s per-call timeout. */
const SLOW_PROVISION_MS = 2500;

async function workerScenario(o: WorkerScenarioOptions): Promise<WorkerScenario> {
    return withCleanup(async () => {
        const stage = await startStage({
            fly: { msPerSecond: 1000, firstPullDelayMs: o.firstWait408 ? LONG_PULL_MS : PULL_MS },
            worker: { profile: o.profile },
            // The worker already tracks the tag, so the instance comes up on it.
            devVars: { FLY_IMAGE_TAG: TAG, OPENCLAW_VERSION: VERSION },
        });
        onCleanup("emulators and temp dir", () => closeStage(stage));
        const { fly, worker } = stage;
        if (o.firstWait408) {
            fly.inject({
                method: "GET",
                path: /\/wait$/,
                delayMs: WORKER_WAIT_408_MS,
                status: 408,
                body: { error: "deadline_exceeded: machine failed to reach desired state, started, currently replacing" },
            });
        }
        if (o.slowProvision) worker.inject({ method: "POST", path: "/api/platform/provision", delayMs: SLOW_PROVISION_MS });
        // An undefined pollMs leaves the provider's own default (1000 ms).
        const inputs = instanceInputs(stage, { timeoutSeconds: 60, pollMs: o.pollMs, ...(o.slowProvision ? { requestTimeoutSeconds: 1 } : {}) });
        await (workerInstanceProvider as Provider).create(inputs);
        const returnedAt = Date.now();
        const runningAt = worker.instance(stage.userId)?.lastStartedAt ?? NaN;
        const provision = worker.requests.find((r) => r.path === "/api/platform/provision");
        const statusReads = worker.requests.filter((r) => r.path === "/api/platform/status");
        const seen = statusReads.find((r) => r.at >= runningAt);
        const count = (route: string) => worker.requests.filter((r) => r.path === `/api/platform/${route}`).length;
        return {
            label: o.label,
            pollMs: o.pollMs === undefined ? "default (1000)" : String(o.pollMs),
            runningAfterProvisionMs: runningAt - (provision?.at ?? NaN),
            runningToSeenMs: (seen?.at ?? NaN) - runningAt,
            runningToReturnMs: returnedAt - runningAt,
            statusCalls: statusReads.length,
            provisionPosts: count("provision"),
            calls: `provision ${count("provision")} (${statusesOf(worker.requests.filter((r) => r.path === "/api/platform/provision"))}), start ${count("start")}, gateway-token ${count("gateway-token")}`,
            flyRequests: fly.requests.length,
        };
    });
}

/** A rate needs more than one call: a single long-poll answered within its window says nothing per minute. */
function perMinute(r: FlyScenario): string {
    return r.waitCalls > 1 ? r.waitCallsPerMinute.toFixed(2) : "n/a (1 call)";
}

export async function readinessBenchmark(): Promise<BenchResult> {
    const flyRuns: FlyScenario[] = [];
    flyRuns.push(await flyScenario(`pull ${PULL_MS / 1000} s, waitSeconds default (60)`, { msPerSecond: 1000, firstPullDelayMs: PULL_MS }));
    flyRuns.push(await flyScenario(`pull ${PULL_MS / 1000} s, waitSeconds 1`, { msPerSecond: 1000, firstPullDelayMs: PULL_MS }, 1));
    // A 3-minute first pull (the runbook's worst case) in emulator time: 1 s = 50 ms, so one 60 s wait = 3 s real.
    const long = await flyScenario("pull 3 min (emulated, msPerSecond 50), waitSeconds default", { msPerSecond: 50, firstPullDelayMs: 180 * 50 });
    flyRuns.push(long);

    const workerRuns: WorkerScenario[] = [];
    for (const pollMs of [undefined, 250]) {
        workerRuns.push(await workerScenario({ label: "current worker (provision starts and waits)", profile: "current", pollMs }));
        workerRuns.push(await workerScenario({ label: "early worker (provisioned, then /start)", profile: "early", pollMs }));
        workerRuns.push(
            await workerScenario({
                label: `current worker, Fly wait 408 (pull ${LONG_PULL_MS / 1000} s)`,
                profile: "current",
                pollMs,
                firstWait408: true,
            }),
        );
    }
    const slowRuns: WorkerScenario[] = [];
    for (const profile of ["early", "current", "newest"] as const) {
        const label = `${profile} worker, /provision answered after ${SLOW_PROVISION_MS / 1000} s, client timeout 1 s`;
        slowRuns.push(await workerScenario({ label, profile, pollMs: 250, slowProvision: true }));
    }
    workerRuns.push(...slowRuns);

    const [flyDefault, flyShort] = flyRuns;
    const wDefault = workerRuns[0];
    const wOlder1000 = workerRuns[1];
    const wOlder250 = workerRuns[4];
    const w408 = workerRuns[2];
    const figures: Figure[] = [
        {
            name: "Fly: started → DELETE (default settings)",
            value: ms(flyDefault.startedToDeleteMs),
            meaning: `WarmMachine create: from the machine's "started" event to the destroy request arriving (long-poll wait returns at once)`,
        },
        {
            name: "Fly: started → create returned",
            value: ms(flyDefault.startedToReturnMs),
            meaning: "the same, to create() resolving (includes destroy and its confirming wait)",
        },
        {
            name: "Fly: wait calls for a 3 s pull",
            value: `${flyDefault.waitCalls} (waitSeconds 60), ${flyShort.waitCalls} (waitSeconds 1)`,
            meaning: `calls to GET /machines/{id}/wait?state=started until started (statuses: ${flyDefault.waitStatuses} / ${flyShort.waitStatuses})`,
        },
        {
            name: "Fly: wait calls per minute of waiting",
            value: `${long.waitCallsPerMinute.toFixed(2)} (default), ${flyShort.waitCallsPerMinute.toFixed(0)} (waitSeconds 1)`,
            meaning: "default: measured over an emulated 3-minute pull; waitSeconds 1: over the real 3 s pull",
        },
        {
            name: "worker: running → create returned (default pollMs)",
            value: ms(wDefault.runningToReturnMs),
            meaning: "current worker: provision itself waits for Fly's started; includes the gateway-token read",
        },
        {
            name: "worker: status calls per rollout (default pollMs)",
            value: `${wDefault.statusCalls} (current), ${wOlder1000.statusCalls} (older), ${w408.statusCalls} (408)`,
            meaning: "GET /api/platform/status calls in one WorkerInstance create, per scenario below",
        },
        {
            name: "worker: provision POSTs per create under a timeout",
            value: slowRuns.map((r) => `${r.provisionPosts} (${r.label.split(" ")[0]})`).join(", "),
            meaning: `the answer to /provision arrives ${SLOW_PROVISION_MS / 1000} s after a 1 s client timeout: the provider reads the status instead of sending it again (the old client re-sent it)`,
        },
        {
            name: "worker: running → status read saw it, older worker",
            value: `${ms(wOlder1000.runningToSeenMs)} (pollMs 1000), ${ms(wOlder250.runningToSeenMs)} (pollMs 250)`,
            meaning: "after /start returns (running), the provider reads the status at once",
        },
    ];
    const tables: Table[] = [
        {
            title: `Fly emulator, WarmMachine create (known delay: first pull; started after create ≈ pull + 20 ms start)`,
            header: [
                "scenario",
                "started after create",
                "started → DELETE",
                "started → returned",
                "wait calls (statuses)",
                "wait calls / min",
                "requests",
            ],
            rows: flyRuns.map((r) => [
                r.label,
                ms(r.startedAfterCreateMs),
                ms(r.startedToDeleteMs),
                ms(r.startedToReturnMs),
                `${r.waitCalls} (${r.waitStatuses})`,
                perMinute(r),
                String(r.totalRequests),
            ]),
        },
        {
            title: `Worker emulator, WorkerInstance create (known delay: Fly first pull ${PULL_MS / 1000} s; 408 scenario: pull ${LONG_PULL_MS / 1000} s, first Fly wait 408 after ${WORKER_WAIT_408_MS / 1000} s)`,
            header: [
                "scenario",
                "pollMs",
                "running after provision",
                "running → read saw it",
                "running → returned",
                "status calls",
                "other worker calls",
                "Fly requests",
            ],
            rows: workerRuns.map((r) => [
                r.label,
                r.pollMs,
                ms(r.runningAfterProvisionMs),
                ms(r.runningToSeenMs),
                ms(r.runningToReturnMs),
                String(r.statusCalls),
                r.calls,
                String(r.flyRequests),
            ]),
        },
    ];
    return {
        id: 3,
        title: "Readiness: delay to notice started/running, and requests spent",
        figures,
        tables,
        notes: [
            "State-change times come from the emulators (Fly machine events; the worker's lastStartedAt), request times from their request logs (arrival), on the same clock.",
            "WarmMachine has no pollMs: it long-polls Fly's wait endpoint (waitSeconds, default 60), so it notices `started` within a request round trip; waitSeconds 1 is shown as the short-poll contrast.",
            "The 3-minute pull runs at msPerSecond 50 so that it takes 9 s: its per-minute figure is per emulated minute (each 60 s wait = 3 s real).",
            "The worker's /provision and /start block until Fly says started, so the provider's polling only matters after a 408 or on older workers; there it reads the status at once after a successful /start.",
            "The slow-provision rows hold /provision past the provider's 1 s per-call timeout: the answer is lost, the provider reads the status and carries on " +
                "(waiting while Fly still starts the worker's machine; the newest worker reports `starting` itself), so each create sends one provision.",
        ],
    };
}
