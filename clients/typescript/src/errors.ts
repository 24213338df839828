/**
 * One error type for every failed call: the gRPC status code by its canonical name and the server's message,
 * so callers branch on `err.code === "NOT_FOUND"` without knowing the transport library underneath.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** The canonical gRPC status code names, indexed by their numbers (0..16). */
export const STATUS_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** A gRPC status code name, e.g. `"NOT_FOUND"`. */
export type StatusName = (typeof STATUS_NAMES)[number];

/** A call the server (or the connection to it) refused: `code` names the status, `serverMessage` says why. */
export class PromptBankError extends Error {
  /** The status code name, e.g. `"INVALID_ARGUMENT"`. */
  readonly code: StatusName;
  /** The status code number (gRPC numbering, e.g. 3 for INVALID_ARGUMENT). */
  readonly grpcCode: number;
  /** The server's message (`grpc-message`), without the code; for a failure on this side (a deadline, a failed
   * connection) what happened there. */
  readonly serverMessage: string;
  /** Response headers and trailers the server sent with the error. */
  readonly metadata: Headers;

  constructor(grpcCode: number, serverMessage: string, options: { metadata?: Headers; cause?: unknown } = {}) {
    const code = STATUS_NAMES[grpcCode] ?? "UNKNOWN";
    super(serverMessage ? `${code}: ${serverMessage}` : code, { cause: options.cause });
    this.name = "PromptBankError";
    this.code = code;
    this.grpcCode = STATUS_NAMES[grpcCode] ? grpcCode : Code.Unknown;
    this.serverMessage = serverMessage;
    this.metadata = options.metadata ?? new Headers();
  }
}

/** Node, HTTP/2 and TLS error codes that mean the connection failed under a call (or never came up). */
const NETWORK_CODES =
  /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ERR_STREAM_PREMATURE_CLOSE|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$|^ERR_(HTTP2|SSL|TLS)_|CERT/;

/** Whether a failure came from the connection (lost, refused, or its TLS handshake) rather than from the server's answer or the caller. */
function lostConnection(ce: ConnectError, signal: AbortSignal | undefined): boolean {
  if (ce.metadata.has("grpc-status") || signal?.aborted) {
    return false; // the server's own status, or the caller's (or the client's) own cancel
  }
  if (ce.code === Code.Canceled) {
    return true; // connect-node reports a stream whose connection closed under it as CANCELED
  }
  if (ce.code !== Code.Aborted && ce.code !== Code.Internal && ce.code !== Code.Unknown) {
    return false;
  }
  for (let e: unknown = ce.cause ?? ce; e instanceof Error; e = e.cause === e ? undefined : e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_CODES.test(code)) {
      return true;
    }
  }
  return ce.rawMessage.startsWith("http/2 stream closed");
}

/**
 * The PromptBankError for anything a call threw. A ConnectError keeps its code and the server's raw message.
 * A connection lost under a call, or one whose TLS handshake failed, is UNAVAILABLE, as in gRPC's own clients
 * (connect-node reports these as CANCELED, ABORTED or INTERNAL); `signal` is the call's, whose abort keeps
 * CANCELLED meaning "you cancelled".
 */
export function toPromptBankError(err: unknown, signal?: AbortSignal): PromptBankError {
  if (err instanceof PromptBankError) {
    return err;
  }
  const ce = ConnectError.from(err);
  if (lostConnection(ce, signal)) {
    return new PromptBankError(Code.Unavailable, `connection failed: ${ce.rawMessage}`, { metadata: ce.metadata, cause: err });
  }
  return new PromptBankError(ce.code, ce.rawMessage, { metadata: ce.metadata, cause: err });
}
