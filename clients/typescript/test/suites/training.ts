/** Training: train -> watch -> classify a mixed batch, idempotent creates, uploads, and a watch that resumes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Client,
  TrainJobEvent_Kind,
  TrainJob_State,
  collect,
  stateName,
  type ExampleInput,
  type TrainJobEvent,
} from "../../src/index.js";
import { relay } from "../proxy.js";
import { HP, LONG_HP, NEG, POLITICS, POS, SENTIMENT, SPORTS, TOPIC, assertCode, failure, total, train, type Live } from "./live.js";

export function trainingSuite(live: Live): void {
  describe("training", () => {
    it("trains two prompts, watches every event in order, and classifies a batch that mixes them", async () => {
      const pb = live.admin;
      const sent = await pb.createTrainJob("ts-sent", "tiny-enc", {
        examples: SENTIMENT,
        labels: ["negative", "positive"],
        hyperparameters: HP,
        aliases: ["prod"],
      });
      assert.equal(sent.state, TrainJob_State.QUEUED);
      assert.match(sent.name, /^jobs\/.+/);
      const topic = await pb.createTrainJob("ts-topic", "backbones/tiny-enc", { examples: TOPIC, hyperparameters: HP });

      const events = await collect(pb.watchJob(sent.name, { timeoutMs: 300_000 }));
      assert.deepEqual(events.map((e) => e.sequence), events.map((_, i) => BigInt(i + 1)));
      const states = events.filter((e) => e.kind === TrainJobEvent_Kind.STATE_CHANGED).map((e) => stateName(e.state));
      assert.deepEqual(states, ["QUEUED", "RUNNING", "SUCCEEDED"]);
      const progress = events.filter((e) => e.kind === TrainJobEvent_Kind.PROGRESS);
      assert.ok(progress.length > 0 && progress.every((e) => e.loss > 0 && e.totalSteps === progress[0]!.totalSteps));
      assert.ok("eval_accuracy" in events.at(-1)!.metrics);

      const sentDone = await pb.getJob(sent.name);
      assert.equal(sentDone.resultVersion, "prompts/ts-sent/versions/1");
      const topicDone = await pb.waitJob(topic.name.replace("jobs/", ""));
      assert.equal(stateName(topicDone.state), "SUCCEEDED", topicDone.error);
      assert.equal(topicDone.resultVersion, "prompts/ts-topic/versions/1");

      const texts = [...POS, ...NEG];
      const rows = texts.flatMap((t, i) => [
        ["ts-sent@prod", t] as const,
        { prompt: "ts-topic", text: i % 2 ? SPORTS[i % 2]! : POLITICS[0]! },
      ]);
      const mixed = await pb.classify(rows);
      assert.equal(mixed.length, rows.length);
      for (const [i, p] of mixed.entries()) {
        const isSent = i % 2 === 0;
        assert.equal(p.version, isSent ? "prompts/ts-sent/versions/1" : "prompts/ts-topic/versions/1");
        assert.deepEqual(Object.keys(p.scores), isSent ? ["negative", "positive"] : ["politics", "sports"]);
        assert.ok(Math.abs(total(p.scores) - 1) < 1e-6);
        assert.equal(p.label, Object.entries(p.scores).sort((a, b) => b[1] - a[1])[0]![0]);
      }
      assert.deepEqual(mixed[0]!.prompt, "ts-sent@prod");
      assert.deepEqual(mixed[1]!.text, POLITICS[0]);
      // each row of the mixed batch scores as it does in a request of its own task alone
      const alone = await pb.classify(rows.filter((_, i) => i % 2 === 0));
      alone.forEach((p, i) => {
        for (const label of Object.keys(p.scores)) {
          assert.ok(Math.abs(p.scores[label]! - mixed[2 * i]!.scores[label]!) < 1e-5);
        }
      });
    });

    it("averages an ensemble of versions in one request", async () => {
      const pb = live.admin;
      await train(pb, "ts-sent", "tiny-enc", SENTIMENT, { hyperparameters: { ...HP, seed: 7n } });
      const [v1, v2] = ["ts-sent/versions/1", "ts-sent/versions/2"];
      const [ens] = await pb.classifyEnsemble([[[v1, v2], POS[0]!]]);
      const [a, b] = await pb.classify([[v1, POS[0]!], [v2, POS[0]!]]);
      assert.equal(ens!.prompt, `${v1}+${v2}`);
      assert.deepEqual(ens!.versions, ["prompts/ts-sent/versions/1", "prompts/ts-sent/versions/2"]);
      for (const label of ["negative", "positive"]) {
        assert.ok(Math.abs(ens!.scores[label]! - (a!.scores[label]! + b!.scores[label]!) / 2) < 1e-5);
      }
      assert.notDeepEqual(a!.scores, b!.scores); // two different prompts, so the average is a real one
    });

    it("returns the first job for a repeated requestId and refuses the id with another payload", async () => {
      const pb = live.admin;
      const requestId = `ts-idem-${Date.now()}`;
      const first = await pb.createTrainJob("ts-idem", "tiny-enc", { examples: SENTIMENT, hyperparameters: LONG_HP, requestId });
      try {
        const again = await pb.createTrainJob("ts-idem", "tiny-enc", { examples: SENTIMENT, hyperparameters: LONG_HP, requestId });
        assert.equal(again.name, first.name);
        const jobs = await collect(pb.listJobs({ prompt: "ts-idem" }));
        assert.deepEqual(jobs.map((j) => j.name), [first.name]);
        const other = { ...LONG_HP, seed: 3n }; // the same job but for its seed: another payload
        const err = await failure(pb.createTrainJob("ts-idem", "tiny-enc", { examples: SENTIMENT, hyperparameters: other, requestId }));
        assertCode(err, "ALREADY_EXISTS", 6);
      } finally {
        await pb.cancelJob(first.name);
      }
      const ended = await pb.waitJob(first.name, { timeoutMs: 120_000 });
      assert.equal(stateName(ended.state), "CANCELLED");
    });

    it("uploads a dataset as a client stream of chunks, then trains from it", async () => {
      const pb = live.admin;
      async function* rows(): AsyncGenerator<ExampleInput> {
        yield* SENTIMENT; // an async source: the upload pulls rows as it sends chunks of 10
      }
      const upload = await pb.uploadDataset(rows(), { chunkRows: 10 });
      assert.match(upload.name, /^datasets\/.+/);
      assert.equal(upload.rows, 64n);
      assert.deepEqual({ ...upload.labelCounts }, { negative: 32n, positive: 32n });
      const done = await train(pb, "ts-uploaded", "tiny-enc", [], { datasetUri: upload.name });
      assert.equal((await pb.getVersion(done.resultVersion)).lineage?.data, upload.name);
      assert.equal(done.resultVersion, "prompts/ts-uploaded/versions/1");
    });

    it("resumes a watch after the connection is cut, seeing every event once", async () => {
      const r = await relay({ host: "127.0.0.1", port: live.server.port });
      const pb = new Client({ address: r.address, token: live.adminToken });
      const job = await pb.createTrainJob("ts-resume", "tiny-enc", { examples: SENTIMENT, hyperparameters: LONG_HP });
      const seen: TrainJobEvent[] = [];
      let cutAt = 0;
      let cancelled = false;
      try {
        for await (const ev of pb.watchJob(job.name, { timeoutMs: 300_000 })) {
          seen.push(ev);
          if (cutAt === 0 && ev.kind === TrainJobEvent_Kind.PROGRESS) {
            cutAt = seen.length;
            r.cut(); // the job is running: the stream is open and more events are coming
          } else if (cutAt > 0 && !cancelled && ev.kind === TrainJobEvent_Kind.PROGRESS) {
            cancelled = true; // progress seen after the reconnection: end the job, and with it the stream
            await live.admin.cancelJob(job.name);
          }
        }
      } finally {
        pb.close();
        await r.close();
        await live.admin.cancelJob(job.name).catch(() => undefined);
      }
      assert.ok(cutAt > 0, "no progress event arrived before the job ended");
      assert.ok(r.connections() >= 2, `expected a reconnection, saw ${r.connections()} connection(s)`);
      assert.deepEqual(seen.map((e) => e.sequence), seen.map((_, i) => BigInt(i + 1)));
      assert.equal(stateName(seen.at(-1)!.state), "CANCELLED");
    });
  });
}
