/** The README's example script, run as a user runs it, against the live server. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PKG, python, pythonEnv } from "../harness.js";
import type { Live } from "./live.js";

/** The packaged all-MiniLM-L6-v2 (real weights, no download), copied under the server's --model-root and
 * registered: the tiny random encoder cannot learn sentiment from the example's twelve rows, so its labels say
 * nothing about whether the example worked. */
async function registerMinilm(live: Live): Promise<void> {
  const code = "from coordinator.config import packaged_minilm; print(packaged_minilm())";
  const found = spawnSync(python(), ["-c", code], { env: pythonEnv(), encoding: "utf8", timeout: 120_000 });
  assert.equal(found.status, 0, found.stderr);
  const path = join(live.server.dir, "models", "minilm");
  cpSync(found.stdout.trim(), path, { recursive: true });
  await live.admin.registerBackbone("minilm", path, { timeoutMs: 300_000 });
}

export function exampleSuite(live: Live): void {
  describe("examples", () => {
    it("train_and_classify.mjs trains a prompt and classifies with it", async () => {
      await registerMinilm(live);
      const env = { ...process.env, PROMPTBANK_SERVER: live.server.address, PROMPTBANK_TOKEN: live.adminToken, PROMPTBANK_BACKBONE: "minilm" };
      const r = spawnSync(process.execPath, [join(PKG, "examples", "train_and_classify.mjs")], { cwd: PKG, env, encoding: "utf8", timeout: 300_000 });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const lines = r.stdout.trim().split("\n");
      assert.match(lines[0]!, /^submitted jobs\/.+/);
      assert.ok(lines.includes("SUCCEEDED") || lines.some((l) => l.startsWith("SUCCEEDED")), r.stdout);
      assert.ok(lines.some((l) => /^step \d+\/\d+ loss \d/.test(l)), r.stdout);
      assert.match(r.stdout, /trained prompts\/sentiment-example\/versions\/1/);
      const preds = lines.slice(-2).map((l) => l.split("\t"));
      assert.deepEqual(preds.map((p) => [p[2], p[0]]), [["i really love it", "positive"], ["this is really awful", "negative"]]);
      assert.ok(preds.every((p) => Number(p[1]) > 0.5 && Number(p[1]) <= 1), r.stdout);
    });
  });
}
