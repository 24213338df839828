// Trains a sentiment prompt on a handful of labelled rows, follows the job, then classifies with the new prompt.
//
//   npm ci && node examples/train_and_classify.mjs
//
// The server is PROMPTBANK_SERVER (default localhost:50051) with PROMPTBANK_TOKEN when it needs one, as for the
// CLI; PROMPTBANK_BACKBONE picks the backbone (default minilm, what `promptbank serve` serves).
import { Client, TrainJobEvent_Kind, stateName } from "@promptbank/client";

const backbone = process.env.PROMPTBANK_BACKBONE ?? "minilm";
/** @type {import("@promptbank/client").ExampleInput[]} */
const examples = [
  ["what a lovely day", "positive"],
  ["i love this so much", "positive"],
  ["great work, well done", "positive"],
  ["this made me happy", "positive"],
  ["a wonderful surprise", "positive"],
  ["best thing all week", "positive"],
  ["what an awful day", "negative"],
  ["i hate this so much", "negative"],
  ["terrible work, badly done", "negative"],
  ["this made me sad", "negative"],
  ["a horrible surprise", "negative"],
  ["worst thing all week", "negative"],
];

const pb = new Client({ timeoutMs: 60_000 });
try {
  const job = await pb.createTrainJob("sentiment-example", backbone, {
    examples,
    labels: ["negative", "positive"],
    hyperparameters: { epochs: 5 },
    evalFraction: 0,
    aliases: ["prod"],
  });
  console.log(`submitted ${job.name}`);
  for await (const event of pb.watchJob(job.name)) {
    if (event.kind === TrainJobEvent_Kind.STATE_CHANGED) {
      console.log(`${stateName(event.state)} ${event.message}`.trim());
    } else if (event.kind === TrainJobEvent_Kind.PROGRESS) {
      console.log(`step ${event.step}/${event.totalSteps} loss ${event.loss.toFixed(4)}`);
    }
  }
  const done = await pb.getJob(job.name);
  if (stateName(done.state) !== "SUCCEEDED") {
    throw new Error(`${job.name} ended ${stateName(done.state)}: ${done.error}`);
  }
  console.log(`trained ${done.resultVersion}`);
  const predictions = await pb.classify([
    ["sentiment-example@prod", "i really love it"],
    ["sentiment-example@prod", "this is really awful"],
  ]);
  for (const p of predictions) {
    console.log(`${p.label}\t${(p.scores[p.label] ?? 0).toFixed(3)}\t${p.text}`);
  }
} finally {
  pb.close();
}
