/**
 * How every call runs: a deadline (the client's default or the call's own) and an AbortSignal on each attempt,
 * errors turned into PromptBankError, and pagination as an async iterator. Retries are the transport's
 * interceptor (retry.ts). The Client's methods are one line over these.
 */
import { createContextValues, type CallOptions as ConnectCallOptions } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { toPromptBankError } from "./errors.js";
import { RETRIES } from "./retry.js";

/** Per-call options that every Client method takes (in its last argument). */
export interface CallOptions {
  /** Deadline of this call in milliseconds (default: the client's `timeoutMs`; streams have their own). */
  timeoutMs?: number;
  /** Aborting it cancels the call; the call then fails with code CANCELLED. */
  signal?: AbortSignal;
  /** Most retries of this call where the retry policy retries it at all (default and most: 4; 0: none). */
  retries?: number;
}

/** Connect's options for a call: its deadline and a signal that is always set (the caller's and the client's). */
export type Attempt = ConnectCallOptions & { signal: AbortSignal; timeoutMs: number };

/** The options of one call: the deadline in force, and a signal aborted by the caller's or by `lifetime`. */
export function attempt(options: CallOptions | undefined, defaultTimeoutMs: number, lifetime: AbortSignal): Attempt {
  const signal = options?.signal ? AbortSignal.any([options.signal, lifetime]) : lifetime;
  const retries = options?.retries;
  if (retries !== undefined && !(Number.isInteger(retries) && retries >= 0)) {
    throw new RangeError(`retries must be a whole number >= 0, got ${retries}`);
  }
  return {
    timeoutMs: options?.timeoutMs ?? defaultTimeoutMs,
    signal,
    ...(retries !== undefined ? { contextValues: createContextValues().set(RETRIES, retries) } : {}),
  };
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

/** Milliseconds to wait before poll or reconnection `n` (0-based) of waitReady and watchJob: 200 ms doubling, at most 5 s. */
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
