import * as path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

export interface ImageValidationArgs {
    /** The local image to test. */
    image: pulumi.Input<string>;
    /** Re-run the tests whenever this changes (the image id). */
    imageId: pulumi.Input<string>;
    /** What `openclaw --version` must print: the Dockerfile's pin. */
    expectedOpenclawVersion: pulumi.Input<string>;
    /** How long the container must survive startup checks before giving up. */
    startupDeadlineSeconds?: pulumi.Input<number>;
    /** How long to wait for the gateway's first 2xx. */
    gatewayDeadlineSeconds?: pulumi.Input<number>;
}

/** The runbook's three quick validations (version, startup, gateway), run locally before anything is pushed. */
export class ImageValidation extends pulumi.ComponentResource {
    /** The smoke test's report. */
    public readonly report: pulumi.Output<string>;

    constructor(name: string, args: ImageValidationArgs, opts?: pulumi.ComponentResourceOptions) {
        super("kiloclaw:index:ImageValidation", name, {}, opts);
        const smoke = new command.local.Command(
            `${name}-smoke`,
            {
                create: `bash ${path.join(__dirname, "..", "scripts", "smoke-test.sh")}`,
                // Placeholder credentials only (set inside the script): the image never sees a real key here.
                environment: {
                    IMAGE: args.image,
                    EXPECTED_OPENCLAW_VERSION: args.expectedOpenclawVersion,
                    STARTUP_DEADLINE_SECONDS: pulumi.output(args.startupDeadlineSeconds ?? 60).apply(String),
                    GATEWAY_DEADLINE_SECONDS: pulumi.output(args.gatewayDeadlineSeconds ?? 90).apply(String),
                },
                triggers: [args.imageId, args.expectedOpenclawVersion],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.report = smoke.stdout;
        this.registerOutputs({ report: this.report });
    }
}
