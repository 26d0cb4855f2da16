// The rollout, declared in the runbook's order: build → smoke tests → push → warm on Fly
// → point the worker at the tag → destroy and re-provision the instance. The push and the warm-up
// run beside the smoke tests; the worker and the instance wait for both (kiloclaw:strictOrder: one after another).
import * as pulumi from "@pulumi/pulumi";
import { ImageValidation } from "./components/ImageValidation";
import { KiloclawImage } from "./components/KiloclawImage";
import { LocalImages } from "./components/LocalImages";
import { PrebuiltImage } from "./components/PrebuiltImage";
import { RegistryPush } from "./components/RegistryPush";
import { WarmMachine } from "./components/WarmMachine";
import { WorkerImageVersion } from "./components/WorkerImageVersion";
import { WorkerInstance } from "./components/WorkerInstance";
import { RolloutConfig } from "./lib/config";
import { LocalScope } from "./lib/localScope";
import { servicesVerified } from "./preflight";

/** What a developer checks by hand today: the stack outputs. */
export interface RolloutOutputs {
    imageRef: pulumi.Output<string>;
    tag: pulumi.Output<string>;
    openclawVersion: pulumi.Output<string>;
    userId: string;
    flyAppName: pulumi.Output<string>;
    flyMachineId: pulumi.Output<string>;
    status: pulumi.Output<string>;
    trackedImageTag: pulumi.Output<string>;
    /** The image the instance's Fly machine runs, as Fly reports it (checked against the pushed ref). */
    runningImage: pulumi.Output<string>;
    /** The gateway as the worker reports it ("running"), or "unsupported" on a worker without gateway/status. */
    gatewayState: pulumi.Output<string>;
    /** Secret. */
    gatewayToken: pulumi.Output<string>;
    /** The image validation's report, one line per check (absent without a local build + validation). */
    validationReport?: pulumi.Output<string>;
    imageSizeBytes?: pulumi.Output<number>;
    /** Change from the previous tag of the image's repository (the runbook's "Compare image sizes"). */
    imageSizeChangeBytes?: pulumi.Output<number | undefined>;
}

/** Declares the whole rollout for one developer's stack. */
export function rollout(config: RolloutConfig): RolloutOutputs {
    const { secrets, source } = config;
    // Everything this stack makes on the local machine carries its identity (lib/localScope.ts).
    const scope: LocalScope = { project: pulumi.getProject(), stack: pulumi.getStack(), sandboxInstance: config.sandboxInstance };

    // Either build, test and push the checkout's Dockerfile, or roll out an image already in the registry.
    let imageRefOut: pulumi.Output<string>;
    let imageTag: pulumi.Input<string>;
    let imageDigest: pulumi.Input<string> | undefined;
    // Nothing is built, pushed or provisioned before the worker, Docker and Fly answered (preflight.ts).
    const verified = servicesVerified(config);
    let pushed: pulumi.Resource[];
    let validated: ImageValidation | undefined;
    if (source.kind === "build") {
        const image = new KiloclawImage("kiloclaw", { context: source.context, dockerfile: source.dockerfile, scope }, { dependsOn: verified });
        const validation = config.validate
            ? new ImageValidation("smoke-tests", {
                  image: image.imageName,
                  imageId: image.imageId,
                  expectedOpenclawVersion: config.openclawVersion,
                  expectedNodeVersion: config.expectedNodeVersion,
                  startupDeadlineSeconds: config.smokeStartupSeconds,
                  gatewayDeadlineSeconds: config.smokeGatewaySeconds,
                  // Its failure says that this tag was pushed anyway (RegistryPush's target, known before the push).
                  pushedBeside: config.strictOrder ? undefined : `${config.registryServer}/${config.registryApp}:${image.imageTag}`,
              })
            : undefined;
        validated = validation;
        const push = new RegistryPush(
            "registry",
            {
                sourceImage: image.imageName,
                sourceImageId: image.imageId,
                registryServer: config.registryServer,
                registryApp: config.registryApp,
                imageTag: image.imageTag,
                registryToken: secrets.flyApiToken,
            },
            // Beside the validation unless strictOrder: nothing points at the tag before the validation passed.
            { dependsOn: validation && config.strictOrder ? [validation] : [image] },
        );
        imageRefOut = push.imageRef;
        imageTag = image.imageTag;
        imageDigest = push.digest;
        // Removes this tag's local image and staged context once a new tag's instance runs, and on destroy after the
        // instance. The pushed tag is not kept locally (scripts/push-image.sh): its name is not this stack's alone.
        const localImages = new LocalImages("local-images", { images: [image.imageName], contexts: [image.contextDir] }, { dependsOn: [push] });
        pushed = [push, localImages];
    } else {
        // Pull the image and check its openclaw version before anything changes; pull exactly that digest afterwards.
        const prebuilt = new PrebuiltImage(
            "prebuilt",
            {
                imageRef: source.imageRef,
                registryServer: config.registryServer,
                expectedOpenclawVersion: config.openclawVersion,
                versionSource: config.openclawPin === config.openclawVersion ? "the Dockerfile pin" : "kiloclaw:openclawVersion",
            },
            { dependsOn: verified },
        );
        imageRefOut = prebuilt.imageRef;
        imageTag = source.imageTag;
        imageDigest = prebuilt.digest;
        pushed = [prebuilt];
    }

    const warm = config.warm
        ? new WarmMachine(
              "warm",
              {
                  appName: config.registryApp,
                  region: config.region,
                  image: imageRefOut,
                  owner: `${pulumi.getProject()}.${pulumi.getStack()}`,
                  timeoutSeconds: config.warmTimeoutSeconds,
              },
              { dependsOn: pushed },
          )
        : undefined;

    const workerVersion = new WorkerImageVersion(
        "worker-image",
        {
            imageTag,
            imageDigest,
            openclawVersion: config.openclawVersion,
            openclawPin: config.openclawPin,
            registryServer: config.registryServer,
            registryApp: config.registryApp,
            workerRegistryApp: config.workerRegistryApp,
            publish: config.publishImageVersion,
            workerSettings: config.workerSettings,
            envLocalKeys: config.envLocalKeys,
            userId: config.userId,
            kilocodeApiKey: secrets.kilocodeApiKey,
            workerRestartedForTag: config.workerRestartedForTag,
        },
        { dependsOn: [...(warm ? [warm] : pushed), ...(validated ? [validated] : [])] },
    );

    const instance = new WorkerInstance(
        "instance",
        {
            userId: config.userId,
            imageTag,
            // The worker starts machines on `<registry>/<app>:<tag>`; the digest (pinned by warm/push) is not in that reference.
            imageRef: imageRefOut.apply((ref) => ref.split("@")[0]),
            openclawVersion: config.openclawVersion,
            region: config.region,
            kilocodeApiKey: secrets.kilocodeApiKey,
            expectedFlyAppName: config.flyAppName,
            timeoutSeconds: config.instanceTimeoutSeconds,
        },
        { dependsOn: [workerVersion] },
    );

    return {
        imageRef: imageRefOut,
        tag: pulumi.output(imageTag),
        openclawVersion: instance.openclawVersion,
        userId: config.userId,
        flyAppName: instance.flyAppName,
        flyMachineId: instance.flyMachineId,
        status: instance.status,
        trackedImageTag: instance.trackedImageTag,
        runningImage: instance.runningImage,
        gatewayState: instance.gatewayState,
        gatewayToken: instance.gatewayToken,
        validationReport: validated?.report,
        imageSizeBytes: validated?.imageSizeBytes,
        imageSizeChangeBytes: validated?.imageSizeChangeBytes,
    };
}
