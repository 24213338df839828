/** promptbank's TypeScript SDK: the Client, its error type, PEFT adapter files, live evaluation's helpers, and the
 * generated API types. */
export { Client } from "./client.js";
export type {
  AuditFilter,
  ClassifyOptions,
  ClientOptions,
  CreateOptions,
  GenerateOptions,
  GenerationEnd,
  ListFilter,
  TrainJobOptions,
} from "./options.js";
export { collect, type CallOptions } from "./calls.js";
export { PromptBankError, STATUS_NAMES, type StatusName } from "./errors.js";
export {
  stateName,
  TERMINAL_STATES,
  type ClassifyInput,
  type EnsembleInput,
  type ExampleInput,
  type Prediction,
  type TaskOptions,
} from "./inputs.js";
export { PEFT_CONFIG, PEFT_WEIGHTS, readAdapter, writeAdapter, type AdapterFiles } from "./peft.js";
export { DEFAULT_ADDRESS, type ConnectionOptions, type Pem } from "./transport.js";
export type { WatchOptions } from "./watch.js";
export { CREATES, READS, RETRY_ATTEMPTS, retryableCodes } from "./retry.js";
export * from "./gen/promptbank/v1/auth_pb.js";
export * from "./gen/promptbank/v1/catalog_pb.js";
export * from "./gen/promptbank/v1/inference_pb.js";
export * from "./gen/promptbank/v1/jobs_pb.js";
export * from "./gen/promptbank/v1/live_pb.js";
export { aliasRef, OUTCOMES_PER_CALL, versionRef, type AliasRef, type OutcomeSummary, type OutcomesInput } from "./live.js";
