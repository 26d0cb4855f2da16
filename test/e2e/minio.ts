// A real S3-compatible server for the S3 backend test: MinIO (built from its Go module by
// bootstrap/install-minio.sh, cached) on 127.0.0.1 with its data in a temp dir, and the two
// bucket operations the test needs (make a bucket, list keys) as SigV4-signed requests: no SDK.
import { ChildProcess, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, scriptPath } from "../../sandbox/docker";

const REGION = "us-east-1";

export interface MinioServer {
    /** `127.0.0.1:<port>` */
    host: string;
    accessKey: string;
    secretKey: string;
    makeBucket(bucket: string): Promise<void>;
    /** Every key in the bucket under `prefix`. */
    listKeys(bucket: string, prefix?: string): Promise<string[]>;
    /** Stops the server and removes its data. */
    stop(): Promise<void>;
}

/** The MinIO binary bootstrap/install-minio.sh builds (cached; its progress goes to stderr). */
export function findMinio(): Promise<string> {
    return new Promise((resolve, reject) => {
        let stdout = "";
        const child = spawn("bash", [scriptPath("install-minio.sh")], { stdio: ["ignore", "pipe", "inherit"] });
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
        child.on("error", reject);
        child.on("close", (code) =>
            code === 0 ? resolve(stdout.trim().split("\n").pop() ?? "") : reject(new Error("bootstrap/install-minio.sh failed (output above).")),
        );
    });
}

export async function startMinio(bin: string, deadlineMs = 60_000): Promise<MinioServer> {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "kiloclaw-minio-"));
    const host = `127.0.0.1:${await freePort()}`;
    const accessKey = "kiloclaw-test";
    const secretKey = crypto.randomBytes(18).toString("hex");
    const child = spawn(bin, ["server", path.join(dataDir, "data"), "--address", host, "--console-address", `127.0.0.1:${await freePort()}`], {
        env: { ...process.env, MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_BROWSER: "off", MINIO_CI_CD: "1" },
        stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout?.setEncoding("utf8").on("data", (c: string) => (output = (output + c).slice(-4000)));
    child.stderr?.setEncoding("utf8").on("data", (c: string) => (output = (output + c).slice(-4000)));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
            child.kill("SIGTERM");
            await exited;
        }
        fs.rmSync(dataDir, { recursive: true, force: true });
    };
    try {
        await waitReady(host, child, exited, deadlineMs, () => output);
    } catch (err) {
        await stop();
        throw err;
    }
    const server: MinioServer = {
        host,
        accessKey,
        secretKey,
        async makeBucket(bucket) {
            const res = await signedFetch(server, "PUT", `/${bucket}`, {});
            if (res.status !== 200) throw new Error(`MinIO: making bucket ${bucket} answered ${res.status}: ${await res.text()}`);
        },
        async listKeys(bucket, prefix = "") {
            const keys: string[] = [];
            let token: string | undefined;
            do {
                const query: Record<string, string> = { "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) };
                const res = await signedFetch(server, "GET", `/${bucket}`, query);
                const xml = await res.text();
                if (res.status !== 200) throw new Error(`MinIO: listing ${bucket} answered ${res.status}: ${xml}`);
                for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unescapeXml(m[1]));
                token = /<IsTruncated>true<\/IsTruncated>/.test(xml)
                    ? unescapeXml(/<NextContinuationToken>([^<]*)</.exec(xml)?.[1] ?? "")
                    : undefined;
            } while (token);
            return keys.sort();
        },
        stop,
    };
    return server;
}

/** Polls the liveness route until it answers 200; fails with the server's output when it exits or the deadline passes. */
async function waitReady(host: string, child: ChildProcess, exited: Promise<number | null>, deadlineMs: number, output: () => string): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    let exitCode: number | null | undefined;
    void exited.then((code) => (exitCode = code));
    while (Date.now() < deadline) {
        if (exitCode !== undefined) throw new Error(`MinIO exited (${exitCode}) before it answered:\n${output()}`);
        const ok = await fetch(`http://${host}/minio/health/live`, { signal: AbortSignal.timeout(2000) }).then(
            (r) => r.status === 200,
            () => false,
        );
        if (ok) return;
        await new Promise((r) => setTimeout(r, 200));
    }
    child.kill("SIGTERM");
    throw new Error(`MinIO did not answer on ${host} within ${deadlineMs / 1000} s:\n${output()}`);
}

function unescapeXml(s: string): string {
    return s
        .replace(/&lt;/g, "<")
        .replace(/&gt;/g, ">")
        .replace(/&quot;/g, '"')
        .replace(/&apos;/g, "'")
        .replace(/&amp;/g, "&");
}

/** RFC 3986 encoding, as SigV4's canonical query wants it. */
function uriEncode(s: string): string {
    return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const sha256 = (data: string) => crypto.createHash("sha256").update(data).digest("hex");
const hmac = (key: crypto.BinaryLike, data: string) => crypto.createHmac("sha256", key).update(data).digest();

/** A request signed with AWS Signature Version 4 (empty body), path-style. */
function signedFetch(server: MinioServer, method: string, pathname: string, query: Record<string, string>): Promise<Response> {
    const amzDate = new Date()
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d{3}/, "");
    const day = amzDate.slice(0, 8);
    const payloadHash = sha256("");
    const canonicalQuery = Object.keys(query)
        .sort()
        .map((k) => `${uriEncode(k)}=${uriEncode(query[k])}`)
        .join("&");
    const headers: Record<string, string> = { host: server.host, "x-amz-content-sha256": payloadHash, "x-amz-date": amzDate };
    const signedHeaders = Object.keys(headers).sort().join(";");
    const canonicalRequest = [
        method,
        pathname.split("/").map(uriEncode).join("/"),
        canonicalQuery,
        ...Object.keys(headers)
            .sort()
            .map((k) => `${k}:${headers[k]}`),
        "",
        signedHeaders,
        payloadHash,
    ].join("\n");
    const scope = `${day}/${REGION}/s3/aws4_request`;
    const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
    const key = hmac(hmac(hmac(hmac(`AWS4${server.secretKey}`, day), REGION), "s3"), "aws4_request");
    const signature = crypto.createHmac("sha256", key).update(stringToSign).digest("hex");
    const { host: _host, ...sent } = headers;
    return fetch(`http://${server.host}${pathname}${canonicalQuery ? `?${canonicalQuery}` : ""}`, {
        method,
        headers: {
            ...sent,
            authorization: `AWS4-HMAC-SHA256 Credential=${server.accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
        },
        signal: AbortSignal.timeout(30_000),
    });
}
