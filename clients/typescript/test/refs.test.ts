/** Live evaluation's argument checks, made before anything is sent (no server: a call that left would fail). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { aliasRef, Client, versionRef } from "../src/index.js";

test("alias and version references become resource names, or an error naming them", () => {
  assert.equal(aliasRef("sentiment@prod").name, "prompts/sentiment/aliases/prod");
  assert.equal(aliasRef("prompts/sentiment/aliases/prod/rollout").name, "prompts/sentiment/aliases/prod");
  const ref = aliasRef("sentiment@prod");
  for (const given of [4, 4n, "4", "sentiment/versions/4", "prompts/sentiment/versions/4"]) {
    assert.equal(versionRef(given, ref), "prompts/sentiment/versions/4");
  }
  for (const bad of ["sentiment", "sentiment/versions/2", "Sentiment@prod", "a@b@c", ""]) {
    assert.throws(() => aliasRef(bad), { name: "TypeError", message: new RegExp(JSON.stringify(bad).replace(/[/]/g, "\\/")) });
  }
  assert.throws(() => versionRef("other/versions/2", ref), /'other', not of 'sentiment'/);
  assert.throws(() => versionRef("sentiment@canary", ref), /must name a version/);
  assert.throws(() => versionRef(0, ref), /must name a version/);
});

test("bad arguments are refused before a call leaves", async () => {
  const c = new Client({ address: "127.0.0.1:1", timeoutMs: 1000 });
  try {
    await assert.rejects(c.setShadow("s@prod", 2, { fraction: 0 }), { name: "RangeError", message: /fraction must be a number in \(0, 1\], got 0/ });
    await assert.rejects(c.setCanary("s@prod", 2, 1.5), { name: "RangeError", message: /fraction must be a number in \[0, 1\], got 1.5/ });
    await assert.rejects(c.compare("s@prod", 2, { margin: Number.NaN }), /margin must be a number in \[0, 1\], got NaN/);
    await assert.rejects(c.setPolicy("s@prod", true, { margin: 0.1, minRows: -1 }), /minRows must be a whole number >= 0/);
    await assert.rejects(c.promote("s", 2), /alias must be 'task@alias'/);
    await assert.rejects(c.classify([["s", "a"], ["s", "b"]], { routingKey: ["k"] }), /routingKey has 1 keys for 2 rows/);
    await assert.rejects(c.recordOutcomes([["id", ""]]), /item 0 \(result id "id"\) has no label/);
    await assert.rejects(c.recordOutcomes([["id", "pos"]], { chunk: 10_001 }), /chunk must be a whole number in 1..10000/);
    assert.deepEqual(await c.recordOutcomes(new Map()), { recorded: 0, already: 0, unknown: [], conflicting: [], promoted: [] });
  } finally {
    c.close();
  }
});
