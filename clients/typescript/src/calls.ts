/**
 * How every call runs: a deadline (the client's default or the call's own) and an AbortSignal on each attempt,
 * errors turned into PromptBankError, retries of idempotent calls on UNAVAILABLE, and pagination as an async
 * iterator. The Client's methods are one line over these.
 */
import type { CallOptions as ConnectCallOptions } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { toPromptBankError } from "./errors.js";

/** Per-call options that every Client method takes (in its last argument). */
export interface CallOptions {
  /** Deadline of this call in milliseconds (default: the client's `timeoutMs`; streams have their own). */
  timeoutMs?: number;
  /** Aborting it cancels the call; the call then fails with code CANCELLED. */
  signal?: AbortSignal;
}

/** Connect's options for a call: its deadline and a signal that is always set (the caller's and the client's). */
export type Attempt = ConnectCallOptions & { signal: AbortSignal; timeoutMs: number };

/** The options of one call: the deadline in force, and a signal aborted by the caller's or by `lifetime`. */
export function attempt(options: CallOptions | undefined, defaultTimeoutMs: number, lifetime: AbortSignal): Attempt {
  const signal = options?.signal ? AbortSignal.any([options.signal, lifetime]) : lifetime;
  return { timeoutMs: options?.timeoutMs ?? defaultTimeoutMs, signal };
}

/** Runs one unary call; any failure surfaces as PromptBankError. */
export async function unary<T>(call: (o: Attempt) => Promise<T>, o: Attempt): Promise<T> {
  try {
    return await call(o);
  } catch (err) {
    throw toPromptBankError(err, o.signal);
  }
}

/** Re-yields a server stream; any failure, at the start or midway, surfaces as PromptBankError. */
export async function* streamed<T>(open: (o: Attempt) => AsyncIterable<T>, o: Attempt): AsyncGenerator<T, void, undefined> {
  try {
    yield* open(o);
  } catch (err) {
    throw toPromptBankError(err, o.signal);
  }
}

/** Milliseconds to wait before retry `attempt` (0-based): 200 ms doubling, at most 5 s. */
export function backoffMs(n: number): number {
  return Math.min(200 * 2 ** n, 5_000);
}

/** Waits before a retry; an abort of `signal` ends the wait as CANCELLED. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (err) {
    throw toPromptBankError(err, signal);
  }
}

/**
 * Runs an idempotent call (a create carrying its request id), again on UNAVAILABLE, up to `retries` more
 * times, each with its own deadline: the server answers a repeated request id with the first result, so a
 * retry never creates twice.
 */
export async function retried<T>(call: (o: Attempt) => Promise<T>, o: Attempt, retries: number): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await unary(call, o);
    } catch (err) {
      if (!(err instanceof Error && "code" in err && err.code === "UNAVAILABLE") || n >= retries || o.signal.aborted) {
        throw err;
      }
      await pause(backoffMs(n), o.signal);
    }
  }
}

/** Every item of a paginated list: fetches the next page (with its own deadline) only when it is needed. */
export async function* paginate<P extends { nextPageToken: string }, T>(
  fetchPage: (pageToken: string, o: Attempt) => Promise<P>,
  items: (page: P) => T[],
  o: Attempt,
): AsyncGenerator<T, void, undefined> {
  let token = "";
  do {
    const page = await unary((a) => fetchPage(token, a), o);
    yield* items(page);
    token = page.nextPageToken;
  } while (token);
}

/** All items of an async iterable in an array (Array.fromAsync arrives only in Node 22). */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) {
    out.push(item);
  }
  return out;
}
