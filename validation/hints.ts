// What to do when a check fails: the runbook's debugging step for that check
// (Step 2 and Troubleshooting → "Container issues"), written with only the
// commands the image has (the real image has bash and curl but no ps).
import type { CheckName, EngineFacts } from "./validate";

/** Commands found in the image (`command -v`), e.g. bash, sh, ps, curl, wget, cat. */
export type ToolsInImage = Set<string>;

export interface HintContext {
    image: string;
    tools: ToolsInImage;
    engine: EngineFacts;
    expectedOpenclawVersion: string;
}

const PLACEHOLDERS = "-e KILOCODE_API_KEY=test-key -e OPENCLAW_GATEWAY_TOKEN=test-token";

/** Start the image by hand the way the runbook does, under a fixed name the next commands use. */
const startByHand = (image: string, name: string) => [
    `docker run -d --name ${name} -p 18800:18789 ${PLACEHOLDERS} ${image}`,
    `docker logs -f ${name}`,
];

export function nextSteps(check: CheckName, ctx: HintContext): string[] {
    const { image, tools } = ctx;
    const shell = tools.has("bash") ? "bash" : tools.has("sh") ? "sh" : undefined;
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
            return [
                'Run it by hand (runbook Step 2, "Check OpenClaw doctor"; warnings are normal, a crash is not):',
                `  docker run --rm -e KILOCODE_API_KEY=test-key ${image} openclaw doctor`,
            ];
        case "startup":
            return [
                'Next step (runbook Troubleshooting, "Container won\'t start"): debug the entrypoint:',
                ...(shell
                    ? [
                          `  docker run --rm ${PLACEHOLDERS} ${image} ${shell} -x /usr/local/bin/start-openclaw.sh`,
                          `  docker run -it --rm ${PLACEHOLDERS} ${image} ${shell}`,
                      ]
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
                'The real gateway logs "listening on ws://0.0.0.0:18789" 15-60 s after start; if it is merely slow, raise',
                `kiloclaw:smokeGatewaySeconds (now ${ctx.engine.gatewayDeadlineSeconds / ctx.engine.deadlineFactor}s${emulated}).`,
            ];
        }
        case "runtime config": {
            const read = tools.has("cat")
                ? "docker exec kiloclaw-config cat /root/.openclaw/openclaw.json"
                : "docker cp kiloclaw-config:/root/.openclaw/openclaw.json - | tar -xO";
            return [
                'The entrypoint (start-openclaw.sh) writes this file before it starts the gateway. Look (runbook Step 2, "Inspect runtime config"):',
                `  docker run -d --name kiloclaw-config ${PLACEHOLDERS} ${image}`,
                `  ${read}`,
                "  docker rm -f kiloclaw-config",
            ];
        }
        case "image size":
            return [];
    }
}
