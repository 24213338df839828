/** What the suites share: the running server, an admin client on it, and the training data they use. */
import assert from "node:assert/strict";
import type { Client, ExampleInput, TrainJob } from "../../src/index.js";
import { PromptBankError, PromptKind, TrainJob_State, stateName } from "../../src/index.js";
import type { Server } from "../harness.js";

/** Filled in by live.test.ts's `before`, read by the suites' tests. */
export interface Live {
  server: Server;
  adminToken: string;
  admin: Client;
}

export const POS = ["good great lovely", "wonderful happy joy", "nice excellent fine", "love it so much"];
export const NEG = ["bad awful terrible", "sad horrible hate", "poor dreadful worse", "i hate this thing"];
/** 64 examples: tuples. */
export const SENTIMENT: ExampleInput[] = [
  ...Array.from({ length: 8 }, () => POS.map((t) => [t, "positive"] as const)).flat(),
  ...Array.from({ length: 8 }, () => NEG.map((t) => [t, "negative"] as const)).flat(),
];
export const SPORTS = ["the match ended two nil", "the striker scored twice"];
export const POLITICS = ["parliament passed the bill", "the senator gave a speech"];
/** 32 examples: objects. */
export const TOPIC: ExampleInput[] = Array.from({ length: 8 }, () => [
  { text: SPORTS[0]!, label: "sports" },
  { text: POLITICS[0]!, label: "politics" },
  { text: SPORTS[1]!, label: "sports" },
  { text: POLITICS[1]!, label: "politics" },
]).flat();
/** Small and quick on the tiny models: an input prompt (a job that names no kind trains a deep one). */
export const HP = { numVirtualTokens: 4, epochs: 2, batchSize: 8, learningRate: 0.05, promptKind: PromptKind.INPUT };
/** A job that would run for a long time: tests cancel it. */
export const LONG_HP = { numVirtualTokens: 2, epochs: 1000, batchSize: 4, patience: 10000, promptKind: PromptKind.INPUT };

/** Trains a prompt to the end and returns the finished job. */
export async function train(client: Client, prompt: string, backbone: string, examples: ExampleInput[], extra = {}): Promise<TrainJob> {
  const job = await client.createTrainJob(prompt, backbone, { examples, hyperparameters: HP, ...extra });
  assert.equal(job.state, TrainJob_State.QUEUED);
  const done = await client.waitJob(job.name, { timeoutMs: 300_000 });
  assert.equal(stateName(done.state), "SUCCEEDED", done.error);
  return done;
}

/** The PromptBankError a promise rejects with (fails the test when it resolves or throws anything else). */
export async function failure(promise: Promise<unknown>): Promise<PromptBankError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PromptBankError, `expected a PromptBankError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded; expected it to fail");
}

/** Asserts the error's code, that its number agrees with the name, and that its message leads with the code. */
export function assertCode(err: PromptBankError, code: string, grpcCode: number): void {
  assert.equal(err.code, code, err.message);
  assert.equal(err.grpcCode, grpcCode);
  assert.ok(err.message.startsWith(`${code}: `) || err.message === code, err.message);
  assert.equal(err.name, "PromptBankError");
}

/** Sum of a prediction's scores (a softmax over the task's labels: 1). */
export function total(scores: Record<string, number>): number {
  return Object.values(scores).reduce((a, b) => a + b, 0);
}
