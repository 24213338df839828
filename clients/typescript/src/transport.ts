/**
 * The connection: Connect-ES speaking the gRPC protocol over one HTTP/2 session (plaintext, TLS or mutual TLS),
 * with the retry policy (retry.ts) and the bearer token applied to every call by interceptors. Kept apart from the Client so that the
 * Client's methods read as the API and nothing else.
 */
import { readFileSync } from "node:fs";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { retryInterceptor } from "./retry.js";

/** PEM data: its text (starting `-----BEGIN`), its bytes, or the path of a file holding it. */
export type Pem = string | Uint8Array;

/** How to reach the server and who to be. Unset fields fall back to the environment, as the CLI does. */
export interface ConnectionOptions {
  /** `host:port` (default env `PROMPTBANK_SERVER`, else `localhost:50051`), or a URL `https://host:port`. */
  address?: string;
  /** Bearer token sent as `authorization: Bearer <token>` on every call (default env `PROMPTBANK_TOKEN`). */
  token?: string;
  /** The CA the server's certificate must chain to; setting it turns TLS on (default env `PROMPTBANK_TLS_CA`, a path). */
  tlsCa?: Pem;
  /** Client certificate chain for mutual TLS (with `tlsKey`). */
  tlsCert?: Pem;
  /** Private key of `tlsCert`. */
  tlsKey?: Pem;
  /** Largest message sent or received, in bytes (default 256 MiB: the most a server sends by default; it receives at most 96 MiB, `--limit-message-bytes`). */
  maxMessageBytes?: number;
  /** Retried calls (reads, Classify, Generate, idempotent writes, creates) that find no server wait for one, up to
   * their deadline, instead of failing after a few tries: a coordinator restart costs time, not an error
   * (default false; see src/retry.ts). */
  waitForReady?: boolean;
}

export const DEFAULT_ADDRESS = "localhost:50051";

/** PEM bytes from PEM text, bytes or a file path. */
export function readPem(value: Pem): Buffer {
  if (typeof value !== "string") {
    return Buffer.from(value);
  }
  return value.trimStart().startsWith("-----BEGIN") ? Buffer.from(value) : readFileSync(value);
}

/** Adds the bearer token to every call; the secret lives only in this closure. */
function bearer(secret: string): Interceptor {
  const header = `Bearer ${secret}`;
  return (next) => async (req) => {
    req.header.set("authorization", header);
    return next(req);
  };
}

/** The base URL for an address: `http://` for plaintext, `https://` when TLS is on or the URL says so. */
export function baseUrl(address: string, tls: boolean): string {
  if (/^https?:\/\//.test(address)) {
    return address;
  }
  return `${tls ? "https" : "http"}://${address}`;
}

/** A transport and the session manager that owns its HTTP/2 connection (closed by `abort()`). */
export interface Connection {
  transport: Transport;
  sessions: Http2SessionManager;
  address: string;
}

export function connect(options: ConnectionOptions): Connection {
  const env = process.env;
  const address = options.address ?? (env.PROMPTBANK_SERVER || DEFAULT_ADDRESS);
  const ca = options.tlsCa ?? (env.PROMPTBANK_TLS_CA || undefined);
  const tls = ca !== undefined || options.tlsCert !== undefined || address.startsWith("https://");
  const url = baseUrl(address, tls);
  const nodeOptions = tls
    ? {
        ...(ca !== undefined ? { ca: readPem(ca) } : {}),
        ...(options.tlsCert !== undefined ? { cert: readPem(options.tlsCert) } : {}),
        ...(options.tlsKey !== undefined ? { key: readPem(options.tlsKey) } : {}),
      }
    : {};
  const sessions = new Http2SessionManager(url, { pingIntervalMs: 30_000, pingIdleConnection: false }, nodeOptions);
  const secret = options.token ?? env.PROMPTBANK_TOKEN ?? "";
  const maxBytes = options.maxMessageBytes ?? 256 * 1024 * 1024;
  const transport = createGrpcTransport({
    baseUrl: url,
    sessionManager: sessions,
    interceptors: [retryInterceptor(options.waitForReady ?? false), ...(secret ? [bearer(secret)] : [])],
    readMaxBytes: maxBytes,
    writeMaxBytes: maxBytes,
  });
  return { transport, sessions, address };
}
