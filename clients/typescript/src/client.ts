/**
 * The TypeScript SDK: the Python SDK's Client in TypeScript idiom. Every call carries a deadline (the client's
 * default or the call's own `timeoutMs`) and takes an AbortSignal; streams and lists are async iterators;
 * calls are retried by the Python SDK's policy (retry.ts), creates with their request id; every failure is a
 * PromptBankError.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  TrainJob_State,
  type TrainJob,
  type TrainJobEvent,
  type UploadDatasetRequestSchema,
  type UploadedDataset,
} from "./gen/promptbank/v1/jobs_pb.js";
import { paginate, streamed, unary, type Attempt, type CallOptions } from "./calls.js";
import { LiveClient, routingKeys } from "./live.js";
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
} from "./inputs.js";
import { FinishReason } from "./gen/promptbank/v1/inference_pb.js";
import type { ClassifyOptions, GenerateOptions, GenerationEnd, TrainJobOptions } from "./options.js";
import { resumableWatch, type WatchOptions } from "./watch.js";

const DAY_MS = 24 * 3600 * 1000;

/** FinishReason.EOS -> "eos"; unspecified -> "". */
function finishName(reason: FinishReason): string {
  return reason === FinishReason.UNSPECIFIED ? "" : (FinishReason[reason] ?? "").toLowerCase();
}
const UPLOAD_TIMEOUT_MS = 600_000;

/**
 * `new Client({ address: "localhost:50051", token, tlsCa })`; every option is optional (see ClientOptions).
 * Inference and training are here; the catalog and tokens in catalog.ts; outcomes, rollouts and promotion in
 * live.ts; the connection in base.ts.
 */
export class Client extends LiveClient {
  // ------------------------------------------------------------ inference

  /**
   * Classifies rows `[promptRef, text]`; rows may name different tasks. Results are in row order. `routingKey`
   * keeps a caller on one side of an alias's canary: one string for every row, or an array with one key per row
   * (unset: each row is routed at random).
   */
  async classify(rows: Iterable<ClassifyInput>, options?: ClassifyOptions): Promise<Prediction[]> {
    const rs = Array.from(rows, row);
    const keys = routingKeys(options?.routingKey, rs.length, "classify");
    const req = { rows: rs.map((r, i) => ({ ...r, routingKey: keys[i]! })) };
    const resp = await unary((o) => this.rpc.inference.classify(req, o), this.at(options));
    return resp.results.map((r, i) => prediction(rs[i]!.prompt, rs[i]!.text, r));
  }

  /** Rows `[[ref, more refs of the same task...], text]`: scores averaged over the refs in one forward.
   * `routingKey` as in classify. */
  async classifyEnsemble(rows: Iterable<EnsembleInput>, options?: ClassifyOptions): Promise<Prediction[]> {
    const rs = Array.from(rows, ensembleRow);
    const keys = routingKeys(options?.routingKey, rs.length, "classifyEnsemble");
    const req = { rows: rs.map((r, i) => ({ prompt: r.prompts[0], ensemble: r.prompts.slice(1), text: r.text, routingKey: keys[i]! })) };
    const resp = await unary((o) => this.rpc.inference.classify(req, o), this.at(options));
    return resp.results.map((r, i) => prediction(rs[i]!.prompts.join("+"), rs[i]!.text, r));
  }

  /** Generated text, piece by piece, as the server streams it (causal-LM and seq2seq backbones), under `prompt`
   * or, with `options.backbone`, under none. The generator's return value says how it ended. */
  async *generate(prompt: string, text: string, options: GenerateOptions = {}): AsyncGenerator<string, GenerationEnd, undefined> {
    const stop = options.stop === undefined ? [] : typeof options.stop === "string" ? [options.stop] : [...options.stop];
    const req = {
      prompt,
      text,
      backbone: options.backbone ?? "",
      messages: (options.messages ?? []).map((m) => ({ role: m.role, content: m.content })),
      maxNewTokens: options.maxNewTokens,
      temperature: options.temperature ?? 0,
      seed: BigInt(options.seed ?? 0),
      topP: options.topP,
      topK: options.topK,
      stop,
    };
    const end: GenerationEnd = { finishReason: "", promptTokens: 0, generatedTokens: 0 };
    for await (const piece of streamed((o) => this.rpc.inference.generate(req, o), this.at(options))) {
      if (piece.done) {
        end.finishReason = finishName(piece.finishReason);
        end.promptTokens = piece.promptTokens;
        end.generatedTokens = piece.generatedTokens;
      }
      if (piece.text) {
        yield piece.text;
      }
    }
    return end;
  }

  /** `generate` read to its end: the whole text, with how it ended. */
  async generateFull(prompt: string, text: string, options: GenerateOptions = {}): Promise<GenerationEnd & { text: string }> {
    const pieces: string[] = [];
    const stream = this.generate(prompt, text, options);
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        return { text: pieces.join(""), ...next.value };
      }
      pieces.push(next.value);
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

  /** Submits a job; it is committed QUEUED before this returns. Retried with the same request id (retry.ts). */
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
    return unary((o) => this.rpc.jobs.createTrainJob(req, o), this.at(options));
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
}
