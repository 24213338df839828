/** The README's example script, run as a user runs it, against the live server. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PKG } from "../harness.js";
import type { Live } from "./live.js";

export function exampleSuite(live: Live): void {
  describe("examples", () => {
    it("train_and_classify.mjs trains a prompt and classifies with it", () => {
      const env = { ...process.env, PROMPTBANK_SERVER: live.server.address, PROMPTBANK_TOKEN: live.adminToken, PROMPTBANK_BACKBONE: "tiny-enc" };
      const r = spawnSync(process.execPath, [join(PKG, "examples", "train_and_classify.mjs")], { cwd: PKG, env, encoding: "utf8", timeout: 300_000 });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const lines = r.stdout.trim().split("\n");
      assert.match(lines[0]!, /^submitted jobs\/.+/);
      assert.ok(lines.includes("SUCCEEDED") || lines.some((l) => l.startsWith("SUCCEEDED")), r.stdout);
      assert.ok(lines.some((l) => /^step \d+\/\d+ loss \d/.test(l)), r.stdout);
      assert.match(r.stdout, /trained prompts\/sentiment-example\/versions\/1/);
      const preds = lines.slice(-2).map((l) => l.split("\t"));
      assert.deepEqual(preds.map((p) => p[2]), ["i really love it", "this is really awful"]);
      assert.ok(preds.every((p) => ["negative", "positive"].includes(p[0]!) && Number(p[1]) >= 0.5), r.stdout);
    });
  });
}
