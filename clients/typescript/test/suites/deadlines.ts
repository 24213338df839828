/** Deadlines (the client's default and a call's own), AbortSignal, and close(): each ends the call with its own code. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client, TrainJobEvent_Kind, collect, type TrainJob } from "../../src/index.js";
import { LONG_HP, POS, SENTIMENT, assertCode, failure, train, type Live } from "./live.js";

export function deadlineSuite(live: Live): void {
  describe("deadlines and cancellation", () => {
    let running: TrainJob;

    before(async () => {
      await train(live.admin, "ts-dl", "tiny-enc", SENTIMENT);
      // a job that runs until cancelled: its watch stream stays open for as long as a test wants
      running = await live.admin.createTrainJob("ts-dl-long", "tiny-lm", {
        examples: SENTIMENT,
        hyperparameters: LONG_HP,
        labels: ["negative", "positive"],
        labelWords: ["bad", "good"],
      });
    });

    after(async () => {
      await live.admin.cancelJob(running.name);
    });

    it("ends a call that outlives its own deadline as DEADLINE_EXCEEDED", async () => {
      const started = Date.now();
      const err = await failure(collect(live.admin.watchJob(running.name, { timeoutMs: 800 })));
      assertCode(err, "DEADLINE_EXCEEDED", 4);
      const took = Date.now() - started;
      assert.ok(took >= 700 && took < 10_000, `the watch ended after ${took} ms`);
      assertCode(await failure(live.admin.classify([["ts-dl", POS[0]!]], { timeoutMs: 1 })), "DEADLINE_EXCEEDED", 4);
    });

    it("applies the client's default deadline to every call", async () => {
      const pb = new Client({ address: live.server.address, token: live.adminToken, timeoutMs: 1 });
      try {
        assertCode(await failure(pb.classify([["ts-dl", POS[0]!]])), "DEADLINE_EXCEEDED", 4);
        const ok = await pb.classify([["ts-dl", POS[0]!]], { timeoutMs: 60_000 }); // a call's own deadline wins
        assert.equal(ok[0]!.version, "prompts/ts-dl/versions/1");
      } finally {
        pb.close();
      }
    });

    it("cancels a call when its AbortSignal fires, midway or before it starts", async () => {
      const ac = new AbortController();
      const seen: bigint[] = [];
      const err = await failure((async () => {
        for await (const ev of live.admin.watchJob(running.name, { signal: ac.signal })) {
          seen.push(ev.sequence);
          if (ev.kind === TrainJobEvent_Kind.PROGRESS) ac.abort();
        }
      })());
      assertCode(err, "CANCELLED", 1);
      assert.ok(seen.length >= 2);
      const aborted = AbortSignal.abort();
      assertCode(await failure(live.admin.classify([["ts-dl", POS[0]!]], { signal: aborted })), "CANCELLED", 1);
    });

    it("close() cancels the calls in flight and does not reconnect", async () => {
      const pb = new Client({ address: live.server.address, token: live.adminToken });
      const watching = failure(collect(pb.watchJob(running.name)));
      await new Promise((r) => setTimeout(r, 500));
      pb.close();
      assertCode(await watching, "CANCELLED", 1);
    });
  });
}
