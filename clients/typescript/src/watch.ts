/**
 * A job's events as one stream that survives a lost connection: on UNAVAILABLE (a dropped connection, a
 * coordinator restarting) it reconnects and asks for the events after the last one it saw, so a caller sees
 * every event once, in order. A server that does not know `after_sequence` replays from the first event;
 * the events already seen are skipped here, so the caller's view is the same either way.
 */
import type { TrainJobEvent } from "./gen/promptbank/v1/jobs_pb.js";
import { backoffMs, pause, type Attempt, type CallOptions } from "./calls.js";
import { toPromptBankError } from "./errors.js";

export interface WatchOptions extends CallOptions {
  /** Only events after this sequence number (default 0: from the first event). */
  afterSequence?: number | bigint;
  /** Reconnections in a row without a new event before UNAVAILABLE is thrown (default 10: about 30 s of waits,
   * plus each reconnection's own retries before its first event, at most 3 s each; see retry.ts). */
  reconnects?: number;
}

/** Opens the server stream of events after `afterSequence`. */
export type OpenWatch = (afterSequence: bigint, o: Attempt) => AsyncIterable<TrainJobEvent>;

/**
 * Every event of the job after `options.afterSequence`, until the server ends the stream (the job has ended).
 * `o` is the whole watch's deadline and signal; each reconnection gets what is left of that deadline.
 */
export async function* resumableWatch(open: OpenWatch, options: WatchOptions, o: Attempt): AsyncGenerator<TrainJobEvent, void, undefined> {
  const deadline = Date.now() + o.timeoutMs;
  const reconnects = options.reconnects ?? 10;
  let after = BigInt(options.afterSequence ?? 0);
  let failures = 0;
  for (;;) {
    try {
      for await (const event of open(after, { ...o, timeoutMs: Math.max(1, deadline - Date.now()) })) {
        if (event.sequence <= after) {
          continue; // replayed by a server that ignores after_sequence
        }
        after = event.sequence;
        failures = 0;
        yield event;
      }
      return;
    } catch (err) {
      const e = toPromptBankError(err, o.signal);
      const wait = backoffMs(failures);
      if (e.code !== "UNAVAILABLE" || failures >= reconnects || o.signal.aborted || Date.now() + wait >= deadline) {
        throw e;
      }
      failures++;
      await pause(wait, o.signal);
    }
  }
}
