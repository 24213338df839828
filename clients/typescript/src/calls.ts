/**
 * How every call runs: a deadline (the client's default or the call's own) and an optional AbortSignal on each
 * attempt, errors turned into PromptBankError, retries of idempotent calls on UNAVAILABLE, and pagination as
 * an async iterator. The Client's methods are one line over these.
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

/** Connect's options for one attempt: the deadline in force and the caller's signal. */
export function connectOptions(options: CallOptions | undefined, defaultTimeoutMs: number): ConnectCallOptions {
  const out: ConnectCallOptions = { timeoutMs: options?.timeoutMs ?? defaultTimeoutMs };
  if (options?.signal) {
    out.signal = options.signal;
  }
  return out;
}

/** Runs one unary call; any failure surfaces as PromptBankError. */
export async function unary<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toPromptBankError(err);
  }
}

/** Re-yields a server stream; any failure, at the start or midway, surfaces as PromptBankError. */
export async function* streamed<T>(messages: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  try {
    yield* messages;
  } catch (err) {
    throw toPromptBankError(err);
  }
}

/** Milliseconds to wait before retry `attempt` (0-based): 200 ms doubling, at most 5 s. */
export function backoffMs(attempt: number): number {
  return Math.min(200 * 2 ** attempt, 5_000);
}

/** Waits before a retry; an abort of `signal` ends the wait as CANCELLED. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, signal ? { signal } : {});
  } catch (err) {
    throw toPromptBankError(err);
  }
}

/**
 * Runs an idempotent call (a create carrying its request id), again on UNAVAILABLE, up to `retries` more
 * times: the server answers a repeated request id with the first result, so a retry never creates twice.
 */
export async function retried<T>(call: () => Promise<T>, retries: number, signal?: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const e = toPromptBankError(err);
      if (e.code !== "UNAVAILABLE" || attempt >= retries || signal?.aborted) {
        throw e;
      }
      await pause(backoffMs(attempt), signal);
    }
  }
}

/** Every item of a paginated list: fetches the next page (with its own deadline) only when it is needed. */
export async function* paginate<P extends { nextPageToken: string }, T>(
  fetchPage: (pageToken: string) => Promise<P>,
  items: (page: P) => T[],
): AsyncGenerator<T, void, undefined> {
  let token = "";
  do {
    const page = await unary(() => fetchPage(token));
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
