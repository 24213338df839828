/** Inference beyond classification: streamed generation, checked against the Python SDK on the same server. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { before, describe, it } from "node:test";
import { collect } from "../../src/index.js";
import { python, pythonEnv } from "../harness.js";
import { SENTIMENT, assertCode, failure, train, type Live } from "./live.js";

const LM_TASK = { labels: ["negative", "positive"], labelWords: ["bad", "good"] };

/** What the Python SDK's generate() yields for the same request, joined. */
function pythonGenerate(live: Live, prompt: string, text: string, maxNewTokens: number): string {
  const code = [
    "import sys",
    "from promptbank import Client",
    "with Client(sys.argv[1], token=sys.argv[2]) as c:",
    "    sys.stdout.write(''.join(c.generate(sys.argv[3], sys.argv[4], max_new_tokens=int(sys.argv[5]))))",
  ].join("\n");
  const args = ["-c", code, live.server.address, live.adminToken, prompt, text, String(maxNewTokens)];
  const r = spawnSync(python(), args, { env: pythonEnv(), encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** What the Python SDK's generate_full() returns for the same request, as JSON. */
function pythonGenerateFull(live: Live, prompt: string, text: string, options: Record<string, unknown>): unknown {
  const code = [
    "import dataclasses, json, sys",
    "from promptbank import Client",
    "with Client(sys.argv[1], token=sys.argv[2]) as c:",
    "    r = c.generate_full(sys.argv[3], sys.argv[4], **json.loads(sys.argv[5]))",
    "    sys.stdout.write(json.dumps(dataclasses.asdict(r)))",
  ].join("\n");
  const args = ["-c", code, live.server.address, live.adminToken, prompt, text, JSON.stringify(options)];
  const r = spawnSync(python(), args, { env: pythonEnv(), encoding: "utf8", timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  return { text: out.text, finishReason: out.finish_reason, promptTokens: out.prompt_tokens,
    generatedTokens: out.generated_tokens };
}

export function inferenceSuite(live: Live): void {
  describe("inference", () => {
    before(async () => {
      await Promise.all([
        train(live.admin, "ts-lm", "tiny-lm", SENTIMENT, LM_TASK),
        train(live.admin, "ts-enc", "tiny-enc", SENTIMENT),
      ]);
    });

    it("streams generated text piece by piece, the same text the Python SDK gets", async () => {
      const pieces = await collect(live.admin.generate("ts-lm", "once upon a time", { maxNewTokens: 6 }));
      assert.ok(pieces.length > 1, `expected several streamed pieces, got ${JSON.stringify(pieces)}`);
      assert.ok(pieces.every((p) => p.length > 0));
      assert.equal(pieces.join(""), pythonGenerate(live, "ts-lm", "once upon a time", 6));
      const again = await collect(live.admin.generate("ts-lm", "once upon a time", { maxNewTokens: 6 }));
      assert.deepEqual(again, pieces); // greedy: the same pieces
    });

    it("samples reproducibly with a seed, differently per seed, and greedily as the temperature nears zero", async () => {
      const text = async (opts: { temperature?: number; seed?: number }) =>
        (await collect(live.admin.generate("ts-lm", "hello", { maxNewTokens: 8, ...opts }))).join("");
      const a = await text({ temperature: 1, seed: 5 });
      assert.ok(a.length > 0);
      assert.equal(await text({ temperature: 1, seed: 5 }), a);
      const greedy = await text({});
      // hot: near-uniform over the tiny model's 30k tokens, so two seeds (or a seed and greedy) agree on 8 tokens
      // with ~zero chance; a sampler that ignores the temperature or the seed fails here
      const hot = await Promise.all([1, 2, 3, 4].map((seed) => text({ temperature: 5, seed })));
      assert.equal(new Set(hot).size, 4, `different seeds gave the same text: ${JSON.stringify(hot)}`);
      assert.ok(!hot.includes(greedy), "sampling gave the greedy text");
      const cold = await Promise.all([1, 2, 3, 4].map((seed) => text({ temperature: 1e-4, seed })));
      assert.deepEqual(new Set(cold), new Set([greedy]), "a near-zero temperature must decode greedily");
    });

    it("takes the sampling options and says how the generation ended, as the Python SDK does", async () => {
      const options = { maxNewTokens: 4, topP: 0.5, topK: 3, stop: ["zzz"], temperature: 0.7, seed: 3 };
      const full = await live.admin.generateFull("ts-lm", "once upon a time", options);
      assert.ok(full.text.length > 0 && full.promptTokens > 0);
      assert.ok(["length", "eos", "stop"].includes(full.finishReason), full.finishReason);
      if (full.finishReason === "length") {
        assert.equal(full.generatedTokens, 4);
      }
      const py = pythonGenerateFull(live, "ts-lm", "once upon a time",
        { max_new_tokens: 4, top_p: 0.5, top_k: 3, stop: ["zzz"], temperature: 0.7, seed: 3 });
      assert.deepEqual(full, py);
      const stream = live.admin.generate("ts-lm", "once upon a time", options);
      const pieces: string[] = [];
      let next = await stream.next();
      for (; !next.done; next = await stream.next()) {
        pieces.push(next.value);
      }
      assert.deepEqual({ text: pieces.join(""), ...next.value }, full); // the generator's return value
      const err = await failure(collect(live.admin.generate("ts-lm", "hello", { topK: 5000 })));
      assertCode(err, "INVALID_ARGUMENT", 3);
      assert.match(err.serverMessage, /top_k=5000/);
      const both = await failure(collect(live.admin.generate("ts-lm", "hello", { backbone: "tiny-lm" })));
      assertCode(both, "INVALID_ARGUMENT", 3);
      assert.match(both.serverMessage, /exactly one of prompt/);
    });

    it("refuses to generate with a prompt on an encoder as FAILED_PRECONDITION", async () => {
      const err = await failure(collect(live.admin.generate("ts-enc", "hello")));
      assertCode(err, "FAILED_PRECONDITION", 9);
      assert.match(err.serverMessage, /tiny-enc/);
    });

    it("refuses max_new_tokens out of range as INVALID_ARGUMENT naming the field", async () => {
      const err = await failure(collect(live.admin.generate("ts-lm", "hello", { maxNewTokens: 100_000 })));
      assertCode(err, "INVALID_ARGUMENT", 3);
      assert.match(err.serverMessage, /max_new_tokens/);
    });
  });
}
