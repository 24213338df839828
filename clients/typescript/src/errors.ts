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
  /** The server's message (`grpc-message`), without the code; empty when the server sent none. */
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

/**
 * The PromptBankError for anything a call threw: a ConnectError keeps its code and raw server message; an
 * AbortSignal's own abort is CANCELLED; other errors become UNKNOWN carrying the original as `cause`.
 */
export function toPromptBankError(err: unknown): PromptBankError {
  if (err instanceof PromptBankError) {
    return err;
  }
  const ce = ConnectError.from(err);
  return new PromptBankError(ce.code, ce.rawMessage, { metadata: ce.metadata, cause: err });
}
