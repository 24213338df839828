/**
 * The TypeScript SDK: the Python SDK's Client in TypeScript idiom. Every call carries a deadline (the client's
 * default or the call's own `timeoutMs`) and takes an AbortSignal; streams and lists are async iterators;
 * creates carry a request id and are retried on UNAVAILABLE; every failure is a PromptBankError.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client as RpcClient } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { Role, Tokens, type CreateTokenResponse, type Token } from "./gen/promptbank/v1/auth_pb.js";
import {
  PromptCatalog,
  type AliasEvent,
  type Alias,
  type Backbone,
  type ExportPromptVersionResponse,
  type Prompt,
  type PromptVersion,
} from "./gen/promptbank/v1/catalog_pb.js";
import { Inference } from "./gen/promptbank/v1/inference_pb.js";
import {
  TrainJobs,
  TrainJob_State,
  type HyperparametersSchema,
  type TrainJob,
  type TrainJobEvent,
  type UploadDatasetRequestSchema,
  type UploadedDataset,
} from "./gen/promptbank/v1/jobs_pb.js";
import { attempt, backoffMs, pause, paginate, retried, streamed, unary, type Attempt, type CallOptions } from "./calls.js";
import { PromptBankError } from "./errors.js";
import type { AdapterFiles } from "./peft.js";
import {
  ensembleRow,
  example,
  prediction,
  resourceName,
  row,
  taskSpec,
  type ClassifyInput,
  type EnsembleInput,
  type ExampleInput,
  type Prediction,
  type TaskOptions,
} from "./inputs.js";
import { connect, type ConnectionOptions } from "./transport.js";
import { resumableWatch, type WatchOptions } from "./watch.js";

export interface ClientOptions extends ConnectionOptions {
  /** Default deadline of each call in milliseconds (default 60 s). Streams: see their methods. */
  timeoutMs?: number;
}

/** Options of a create: its idempotency key and how often UNAVAILABLE is retried with it. */
export interface CreateOptions extends CallOptions {
  /** AIP-155 key; a fresh one per call by default. A repeat returns the first result. */
  requestId?: string;
  /** Retries on UNAVAILABLE, each with the same request id (default 3). */
  retries?: number;
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

const DAY_MS = 24 * 3600 * 1000;
const UPLOAD_TIMEOUT_MS = 600_000;

export class Client {
  readonly address: string;
  readonly timeoutMs: number;
  /** The generated Connect clients, for calls this class does not wrap. */
  readonly rpc: {
    inference: RpcClient<typeof Inference>;
    jobs: RpcClient<typeof TrainJobs>;
    catalog: RpcClient<typeof PromptCatalog>;
    tokens: RpcClient<typeof Tokens>;
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
    };
  }

  /** Closes the connection; calls in flight fail with CANCELLED. */
  close(): void {
    this.lifetime.abort();
    this.sessions.abort();
  }

  /** The deadline and signal of one call. */
  private at(options?: CallOptions, timeoutMs = this.timeoutMs): Attempt {
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

  // ------------------------------------------------------------ inference

  /** Classifies rows `[promptRef, text]`; rows may name different tasks. Results are in row order. */
  async classify(rows: Iterable<ClassifyInput>, options?: CallOptions): Promise<Prediction[]> {
    const rs = Array.from(rows, row);
    const resp = await unary((o) => this.rpc.inference.classify({ rows: rs }, o), this.at(options));
    return resp.results.map((r, i) => prediction(rs[i]!.prompt, rs[i]!.text, r));
  }

  /** Rows `[[ref, more refs of the same task...], text]`: scores averaged over the refs in one forward. */
  async classifyEnsemble(rows: Iterable<EnsembleInput>, options?: CallOptions): Promise<Prediction[]> {
    const rs = Array.from(rows, ensembleRow);
    const req = { rows: rs.map((r) => ({ prompt: r.prompts[0], ensemble: r.prompts.slice(1), text: r.text })) };
    const resp = await unary((o) => this.rpc.inference.classify(req, o), this.at(options));
    return resp.results.map((r, i) => prediction(rs[i]!.prompts.join("+"), rs[i]!.text, r));
  }

  /** Generated text, piece by piece, as the server streams it (causal-LM and seq2seq backbones). */
  async *generate(prompt: string, text: string, options: GenerateOptions = {}): AsyncGenerator<string, void, undefined> {
    const req = {
      prompt,
      text,
      maxNewTokens: options.maxNewTokens,
      temperature: options.temperature ?? 0,
      seed: BigInt(options.seed ?? 0),
    };
    for await (const piece of streamed((o) => this.rpc.inference.generate(req, o), this.at(options))) {
      if (piece.text) {
        yield piece.text;
      }
    }
  }

  // ------------------------------------------------------------ training

  /** Streams examples to the server in chunks (client streaming); pass the result's name as `datasetUri`.
   * Deadline: `timeoutMs`, default 10 minutes. Not retried (the examples may be readable once). */
  async uploadDataset(
    examples: Iterable<ExampleInput> | AsyncIterable<ExampleInput>,
    options: CallOptions & { chunkRows?: number; requestId?: string } = {},
  ): Promise<UploadedDataset> {
    const chunkRows = options.chunkRows ?? 5000;
    const requestId = options.requestId ?? randomUUID();
    async function* chunks(): AsyncGenerator<MessageInitShape<typeof UploadDatasetRequestSchema>> {
      let batch: { text: string; label: string }[] = [];
      let first = true;
      for await (const ex of examples) {
        batch.push(example(ex));
        if (batch.length >= chunkRows) {
          yield { requestId: first ? requestId : "", examples: batch };
          batch = [];
          first = false;
        }
      }
      if (batch.length > 0 || first) {
        yield { requestId: first ? requestId : "", examples: batch };
      }
    }
    return unary((o) => this.rpc.jobs.uploadDataset(chunks(), o), this.at(options, UPLOAD_TIMEOUT_MS));
  }

  /** Submits a job; it is committed QUEUED before this returns. Retried with the same request id on UNAVAILABLE. */
  async createTrainJob(prompt: string, backbone: string, options: TrainJobOptions = {}): Promise<TrainJob> {
    const dataset = options.datasetUri
      ? { source: { case: "uri" as const, value: options.datasetUri } }
      : { source: { case: "inline" as const, value: { examples: Array.from(options.examples ?? [], example) } } };
    const req = {
      requestId: options.requestId ?? randomUUID(),
      job: {
        prompt: resourceName("prompts", prompt),
        backbone: resourceName("backbones", backbone),
        task: taskSpec(options),
        dataset: {
          ...dataset,
          textColumn: options.textColumn ?? "",
          labelColumn: options.labelColumn ?? "",
          evalFraction: options.evalFraction,
        },
        hyperparameters: options.hyperparameters ?? {},
        aliases: [...(options.aliases ?? [])],
      },
    };
    return retried((o) => this.rpc.jobs.createTrainJob(req, o), this.at(options), options.retries ?? 3);
  }

  async getJob(job: string, options?: CallOptions): Promise<TrainJob> {
    return unary((o) => this.rpc.jobs.getTrainJob({ name: resourceName("jobs", job) }, o), this.at(options));
  }

  /** Jobs, newest first, optionally of one state or prompt. */
  listJobs(filter: CallOptions & { state?: TrainJob_State; prompt?: string; pageSize?: number } = {}): AsyncGenerator<TrainJob> {
    const req = { state: filter.state ?? TrainJob_State.STATE_UNSPECIFIED, prompt: filter.prompt ? resourceName("prompts", filter.prompt) : "", pageSize: filter.pageSize ?? 0 };
    return paginate((pageToken, o) => this.rpc.jobs.listTrainJobs({ ...req, pageToken }, o), (p) => p.jobs, this.at(filter));
  }

  async cancelJob(job: string, options?: CallOptions): Promise<TrainJob> {
    return unary((o) => this.rpc.jobs.cancelTrainJob({ name: resourceName("jobs", job) }, o), this.at(options));
  }

  /** Every event of the job, each once and in order, until it ends; survives lost connections (see watch.ts).
   * Deadline: `timeoutMs` for the whole watch, default 24 hours. */
  watchJob(job: string, options: WatchOptions = {}): AsyncGenerator<TrainJobEvent, void, undefined> {
    const name = resourceName("jobs", job);
    const open = (afterSequence: bigint, o: Attempt) => this.rpc.jobs.watchTrainJob({ name, afterSequence }, o);
    return resumableWatch(open, options, this.at(options, DAY_MS));
  }

  /** Follows the job to its end and returns it as it ended. */
  async waitJob(job: string, options: WatchOptions = {}): Promise<TrainJob> {
    for await (const _ of this.watchJob(job, options)) {
      // drain: the stream ends when the job does
    }
    return this.getJob(job, { ...(options.signal ? { signal: options.signal } : {}) });
  }

  // ------------------------------------------------------------ catalog

  listBackbones(options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Backbone> {
    return paginate((pageToken, o) => this.rpc.catalog.listBackbones({ pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.backbones, this.at(options));
  }

  async getBackbone(name: string, options?: CallOptions): Promise<Backbone> {
    return unary((o) => this.rpc.catalog.getBackbone({ name: resourceName("backbones", name) }, o), this.at(options));
  }

  /** Loads a model on new replicas (admin; the server must allow the model). Default deadline 10 minutes. */
  async registerBackbone(name: string, model: string, options: CallOptions & { revision?: string; replicas?: number } = {}): Promise<Backbone> {
    const req = { backboneId: name, model, revision: options.revision ?? "", replicas: options.replicas };
    return unary((o) => this.rpc.catalog.registerBackbone(req, o), this.at(options, UPLOAD_TIMEOUT_MS));
  }

  /** Every prompt matching the filter. */
  listPrompts(filter: ListFilter = {}): AsyncGenerator<Prompt> {
    const req = {
      tag: filter.tag ?? "",
      backbone: filter.backbone ?? "",
      label: filter.label ?? "",
      createAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
      pageSize: filter.pageSize ?? 0,
    };
    return paginate((pageToken, o) => this.rpc.catalog.listPrompts({ ...req, pageToken }, o), (p) => p.prompts, this.at(filter));
  }

  async getPrompt(prompt: string, options?: CallOptions): Promise<Prompt> {
    return unary((o) => this.rpc.catalog.getPrompt({ name: resourceName("prompts", prompt) }, o), this.at(options));
  }

  async createPrompt(prompt: string, options: TaskOptions & CreateOptions & { tags?: readonly string[]; owner?: string } = {}): Promise<Prompt> {
    const req = {
      promptId: prompt,
      prompt: { task: taskSpec(options), tags: [...(options.tags ?? [])], owner: options.owner ?? "" },
      requestId: options.requestId ?? randomUUID(),
    };
    return retried((o) => this.rpc.catalog.createPrompt(req, o), this.at(options), options.retries ?? 3);
  }

  /** Changes only the fields given. */
  async updatePrompt(prompt: string, changes: CallOptions & { tags?: readonly string[]; owner?: string; description?: string }): Promise<Prompt> {
    const paths: string[] = [];
    if (changes.tags !== undefined) paths.push("tags");
    if (changes.owner !== undefined) paths.push("owner");
    if (changes.description !== undefined) paths.push("task.description");
    const req = {
      prompt: { name: resourceName("prompts", prompt), tags: [...(changes.tags ?? [])], owner: changes.owner ?? "", task: { description: changes.description ?? "" } },
      updateMask: { paths },
    };
    return unary((o) => this.rpc.catalog.updatePrompt(req, o), this.at(changes));
  }

  async deletePrompt(prompt: string, options: CallOptions & { force?: boolean } = {}): Promise<void> {
    await unary((o) => this.rpc.catalog.deletePrompt({ name: resourceName("prompts", prompt), force: options.force ?? false }, o), this.at(options));
  }

  /** A version by name or any reference (`task`, `task@alias`, `task/versions/N`). */
  async getVersion(ref: string, options: CallOptions & { includeTensor?: boolean } = {}): Promise<PromptVersion> {
    return unary((o) => this.rpc.catalog.getPromptVersion({ name: ref, includeTensor: options.includeTensor ?? false }, o), this.at(options));
  }

  /** Every version of a prompt matching the filter, newest first. */
  listVersions(prompt: string, filter: ListFilter = {}): AsyncGenerator<PromptVersion> {
    const req = {
      parent: resourceName("prompts", prompt),
      backbone: filter.backbone ? resourceName("backbones", filter.backbone) : "",
      tag: filter.tag ?? "",
      createAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
      pageSize: filter.pageSize ?? 0,
    };
    return paginate((pageToken, o) => this.rpc.catalog.listPromptVersions({ ...req, pageToken }, o), (p) => p.versions, this.at(filter));
  }

  /** Replaces a version's tags (the only mutable field of a version). */
  async tagVersion(ref: string, tags: readonly string[], options?: CallOptions): Promise<PromptVersion> {
    const req = { version: { name: ref, tags: [...tags] }, updateMask: { paths: ["tags"] } };
    return unary((o) => this.rpc.catalog.updatePromptVersion(req, o), this.at(options));
  }

  async deleteVersion(ref: string, options: CallOptions & { force?: boolean } = {}): Promise<void> {
    await unary((o) => this.rpc.catalog.deletePromptVersion({ name: ref, force: options.force ?? false }, o), this.at(options));
  }

  async setAlias(prompt: string, alias: string, version: number | bigint, options?: CallOptions): Promise<Alias> {
    const req = { parent: resourceName("prompts", prompt), alias, version: BigInt(version) };
    return unary((o) => this.rpc.catalog.setAlias(req, o), this.at(options));
  }

  async deleteAlias(prompt: string, alias: string, options?: CallOptions): Promise<void> {
    await unary((o) => this.rpc.catalog.deleteAlias({ name: `${resourceName("prompts", prompt)}/aliases/${alias}` }, o), this.at(options));
  }

  /** Every move of the prompt's aliases, newest first. */
  aliasHistory(prompt: string, options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<AliasEvent> {
    const parent = resourceName("prompts", prompt);
    return paginate((pageToken, o) => this.rpc.catalog.listAliasHistory({ parent, pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.events, this.at(options));
  }

  /** The version as a PEFT prompt-tuning adapter: `adapterConfig` and `adapterModel` bytes (see writeAdapter). */
  async exportVersion(ref: string, options?: CallOptions): Promise<ExportPromptVersionResponse> {
    return unary((o) => this.rpc.catalog.exportPromptVersion({ name: ref }, o), this.at(options));
  }

  /** Stores a PEFT adapter (see readAdapter) as a new version of `prompt`, creating the prompt with the task given. */
  async importVersion(prompt: string, backbone: string, files: AdapterFiles, options: TaskOptions & CreateOptions = {}): Promise<PromptVersion> {
    const req = {
      parent: resourceName("prompts", prompt),
      backbone: resourceName("backbones", backbone),
      adapterConfig: files.adapterConfig,
      adapterModel: files.adapterModel,
      task: taskSpec(options),
      requestId: options.requestId ?? randomUUID(),
    };
    return retried((o) => this.rpc.catalog.importPromptVersion(req, o), this.at(options), options.retries ?? 3);
  }

  // ------------------------------------------------------------ tokens (admin)

  /** A new token; its `secret` is in the response only, once. */
  async createToken(name: string, role: "reader" | "trainer" | "admin", options: CallOptions & { ttlSeconds?: number } = {}): Promise<CreateTokenResponse> {
    const roles = { reader: Role.READER, trainer: Role.TRAINER, admin: Role.ADMIN } as const;
    const req = { tokenId: name, role: roles[role], ttlSeconds: options.ttlSeconds === undefined ? undefined : BigInt(options.ttlSeconds) };
    return unary((o) => this.rpc.tokens.createToken(req, o), this.at(options));
  }

  listTokens(options: CallOptions & { pageSize?: number } = {}): AsyncGenerator<Token> {
    return paginate((pageToken, o) => this.rpc.tokens.listTokens({ pageSize: options.pageSize ?? 0, pageToken }, o), (p) => p.tokens, this.at(options));
  }

  async revokeToken(name: string, options?: CallOptions): Promise<Token> {
    return unary((o) => this.rpc.tokens.revokeToken({ name }, o), this.at(options));
  }
}

