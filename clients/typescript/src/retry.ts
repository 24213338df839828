/**
 * How the SDK rides out a coordinator restart: the Python SDK's policy (promptbank/retry.py), applied by one
 * Connect interceptor on every call, the generated clients in `client.rpc` included.
 *
 * Retried on UNAVAILABLE (the server is restarting, or a replica is): every read, Classify and Generate (before
 * their first response), and writes that are idempotent by nature (setting an alias or tags, an update, a
 * rollout's shadow/canary/policy, outcomes: one sent again for its result id changes nothing). Those
 * are also retried on CANCELLED: a server closing its port cancels the calls that reached it in that instant,
 * before any handler ran, and a caller's own cancel never comes back to be retried. Creates carry a request id
 * (the SDK always sends one), so a repeat returns the first result: they are also retried on ABORTED (a
 * concurrent change won). Deletes, cancels, promotions and token creation are not retried: a repeat of one that did commit
 * would report NOT_FOUND or make a second secret. Client streams (UploadDataset) are not retried here either:
 * their examples may be readable once (call it again with the same request id).
 *
 * Waits are gRPC's: the n-th retry waits a random time below min(0.2 s * 2^n, 1.6 s), so four retries wait at
 * most 3 s. No wait runs past the call's deadline: when the next one would, the call ends with its last error
 * (UNAVAILABLE, naming the cause), saying why it stopped. With `waitForReady` a call that finds no server (the
 * connection refused or lost before an answer) does not spend an attempt: it tries again at least every 0.5 s
 * until its deadline, then ends DEADLINE_EXCEEDED naming the last cause.
 */
import { Code, ConnectError, createContextKey, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { STATUS_NAMES, toPromptBankError, type StatusName } from "./errors.js";

export const RETRY_ATTEMPTS = 5; // gRPC caps maxAttempts at 5
export const INITIAL_BACKOFF_MS = 200;
export const MAX_BACKOFF_MS = 1_600;
export const BACKOFF_MULTIPLIER = 2;
/** With waitForReady, the longest wait between tries to reach a server that is not there. */
export const RECONNECT_MAX_MS = 500;
/** A retry starts only with this much of the deadline left after its wait (less: the call ends, naming its cause). */
const MIN_ATTEMPT_MS = 50;

/** Reads, Classify, Generate and idempotent writes: retried on UNAVAILABLE and CANCELLED. */
export const READS: Readonly<Record<string, readonly string[]>> = {
  "promptbank.v1.PromptCatalog": ["ListBackbones", "GetBackbone", "GetPrompt", "ListPrompts", "GetPromptVersion",
    "ListPromptVersions", "ListAliasHistory", "ExportPromptVersion",
    "SetAlias", "UpdatePrompt", "UpdatePromptVersion", "RegisterBackbone"],
  "promptbank.v1.TrainJobs": ["GetTrainJob", "ListTrainJobs", "WatchTrainJob"],
  "promptbank.v1.Inference": ["Classify", "Generate"],
  "promptbank.v1.Tokens": ["ListTokens", "ListAuditEvents"],
  "promptbank.v1.LiveEvaluation": ["RecordOutcomes", "GetRollout", "UpdateRollout", "CompareVersions"],
  "grpc.health.v1.Health": ["Check"],
};
/** Creates carrying a request id: retried on UNAVAILABLE and ABORTED. */
export const CREATES: Readonly<Record<string, readonly string[]>> = {
  "promptbank.v1.PromptCatalog": ["CreatePrompt", "ImportPromptVersion"],
  "promptbank.v1.TrainJobs": ["CreateTrainJob", "UploadDataset"],
};

const POLICY = new Map<string, readonly StatusName[]>([
  ...Object.entries(READS).flatMap(([svc, ms]) => ms.map((m) => [`${svc}/${m}`, ["UNAVAILABLE", "CANCELLED"]] as const)),
  ...Object.entries(CREATES).flatMap(([svc, ms]) => ms.map((m) => [`${svc}/${m}`, ["UNAVAILABLE", "ABORTED"]] as const)),
]);

/** The status codes on which a method (`promptbank.v1.Inference/Classify`) is retried; none: not retried. */
export function retryableCodes(method: string): readonly StatusName[] {
  return POLICY.get(method) ?? [];
}

/** A call's own cap on retries (CallOptions.retries), carried to the interceptor in the call's context values. */
export const RETRIES = createContextKey<number | undefined>(undefined, { description: "promptbank retries" });

/** The bound of the n-th retry's wait (0-based); the wait is drawn at random below it. */
export function backoffBoundMs(n: number): number {
  return Math.min(INITIAL_BACKOFF_MS * BACKOFF_MULTIPLIER ** n, MAX_BACKOFF_MS);
}

const UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/** The call's deadline (epoch ms) from its `grpc-timeout` header; Infinity without one. */
function deadlineOf(header: Headers, now: number): number {
  const m = /^(\d+)([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  return m ? now + Number(m[1]) * UNITS[m[2]!]! : Infinity;
}

/** The attempt's request: the same call with the time left as its `grpc-timeout`. */
function withTimeLeft<R extends { header: Headers }>(req: R, deadline: number): R {
  if (deadline === Infinity) {
    return req;
  }
  const header = new Headers(req.header);
  header.set("grpc-timeout", `${Math.max(1, Math.ceil(deadline - Date.now()))}m`);
  return { ...req, header };
}

/** Whether the failure came from the connection (no server status): the call may not have reached a server. */
function noServer(err: unknown): boolean {
  return !ConnectError.from(err).metadata.has("grpc-status");
}

/** The error that ends a call whose retries stopped, saying why: the last attempt's (its code, unless `code`). */
function stopped(err: unknown, why: string, code?: Code): ConnectError {
  const last = toPromptBankError(err);
  const meta = ConnectError.from(err).metadata;
  return code === undefined
    ? new ConnectError(`${last.serverMessage} (${why})`, last.grpcCode as Code, meta, undefined, err)
    : new ConnectError(`${why}; last: ${last.message}`, code, meta, undefined, err);
}

/** The first response of a server stream, with the stream it heads; any failure before it is thrown here. */
async function head(res: StreamResponse): Promise<StreamResponse> {
  const it = res.message[Symbol.asyncIterator]();
  const first = await it.next();
  async function* rest(): AsyncGenerator<unknown> {
    if (first.done) {
      return;
    }
    yield first.value;
    for (let r = await it.next(); !r.done; r = await it.next()) {
      yield r.value;
    }
  }
  return { ...res, message: rest() } as StreamResponse;
}

/** The single request of a server stream, so that each attempt can send it again. */
async function only(req: StreamRequest): Promise<unknown> {
  for await (const m of req.message) {
    return m;
  }
  throw new ConnectError("server stream without a request message", Code.Internal);
}

/**
 * The interceptor that retries calls by the policy above. Outermost, so every attempt runs the interceptors
 * after it (the bearer token) again. `waitForReady`: see the module's comment.
 */
export function retryInterceptor(waitForReady: boolean): Interceptor {
  return (next) => async (req) => {
    const codes = retryableCodes(`${req.service.typeName}/${req.method.name}`);
    if (codes.length === 0 || (req.stream && req.method.methodKind !== "server_streaming")) {
      return next(req);
    }
    const start = Date.now();
    const deadline = deadlineOf(req.header, start);
    const retries = Math.min(req.contextValues.get(RETRIES) ?? RETRY_ATTEMPTS - 1, RETRY_ATTEMPTS - 1);
    const input = req.stream ? await only(req) : undefined;
    const once = async () => {
      if (!req.stream) {
        return next(withTimeLeft(req, deadline));
      }
      const message = (async function* () {
        yield input;
      })() as StreamRequest["message"];
      return head((await next(withTimeLeft({ ...req, message }, deadline))) as StreamResponse);
    };
    for (let attempt = 1, spent = 0; ; attempt++) {
      try {
        return await once();
      } catch (err) {
        if (req.signal.aborted) {
          throw err; // the caller's cancel, the client's close() or the deadline: never retried
        }
        const code = STATUS_NAMES[toPromptBankError(err, req.signal).grpcCode]!;
        if (!codes.includes(code)) {
          throw err;
        }
        const waiting = waitForReady && code === "UNAVAILABLE" && noServer(err);
        if (!waiting && ++spent > retries) {
          throw spent > 1 ? stopped(err, `gave up after ${attempt} attempts`) : err;
        }
        const bound = waiting ? Math.min(backoffBoundMs(attempt - 1), RECONNECT_MAX_MS) : backoffBoundMs(spent - 1);
        const wait = Math.random() * bound;
        const left = deadline - Date.now();
        if (wait + MIN_ATTEMPT_MS >= left) {
          if (waiting) {
            // wait out the deadline (just short of it, so that this error and not the bare timeout ends the call)
            await sleep(Math.max(0, left - 20), undefined, { signal: req.signal }).catch(() => undefined);
            if (req.signal.aborted) throw err;
            throw stopped(err, `deadline of ${deadline - start} ms passed waiting for the server (${attempt} attempts)`, Code.DeadlineExceeded);
          }
          throw stopped(err, `attempt ${attempt}; the call's deadline of ${deadline - start} ms leaves no time for another`);
        }
        try {
          await sleep(wait, undefined, { signal: req.signal });
        } catch {
          throw err;
        }
      }
    }
  };
}
