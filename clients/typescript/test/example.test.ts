/**
 * The README's example script, run as a user runs it, against a server that serves what `promptbank serve`
 * serves: the packaged all-MiniLM-L6-v2 as "minilm", the example's default backbone (tokens on). On the tiny
 * random models of the other tests a prompt cannot learn what "love" and "awful" mean, so there only the
 * mechanics could be checked; here the two texts must get their labels and the training loss must fall.
 * (About 25 s on 2 cores: 13 s to start the server, 10 s to train and classify.)
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PKG, secretFile, startServer, type Server } from "./harness.js";

const adminToken = randomBytes(24).toString("base64url");
let server: Server;

before(async () => {
  server = await startServer((dir) => ["--auth", "tokens", "--admin-token-file", secretFile(dir, "admin.token", adminToken)],
    "packaged");
});

after(async () => {
  await server?.stop();
});

describe("examples", () => {
  it("train_and_classify.mjs trains a prompt on minilm that labels both texts right", () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PROMPTBANK_SERVER: server.address, PROMPTBANK_TOKEN: adminToken };
    delete env.PROMPTBANK_BACKBONE; // the example's default: minilm
    const r = spawnSync(process.execPath, [join(PKG, "examples", "train_and_classify.mjs")], { cwd: PKG, env, encoding: "utf8", timeout: 300_000 });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}\n${server.log()}`);
    const lines = r.stdout.trim().split("\n");
    assert.match(lines[0]!, /^submitted jobs\/.+/);
    assert.ok(lines.some((l) => l.startsWith("SUCCEEDED")), r.stdout);
    const losses = lines.map((l) => /^step \d+\/\d+ loss (\S+)$/.exec(l)?.[1]).filter((x) => x !== undefined).map(Number);
    assert.ok(losses.length >= 2 && losses.at(-1)! < losses[0]!, `the loss did not fall: ${r.stdout}`);
    assert.match(r.stdout, /trained prompts\/sentiment-example\/versions\/1/);
    const preds = lines.slice(-2).map((l) => l.split("\t"));
    assert.deepEqual(preds.map((p) => [p[0], p[2]]), [["positive", "i really love it"], ["negative", "this is really awful"]],
      r.stdout);
    assert.ok(preds.every((p) => Number(p[1]) > 0.5), r.stdout);
  });
});
