/** The options objects of the Client's constructor and methods (each method's last argument). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HyperparametersSchema } from "./gen/promptbank/v1/jobs_pb.js";
import type { CallOptions } from "./calls.js";
import type { ExampleInput, TaskOptions } from "./inputs.js";
import type { ConnectionOptions } from "./transport.js";

/** Options of classify and classifyEnsemble. */
export interface ClassifyOptions extends CallOptions {
  /** Sticky canary routing: one key for every row, or one per row (unset: each row is routed at random). */
  routingKey?: string | readonly string[];
}

export interface ClientOptions extends ConnectionOptions {
  /** Default deadline of each call in milliseconds (default 60 s). Streams: see their methods. */
  timeoutMs?: number;
}

/** Options of a create: its idempotency key, sent again with every retry. */
export interface CreateOptions extends CallOptions {
  /** AIP-155 key; a fresh one per call by default. A repeat returns the first result. */
  requestId?: string;
}

export interface TrainJobOptions extends TaskOptions, CreateOptions {
  /** Examples sent inline. Or `datasetUri`. */
  examples?: Iterable<ExampleInput>;
  /** `datasets/{id}` from uploadDataset, a file under the server's --data-root, or a hub dataset id. */
  datasetUri?: string;
  textColumn?: string;
  labelColumn?: string;
  /** Unset fields take the server's defaults; e.g. `{ epochs: 3, seed: 1n }`. */
  hyperparameters?: MessageInitShape<typeof HyperparametersSchema>;
  /** Held-out fraction; unset: the server's default, 0: no held-out split. */
  evalFraction?: number;
  /** Aliases to point at the result besides `latest`. */
  aliases?: readonly string[];
}

/** Filters of listAuditEvents; they combine (all must hold). */
export interface AuditFilter extends CallOptions {
  /** Only events of this principal (a token's name, `admin` or `local`). */
  principal?: string;
  /** Only calls of this RPC, e.g. `"DeletePrompt"`. */
  method?: string;
  /** Only events on this resource or inside it: `prompts/p` also finds `prompts/p/versions/2`. */
  resource?: string;
  /** Only events at or after this time. */
  after?: Date;
  /** Only events before this time. */
  before?: Date;
  pageSize?: number;
}

export interface GenerateOptions extends CallOptions {
  /** 1..512 (unset: the server's default, 32). */
  maxNewTokens?: number;
  /** 0..100; 0 = greedy. */
  temperature?: number;
  /** The request's own sampling seed. */
  seed?: number | bigint;
  /** Nucleus sampling, in (0, 1] (unset: 1, off). */
  topP?: number;
  /** Sample among the k likeliest tokens, 0..1000 (unset or 0: off). */
  topK?: number;
  /** End the output before the first of these (at most 4, each 1..64 characters). */
  stop?: string | readonly string[];
  /** Generate with this backbone alone, no prompt (pass "" as the prompt; needs the trainer role). */
  backbone?: string;
  /** A chat of `{ role, content }` to continue instead of `text` (pass "" as the text): rendered with the
   * backbone's chat template. */
  messages?: readonly { role: string; content: string }[];
}

/** How a generation ended: `generate`'s return value and part of `generateFull`'s result. */
export interface GenerationEnd {
  /** "length", "stop", "eos" or "cancelled" ("" when the server sent none). */
  finishReason: string;
  /** Tokens the model read before generating (a prompt's own virtual tokens excluded). */
  promptTokens: number;
  /** Tokens generated. */
  generatedTokens: number;
}

export interface ListFilter extends CallOptions {
  tag?: string;
  backbone?: string;
  /** Prompts whose task has this label (listPrompts only). */
  label?: string;
  createdAfter?: Date;
  /** Items per page fetched (the server caps it). */
  pageSize?: number;
}
