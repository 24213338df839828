/** The options objects of the Client's constructor and methods (each method's last argument). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HyperparametersSchema } from "./gen/promptbank/v1/jobs_pb.js";
import type { CallOptions } from "./calls.js";
import type { ExampleInput, TaskOptions } from "./inputs.js";
import type { ConnectionOptions } from "./transport.js";

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

export interface GenerateOptions extends CallOptions {
  /** 1..512 (unset: the server's default, 32). */
  maxNewTokens?: number;
  /** 0 = greedy. */
  temperature?: number;
  seed?: number | bigint;
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
