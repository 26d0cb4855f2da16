// What to do when a check fails: the runbook's debugging step for that check
// (Step 2 and Troubleshooting → "Container issues"), written with only the
// commands the image has (the real image has bash and curl but no ps) and its own
// command (Config.Entrypoint + Config.Cmd): a start script in the Feb-26 shape,
// `node /usr/local/bin/kiloclaw-controller.js` in the newest one.
import type { CheckName, DoctorMode, EngineFacts } from "./validate";

/** Commands found in the image (`command -v`), e.g. bash, sh, ps, curl, wget, cat. */
export type ToolsInImage = Set<string>;

export interface HintContext {
    image: string;
    tools: ToolsInImage;
    engine: EngineFacts;
    expectedOpenclawVersion: string;
    /** What the image runs when started (`docker image inspect`: Entrypoint + Cmd). */
    command: string[];
    /** The interpreter of that command when it is a shell script (its `#!` line). */
    scriptShell?: "bash" | "sh";
    doctorMode: DoctorMode;
}

/** A word as a POSIX shell reads it back. */
export function shellWord(word: string): string {
    return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** The image's own command, as a reader types it; "(the image's default command)" when it has none. */
export function imageCommandText(command: string[]): string {
    return command.length > 0 ? command.map(shellWord).join(" ") : "(the image's default command)";
}

const PLACEHOLDERS = "-e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token";

/** Start the image by hand the way the runbook does, under a fixed name the next commands use. */
const startByHand = (image: string, name: string) => [
    `docker run -d --name ${name} -p 18800:18789 ${PLACEHOLDERS} ${image}`,
    `docker logs -f ${name}`,
];

export function nextSteps(check: CheckName, ctx: HintContext): string[] {
    const { image, tools, command } = ctx;
    const shell = ctx.scriptShell ?? (tools.has("bash") ? "bash" : tools.has("sh") ? "sh" : undefined);
    const cmd = imageCommandText(command);
    switch (check) {
        case "openclaw version":
            return [
                "Fix: align the Dockerfile pin (the 'npm install -g openclaw@X.Y.Z' line) with the version you roll out",
                `(kiloclaw:openclawVersion / OPENCLAW_VERSION in .dev.vars, now ${ctx.expectedOpenclawVersion}), rebuild, rerun. Check:`,
                `  docker run --rm ${image} openclaw --version`,
            ];
        case "node version":
            return [
                "Fix: the Dockerfile's Node pin (ENV NODE_VERSION=…) and the Node it installs disagree; align them, or set",
                "`pulumi config set kiloclaw:expectedNodeVersion <x.y.z>` when the pin is elsewhere. Check:",
                `  docker run --rm ${image} node --version`,
            ];
        case "directories":
            return [
                "Fix: the Dockerfile must create them (the real one: RUN mkdir -p /root/.openclaw && mkdir -p /root/clawd). Look:",
                `  docker run --rm ${image} ls -la /root`,
            ];
        case "openclaw doctor":
            return ctx.doctorMode !== "fresh"
                ? [
                      "Doctor ran in the running gateway's container (no TTY: on a TTY it waits for an answer). Run it there by hand:",
                      ...[
                          ...startByHand(image, "kiloclaw-test").slice(0, 1),
                          "docker exec kiloclaw-test openclaw doctor",
                          "docker rm -f kiloclaw-test",
                      ].map((c) => `  ${c}`),
                  ]
                : [
                      'Run it by hand (runbook Step 2, "Check OpenClaw doctor"; warnings are normal, a crash is not; never with -t):',
                      `  docker run --rm -e KILOCODE_API_KEY=test-key ${image} openclaw doctor`,
                  ];
        case "startup":
            return [
                `Next step (runbook Troubleshooting, "Container won't start"): run the image's own command (${cmd}) in the foreground:`,
                ...(ctx.scriptShell && command[0]?.startsWith("/")
                    ? [`  docker run --rm ${PLACEHOLDERS} --entrypoint ${ctx.scriptShell} ${image} -x ${command.map(shellWord).join(" ")}`]
                    : [`  docker run --rm ${PLACEHOLDERS} ${image}`]),
                ...(shell
                    ? [`  docker run -it --rm ${PLACEHOLDERS} --entrypoint ${shell} ${image}`]
                    : [
                          "  (the image has no shell to debug in; read the container's log instead)",
                          ...startByHand(image, "kiloclaw-test").map((c) => `  ${c}`),
                      ]),
            ];
        case "gateway": {
            const inside = [
                ...(tools.has("ps") ? ["docker exec kiloclaw-test ps aux | grep openclaw"] : []),
                ...(tools.has("curl")
                    ? ["docker exec kiloclaw-test curl http://localhost:18789/"]
                    : tools.has("wget")
                      ? ["docker exec kiloclaw-test wget -qO- http://localhost:18789/"]
                      : []),
            ];
            const emulated = ctx.engine.emulated ? `, ×${ctx.engine.deadlineFactor} under emulation` : "";
            return [
                'Next step (runbook Troubleshooting, "Gateway not responding"): start the image by hand and look inside:',
                ...[...startByHand(image, "kiloclaw-test"), ...inside, "docker rm -f kiloclaw-test"].map((c) => `  ${c}`),
                "Dead or slow: the report above says whether anything listened on 18789 inside the container, and shows the",
                `last lines of the log of ${cmd}. If the log still moves and the real gateway's "listening on ws://0.0.0.0:18789"`,
                "(15-60 s after start) is merely late, raise",
                `kiloclaw:smokeGatewaySeconds (now ${ctx.engine.gatewayDeadlineSeconds / ctx.engine.deadlineFactor}s${emulated}).`,
            ];
        }
        case "runtime config": {
            const read = tools.has("cat")
                ? "docker exec kiloclaw-config cat /root/.openclaw/openclaw.json"
                : "docker cp kiloclaw-config:/root/.openclaw/openclaw.json - | tar -xO";
            return [
                `The image's command (${cmd}) writes this file before it starts the gateway. Look (runbook Step 2, "Inspect runtime config"),`,
                'and ask doctor what it makes of it (it says "Config invalid" but exits 0):',
                `  docker run -d --name kiloclaw-config ${PLACEHOLDERS} ${image}`,
                `  ${read}`,
                "  docker exec kiloclaw-config openclaw doctor",
                "  docker rm -f kiloclaw-config",
            ];
        }
        case "image size":
            return [];
    }
}
