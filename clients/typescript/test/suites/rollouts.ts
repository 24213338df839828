/** Live evaluation: result ids and canary flags on predictions, outcomes in chunks, a shadow's paired evidence, a
 * canary, the policy, comparison and promotion (refused on thin evidence, then forced), as the Python SDK does. */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { collect } from "../../src/index.js";
import { NEG, POS, SENTIMENT, assertCode, failure, train, type Live } from "./live.js";

const TEXTS = [...POS, ...NEG];
const TRUTH = (t: string) => (POS.includes(t) ? "positive" : "negative");

export function rolloutSuite(live: Live): void {
  describe("live evaluation", () => {
    const v = (n: number) => `prompts/ts-live/versions/${n}`;
    before(async () => {
      const pb = live.admin;
      await train(pb, "ts-live", "tiny-enc", SENTIMENT, { aliases: ["prod"] });
      const files = await pb.exportVersion("ts-live/versions/1");
      for (let i = 0; i < 2; i++) {  // versions 2 and 3: copies of 1, so they answer as it does
        await pb.importVersion("ts-live", "tiny-enc", files, { labels: ["negative", "positive"] });
      }
    });

    it("gives each result an id and records outcomes by it, in chunks and idempotently", async () => {
      const pb = live.admin;
      const preds = await pb.classify(TEXTS.map((t) => ["ts-live@prod", t] as const), { routingKey: "user-1" });
      assert.equal(new Set(preds.map((p) => p.id)).size, TEXTS.length);
      assert.ok(preds.every((p) => /^[0-9a-f]{32}$/.test(p.id) && !p.canary && p.version === v(1)));
      const done = await pb.recordOutcomes(preds.map((p) => [p.id, TRUTH(p.text)] as const), { chunk: 3 });
      assert.deepEqual(done, { recorded: TEXTS.length, already: 0, unknown: [], conflicting: [], promoted: [] });
      const again = await pb.recordOutcomes({ [preds[0]!.id]: TRUTH(preds[0]!.text), ["f".repeat(32)]: "positive" });
      assert.deepEqual([again.recorded, again.already, again.unknown], [0, 1, ["f".repeat(32)]]);
      const stats = (await pb.getVersion("ts-live/versions/1")).live;
      assert.equal(stats?.allTime?.labelled, BigInt(TEXTS.length));
      assert.equal(stats?.allTime?.correct, BigInt(preds.filter((p) => p.label === TRUTH(p.text)).length));
    });

    it("shadows, compares on the same rows, refuses a promotion on thin evidence and forces it", async () => {
      const pb = live.admin;
      const r = await pb.setShadow("ts-live@prod", 2);
      assert.deepEqual([r.version, r.shadowVersion, r.shadowFraction], [v(1), v(2), 1]);
      assert.equal((await pb.setShadow("prompts/ts-live/aliases/prod", "ts-live/versions/2", { fraction: 0.5 })).shadowFraction, 0.5);
      await pb.setShadow("ts-live@prod", v(2), { fraction: 1 });
      const preds = await pb.classify(TEXTS.map((t) => ({ prompt: "ts-live@prod", text: t })));
      assert.ok(preds.every((p) => p.version === v(1) && !p.canary));
      await pb.recordOutcomes(new Map(preds.map((p) => [p.id, TRUTH(p.text)])));
      const ev = (await pb.rollout("ts-live@prod")).shadowEvidence;
      assert.equal(ev?.method, "paired");
      assert.equal(ev?.rows, BigInt(TEXTS.length));
      assert.equal(ev?.primaryOnly, 0n); // copies: they agree on every row
      assert.equal(ev?.candidateOnly, 0n);
      const cmp = await pb.compare("ts-live@prod", 2, { margin: 0 });
      assert.deepEqual([cmp.method, cmp.rows, cmp.clears, cmp.margin], ["paired", BigInt(TEXTS.length), false, 0]);
      assert.ok(cmp.low < 0 && cmp.summary.includes("does not clear"));

      const refused = await failure(pb.promote("ts-live@prod", 2, { margin: 0 }));
      assertCode(refused, "FAILED_PRECONDITION", 9);
      assert.ok(refused.serverMessage.includes(cmp.low.toFixed(4)), refused.serverMessage);
      assert.equal((await pb.rollout("ts-live@prod")).version, v(1));
      const moved = await pb.promote("ts-live@prod", 2, { margin: 0, force: true });
      assert.deepEqual([moved.rollout?.version, moved.forced, moved.evidence?.method], [v(2), true, "paired"]);
      const event = (await collect(pb.aliasHistory("ts-live")))[0]!;
      assert.deepEqual([event.alias, event.action, event.toVersion], ["prod", "promote", 2n]);
    });

    it("answers with a canary, sticky per routing key, and sets the policy", async () => {
      const pb = live.admin;
      const r = await pb.setCanary("ts-live@prod", 3, 1);
      assert.deepEqual([r.canaryVersion, r.canaryFraction], [v(3), 1]);
      const preds = await pb.classify(TEXTS.map((t) => ["ts-live@prod", t] as const), { routingKey: TEXTS.map((_, i) => `k${i}`) });
      assert.ok(preds.every((p) => p.canary && p.version === v(3)));
      const cleared = await pb.clearCanary("ts-live@prod");
      assert.deepEqual([cleared.canaryVersion, cleared.canaryFraction], ["", 0]);
      assert.equal((await pb.clearShadow("ts-live@prod")).shadowVersion, "");
      const set = await pb.setPolicy("ts-live@prod", true, { margin: 0.3, minRows: 7 });
      assert.deepEqual([set.policy?.auto, set.policy?.margin, set.policy?.minRows], [true, 0.3, 7n]);
      const kept = await pb.setPolicy("ts-live@prod", false);
      assert.deepEqual([kept.policy?.auto, kept.policy?.margin, kept.policy?.minRows], [false, 0.3, 7n]);
      const err = await failure(pb.rollout("ts-no-such@prod"));
      assertCode(err, "NOT_FOUND", 5);
    });
  });
}
