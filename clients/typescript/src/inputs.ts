/**
 * What callers pass and get back in plain TypeScript shapes (tuples or objects, numbers, Dates), and their
 * conversion to and from the API's messages. Resource names accept the short form, as the CLI does.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ClassifyResult } from "./gen/promptbank/v1/inference_pb.js";
import type { TaskSpecSchema } from "./gen/promptbank/v1/catalog_pb.js";
import { TrainJob_State } from "./gen/promptbank/v1/jobs_pb.js";

/** A row to classify: `[promptRef, text]` or `{ prompt, text }`; rows of one call may name different tasks. */
export type ClassifyInput = readonly [prompt: string, text: string] | { readonly prompt: string; readonly text: string };

/** An ensemble row: references to versions of one task, scored in one forward and averaged. */
export type EnsembleInput =
  | readonly [prompts: readonly string[], text: string]
  | { readonly prompts: readonly string[]; readonly text: string };

/** A labelled example: `[text, label]` or `{ text, label }`. */
export type ExampleInput = readonly [text: string, label: string] | { readonly text: string; readonly label: string };

/** One classified row. */
export interface Prediction {
  /** The reference the row named (ensembles: the references joined by `+`). */
  prompt: string;
  text: string;
  /** The version that scored it, `prompts/{p}/versions/{n}`. */
  version: string;
  /** Every version averaged (ensembles; else just `version`). */
  versions: string[];
  /** The highest-scoring label. */
  label: string;
  /** Every label's probability, in the task's label order. */
  scores: Record<string, number>;
  /** The result's id: send the row's true label back with it (recordOutcomes); empty when the server keeps no outcomes. */
  id: string;
  /** True when an alias's canary answered (then `version` names the canary). */
  canary: boolean;
}

/** The task's description; empty fields take the server's defaults (label texts and words = the labels). */
export interface TaskOptions {
  labels?: readonly string[];
  labelTexts?: readonly string[];
  labelWords?: readonly string[];
  description?: string;
  /** Encoder backbones: "prompt" or "text" positions pooled (empty: the server's default). */
  pooling?: string;
}

export function taskSpec(t: TaskOptions): MessageInitShape<typeof TaskSpecSchema> {
  return {
    kind: "classification",
    labels: [...(t.labels ?? [])],
    labelTexts: [...(t.labelTexts ?? [])],
    labelWords: [...(t.labelWords ?? [])],
    description: t.description ?? "",
    pooling: t.pooling ?? "",
  };
}

export function row(input: ClassifyInput): { prompt: string; text: string } {
  return isTuple(input) ? { prompt: input[0], text: input[1] } : { prompt: input.prompt, text: input.text };
}

export function ensembleRow(input: EnsembleInput): { prompts: readonly string[]; text: string } {
  const r = isTuple(input) ? { prompts: input[0], text: input[1] } : input;
  if (r.prompts.length === 0) {
    throw new TypeError("an ensemble row needs at least one prompt reference");
  }
  return r;
}

export function example(input: ExampleInput): { text: string; label: string } {
  return isTuple(input) ? { text: input[0], label: input[1] } : { text: input.text, label: input.label };
}

function isTuple<T extends readonly unknown[]>(value: T | object): value is T {
  return Array.isArray(value);
}

export function prediction(prompt: string, text: string, r: ClassifyResult): Prediction {
  return {
    prompt,
    text,
    version: r.version,
    versions: r.versions.length > 0 ? [...r.versions] : [r.version],
    label: r.label,
    scores: Object.fromEntries(r.scores.map((s) => [s.label, s.score])),
    id: r.id,
    canary: r.canary,
  };
}

/** `x` or `{kind}/x` -> `{kind}/x`. */
export function resourceName(kind: "prompts" | "backbones" | "jobs" | "tokens", name: string): string {
  return name.startsWith(`${kind}/`) ? name : `${kind}/${name}`;
}

/** A job's state by name, e.g. `"SUCCEEDED"`. */
export function stateName(state: TrainJob_State): string {
  return TrainJob_State[state] ?? `STATE_${state}`;
}

/** States a job never leaves. */
export const TERMINAL_STATES: ReadonlySet<TrainJob_State> = new Set([
  TrainJob_State.SUCCEEDED,
  TrainJob_State.FAILED,
  TrainJob_State.CANCELLED,
]);
