// What the mocked providers answer: enough outputs for the program to wire up.
export function mockOutputs(type: string, inputs: Record<string, any>): Record<string, unknown> {
    switch (type) {
        case "docker:index/image:Image":
            return { repoDigest: `sha256:${"1".repeat(64)}`, imageName: inputs.imageName };
        case "command:local:Command":
            return { stdout: `pushed\nsha256:${"2".repeat(64)}`, stderr: "" };
        case "pulumi-nodejs:dynamic/kiloclaw:PrebuiltImage":
            return { digest: `sha256:${"3".repeat(64)}`, openclawVersion: inputs.expectedOpenclawVersion };
        case "pulumi-nodejs:dynamic/kiloclaw:WarmMachine":
            return { machineId: "0805459b00d908", waitTimeouts: 0 };
        case "pulumi-nodejs:dynamic/kiloclaw:WorkerImageVersion":
            return { previousImageTag: "dev-old", published: "published" };
        case "pulumi-nodejs:dynamic/kiloclaw:WorkerInstance":
            return {
                status: "running",
                sandboxId: Buffer.from(String(inputs.userId ?? "")).toString("base64url"),
                flyAppName: inputs.expectedFlyAppName,
                flyMachineId: "e2865013b79786",
                flyVolumeId: "vol_test",
                flyRegion: inputs.region,
                trackedImageTag: inputs.imageTag,
                runningOpenclawVersion: inputs.openclawVersion,
                runningImage: inputs.imageRef,
                gatewayState: "running",
                gatewayToken: "mock-gateway-token",
            };
        default:
            return {};
    }
}
