import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { parseValidationOutput } from "../validation/report";

export interface ImageValidationArgs {
    /** The local image to test. */
    image: pulumi.Input<string>;
    /** Re-run the tests whenever this changes (the image id). */
    imageId: pulumi.Input<string>;
    /** What `openclaw --version` must print: the Dockerfile's pin. */
    expectedOpenclawVersion: pulumi.Input<string>;
    /** What `node --version` must print (the Dockerfile's Node pin); unchecked when absent. */
    expectedNodeVersion?: pulumi.Input<string | undefined>;
    /** Deadline of each short `docker run --rm` check (×3 when the engine emulates amd64). */
    startupDeadlineSeconds?: pulumi.Input<number>;
    /** How long to wait for the gateway's first 2xx after `docker run` (×3 under emulation). */
    gatewayDeadlineSeconds?: pulumi.Input<number>;
    /** The registry reference pushed while the validation runs: a failure says that nothing points at it. */
    pushedBeside?: string;
}

/**
 * The runbook's Step 2 before anything is pushed: openclaw and Node versions, the image's directories,
 * `openclaw doctor`, startup, gateway, runtime config and image size (validation/, run by scripts/smoke-test.sh).
 * `pulumi up` streams the report; it is also kept as outputs.
 */
export class ImageValidation extends pulumi.ComponentResource {
    /** One line per check with its result and time. */
    public readonly report: pulumi.Output<string>;
    public readonly imageSizeBytes: pulumi.Output<number>;
    /** Size change from the previous tag of the same repository (undefined when there is none). */
    public readonly imageSizeChangeBytes: pulumi.Output<number | undefined>;
    /** The tag the size is compared with. */
    public readonly previousImage: pulumi.Output<string | undefined>;

    constructor(name: string, args: ImageValidationArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:ImageValidation", name, {}, opts);
        const expectedNode = pulumi.output(args.expectedNodeVersion).apply((v) => v ?? "");
        const smoke = new command.local.Command(
            `${name}-smoke`,
            {
                // local.Command (@pulumi/command 1.2.1) has no timeout: smoke-test.sh bounds the run by the deadlines below
                // (`timeout`), and the validation stops each check at its own. Relative: the command provider runs in the
                // project directory (dir unset), so no checkout's path is in the state.
                create: "bash scripts/smoke-test.sh",
                // Placeholder credentials only (set inside the validation): the image never sees a real key here.
                environment: {
                    IMAGE: args.image,
                    EXPECTED_OPENCLAW_VERSION: args.expectedOpenclawVersion,
                    EXPECTED_NODE_VERSION: expectedNode,
                    STARTUP_DEADLINE_SECONDS: pulumi.output(args.startupDeadlineSeconds ?? 60).apply(String),
                    GATEWAY_DEADLINE_SECONDS: pulumi.output(args.gatewayDeadlineSeconds ?? 90).apply(String),
                    ...(args.pushedBeside ? { PUSHED_BESIDE: args.pushedBeside } : {}),
                },
                triggers: [args.imageId, args.expectedOpenclawVersion, expectedNode],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        const parsed = smoke.stdout.apply(parseValidationOutput);
        this.report = parsed.report;
        this.imageSizeBytes = parsed.apply((p) => p.summary?.imageSizeBytes ?? 0);
        this.imageSizeChangeBytes = parsed.apply((p) => p.summary?.imageSizeChangeBytes);
        this.previousImage = parsed.apply((p) => p.summary?.previousImage);
        this.registerOutputs({
            report: this.report,
            imageSizeBytes: this.imageSizeBytes,
            imageSizeChangeBytes: this.imageSizeChangeBytes,
            previousImage: this.previousImage,
        });
    }
}
