/**
 * Retries (src/retry.ts) against the real coordinator process, stopped and started again on the same port and
 * SQLite file between calls. It runs last (it restarts the shared server) and in order: the first tests stop
 * the server and check, while nothing listens, what is retried and what is not, how often and for how long;
 * the last makes calls while it is down, starts it again, and sees them succeed. Attempts are counted as
 * connections through a TCP relay (each try after a refused or lost connection opens a new one).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Client, collect, CREATES, READS, RETRY_ATTEMPTS, type PromptBankError } from "../../src/index.js";
import { BACKOFF_MULTIPLIER, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS } from "../../src/retry.js";
import { python, pythonEnv, REPO } from "../harness.js";
import { relay, type Relay } from "../proxy.js";
import { NEG, POS, SENTIMENT, assertCode, failure, train, type Live } from "./live.js";

const LABELS = { labels: ["negative", "positive"] };

/** Milliseconds `fn` took, and what it threw. */
async function timed(fn: () => Promise<unknown>): Promise<{ ms: number; err: PromptBankError }> {
  const started = Date.now();
  const err = await failure(fn());
  return { ms: Date.now() - started, err };
}

export function restartSuite(live: Live): void {
  describe("retries: the policy", () => {
    it("follows the Python SDK's table and constants (promptbank/retry.py)", () => {
      const code = "import json, promptbank.retry as r; print(json.dumps([r.READS, r.CREATES, r.RETRY_ATTEMPTS, r.INITIAL_BACKOFF_S, r.MAX_BACKOFF_S, r.BACKOFF_MULTIPLIER]))";
      const r = spawnSync(python(), ["-c", code], { cwd: REPO, env: pythonEnv(), encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      const [reads, creates, attempts, initial, max, mult] = JSON.parse(r.stdout);
      assert.deepEqual({ ...READS }, reads);
      assert.deepEqual({ ...CREATES }, creates);
      assert.deepEqual([RETRY_ATTEMPTS, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS, BACKOFF_MULTIPLIER], [attempts, initial * 1000, max * 1000, mult]);
    });

    it("refuses a `retries` that is not a whole number >= 0 before sending anything", async () => {
      const pb = new Client({ address: "127.0.0.1:1" });
      try {
        for (const retries of [-1, 1.5, Number.NaN]) {
          await assert.rejects(pb.getPrompt("x", { retries }), { name: "RangeError", message: `retries must be a whole number >= 0, got ${retries}` });
        }
      } finally {
        pb.close();
      }
    });
  });

  describe("a coordinator stopped and started again between calls", () => {
    let pb: Client; // made before the stop; its connection dies with the server
    let r: Relay; // to the server's port: counts attempts
    let viaRelay: Client;
    let firstCreate: { name: string; seconds: bigint };

    before(async () => {
      pb = new Client({ address: live.server.address, token: live.adminToken, timeoutMs: 300_000, waitForReady: true });
      r = await relay({ host: "127.0.0.1", port: live.server.port });
      viaRelay = new Client({ address: r.address, token: live.adminToken, timeoutMs: 60_000 });
      await collect(viaRelay.listBackbones()); // its connection, like pb's, dies with the server
      await train(pb, "rs-cls", "tiny-enc", SENTIMENT);
      const made = await pb.createPrompt("rs-before", { ...LABELS, requestId: "rs-before-1" });
      firstCreate = { name: made.name, seconds: made.createTime!.seconds };
    });

    after(async () => {
      pb?.close();
      viaRelay?.close();
      await r?.close();
    });

    describe("while it is down", () => {
      before(async () => {
        await live.server.halt(); // SIGTERM: the coordinator closes its port and exits
      });

      it("tries a read, a stream before its first piece and a create 5 times at most; a delete, a cancel, a token creation once", async () => {
        // a read: RETRY_ATTEMPTS tries, waits of at most 0.2 + 0.4 + 0.8 + 1.6 s apart, then UNAVAILABLE
        let before = r.connections();
        const read = await timed(() => viaRelay.getPrompt("rs-cls"));
        assertCode(read.err, "UNAVAILABLE", 14);
        assert.match(read.err.message, /\(gave up after 5 attempts\)$/);
        assert.equal(r.connections() - before, RETRY_ATTEMPTS);
        assert.ok(read.ms < 3_000 + 1_000, `the retries took ${read.ms} ms`);

        before = r.connections();
        assertCode(await failure(collect(viaRelay.generate("rs-cls", "x"))), "UNAVAILABLE", 14);
        assert.equal(r.connections() - before, RETRY_ATTEMPTS);
        before = r.connections();
        assertCode(await failure(viaRelay.createPrompt("rs-x", { ...LABELS, retries: 1 })), "UNAVAILABLE", 14);
        assert.equal(r.connections() - before, 2, "a call's own `retries` caps them");

        for (const call of [() => viaRelay.deletePrompt("rs-before"), () => viaRelay.cancelJob("x"), () => viaRelay.createToken("t", "reader")]) {
          before = r.connections();
          assertCode(await failure(call()), "UNAVAILABLE", 14);
          assert.equal(r.connections() - before, 1);
        }
      });

      it("stops retrying within a call's deadline, naming the cause and why it stopped", async () => {
        const before = r.connections();
        const short = await timed(() => viaRelay.listBackbones({ timeoutMs: 700 }).next());
        assert.ok(short.ms < 700 + 300, `ended after ${short.ms} ms`);
        assert.ok(r.connections() - before >= 2, "retried within the deadline");
        assertCode(short.err, "UNAVAILABLE", 14);
        assert.match(short.err.message, /connection failed: .*\((gave up after \d attempts|attempt \d; the call's deadline of 700 ms leaves no time for another)\)$/);
      });

      it("waitForReady: waits for the server up to the deadline, then DEADLINE_EXCEEDED naming the cause; an abort ends the wait", async () => {
        const waited = await timed(() => pb.classify([["rs-cls", POS[0]!]], { timeoutMs: 1_500 }));
        assertCode(waited.err, "DEADLINE_EXCEEDED", 4);
        assert.match(waited.err.message, /deadline of 1500 ms passed waiting for the server \(\d+ attempts\); last: UNAVAILABLE: .*ECONNREFUSED/);
        assert.ok(waited.ms >= 1_300 && waited.ms < 2_500, `ended after ${waited.ms} ms`);

        const ac = new AbortController();
        setTimeout(() => ac.abort(), 400);
        const aborted = await timed(() => pb.getPrompt("rs-cls", { signal: ac.signal }));
        assertCode(aborted.err, "CANCELLED", 1);
        assert.ok(aborted.ms >= 350 && aborted.ms < 1_500, `ended after ${aborted.ms} ms`);
      });
    });

    it("serves a read, a Classify and a create with a request id made while it was down, once it is back", async () => {
      const calls = Promise.all([
        pb.getPrompt("rs-cls"),
        pb.classify([["rs-cls", POS[0]!], ["rs-cls", NEG[0]!]]),
        pb.createPrompt("rs-during", { ...LABELS, requestId: "rs-during-1" }),
        pb.createPrompt("rs-before", { ...LABELS, requestId: "rs-before-1" }), // a repeat of a create made before the stop
      ]);
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // the calls are waiting
      await live.server.resume(); // the same port and bank.db
      const [prompt, predictions, during, again] = await calls;
      assert.equal(prompt.name, "prompts/rs-cls");
      assert.deepEqual(predictions.map((p) => p.version), ["prompts/rs-cls/versions/1", "prompts/rs-cls/versions/1"]);
      assert.equal(during.name, "prompts/rs-during");
      assert.deepEqual([again.name, again.createTime!.seconds], [firstCreate.name, firstCreate.seconds], "the first result, not a second prompt");

      // the create is not duplicated: its repeat returns the first result, and one prompt of that name exists
      const repeat = await pb.createPrompt("rs-during", { ...LABELS, requestId: "rs-during-1" });
      assert.deepEqual(repeat.createTime, during.createTime);
      const names = (await collect(pb.listPrompts())).map((p) => p.name).filter((n) => n.startsWith("prompts/rs-")).sort();
      assert.deepEqual(names, ["prompts/rs-before", "prompts/rs-cls", "prompts/rs-during"]);

      // a client without waitForReady, whose connection died with the old process, is served too
      const plain = await viaRelay.getPrompt("rs-cls");
      assert.equal(plain.name, "prompts/rs-cls");
    });
  });
}
