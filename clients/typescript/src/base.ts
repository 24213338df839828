/**
 * What every Client method stands on: one connection (transport.ts), the generated Connect clients, the
 * default deadline, and close(). The methods live in catalog.ts, live.ts and client.ts, by what they manage.
 */
import { createClient, type Client as RpcClient } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { Tokens } from "./gen/promptbank/v1/auth_pb.js";
import { PromptCatalog } from "./gen/promptbank/v1/catalog_pb.js";
import { Inference } from "./gen/promptbank/v1/inference_pb.js";
import { TrainJobs } from "./gen/promptbank/v1/jobs_pb.js";
import { LiveEvaluation } from "./gen/promptbank/v1/live_pb.js";
import { attempt, backoffMs, pause, unary, type Attempt, type CallOptions } from "./calls.js";
import { PromptBankError } from "./errors.js";
import type { ClientOptions } from "./options.js";
import { connect } from "./transport.js";

export class ClientBase {
  readonly address: string;
  readonly timeoutMs: number;
  /** The generated Connect clients, for calls this class does not wrap. */
  readonly rpc: {
    inference: RpcClient<typeof Inference>;
    jobs: RpcClient<typeof TrainJobs>;
    catalog: RpcClient<typeof PromptCatalog>;
    tokens: RpcClient<typeof Tokens>;
    live: RpcClient<typeof LiveEvaluation>;
  };
  private readonly sessions: Http2SessionManager;
  /** Aborted by close(): ends every call in flight as CANCELLED and stops retries and reconnections. */
  private readonly lifetime = new AbortController();

  /** `new Client({ address: "localhost:50051", token, tlsCa })`; every field is optional. */
  constructor(options: ClientOptions = {}) {
    const conn = connect(options);
    this.address = conn.address;
    this.sessions = conn.sessions;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.rpc = {
      inference: createClient(Inference, conn.transport),
      jobs: createClient(TrainJobs, conn.transport),
      catalog: createClient(PromptCatalog, conn.transport),
      tokens: createClient(Tokens, conn.transport),
      live: createClient(LiveEvaluation, conn.transport),
    };
  }

  /** Closes the connection; calls in flight fail with CANCELLED. */
  close(): void {
    this.lifetime.abort();
    this.sessions.abort();
  }

  /** The deadline and signal of one call. */
  protected at(options?: CallOptions, timeoutMs = this.timeoutMs): Attempt {
    return attempt(options, timeoutMs, this.lifetime.signal);
  }

  /** Resolves once the server answers a call (any answer but UNAVAILABLE), polling until `timeoutMs`. */
  async waitReady(options: CallOptions = {}): Promise<void> {
    const limitMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + limitMs;
    for (let n = 0; ; n++) {
      const o = this.at({ ...options, timeoutMs: Math.min(5_000, limitMs) });
      try {
        await unary((a) => this.rpc.catalog.listBackbones({ pageSize: 1 }, a), o);
        return;
      } catch (err) {
        const e = err as PromptBankError;
        if (o.signal.aborted) {
          throw e;
        }
        if (e.code !== "UNAVAILABLE" && e.code !== "DEADLINE_EXCEEDED") {
          return; // an answer: the server is up, whatever it thinks of this call
        }
        if (Date.now() + backoffMs(n) > deadline) {
          throw new PromptBankError(14, `server ${this.address} did not answer within ${limitMs} ms`, { cause: err });
        }
        await pause(backoffMs(n), o.signal);
      }
    }
  }
}
