/** The catalog: backbones (and deregistering one), prompts with pagination, versions, tags, aliases and their history, PEFT import/export. */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Architecture, PEFT_CONFIG, PEFT_WEIGHTS, collect, readAdapter, writeAdapter } from "../../src/index.js";
import { tempDir } from "../harness.js";
import { NEG, POS, SENTIMENT, assertCode, failure, train, type Live } from "./live.js";

export function catalogSuite(live: Live): void {
  describe("catalog", () => {
    before(async () => {
      await train(live.admin, "ts-cat", "tiny-enc", SENTIMENT);
    });

    it("lists and gets backbones", async () => {
      const all = await collect(live.admin.listBackbones({ pageSize: 1 }));
      const byName = Object.fromEntries(all.map((b) => [b.name, b]));
      assert.deepEqual(Object.keys(byName).sort(), ["backbones/tiny-enc", "backbones/tiny-lm"]);
      assert.equal(byName["backbones/tiny-enc"]!.architecture, Architecture.ENCODER);
      assert.equal(byName["backbones/tiny-lm"]!.architecture, Architecture.CAUSAL_LM);
      const enc = await live.admin.getBackbone("tiny-enc");
      assert.equal(enc.hiddenSize, 32);
      assert.equal(enc.fingerprint, byName["backbones/tiny-enc"]!.fingerprint);
    });

    it("creates prompts idempotently and pages through them with an async iterator", async () => {
      const pb = live.admin;
      const names = ["ts-page-a", "ts-page-b", "ts-page-c"];
      for (const name of names) {
        const p = await pb.createPrompt(name, { labels: ["no", "yes"], tags: ["ts-page"], owner: "ts-team", requestId: `rid-${name}` });
        assert.equal(p.name, `prompts/${name}`);
        assert.equal(p.latestVersion, 0n);
      }
      const again = await pb.createPrompt("ts-page-a", { labels: ["no", "yes"], tags: ["ts-page"], owner: "ts-team", requestId: "rid-ts-page-a" });
      assert.equal(again.name, "prompts/ts-page-a");
      const page = await pb.rpc.catalog.listPrompts({ tag: "ts-page", pageSize: 1 });
      assert.equal(page.prompts.length, 1);
      assert.notEqual(page.nextPageToken, ""); // the server pages at size 1 ...
      const listed = await collect(pb.listPrompts({ tag: "ts-page", pageSize: 1 }));
      assert.deepEqual(listed.map((p) => p.name).sort(), names.map((n) => `prompts/${n}`)); // ... and the iterator follows
      assert.deepEqual(await collect(pb.listPrompts({ tag: "ts-page", createdAfter: new Date(Date.now() + 3_600_000) })), []);
      const err = await failure(pb.createPrompt("ts-page-a", { labels: ["no", "yes"] }));
      assertCode(err, "ALREADY_EXISTS", 6);
    });

    it("updates only the fields it is given", async () => {
      const pb = live.admin;
      await pb.updatePrompt("ts-page-b", { tags: ["ts-page", "golden"] });
      let p = await pb.getPrompt("ts-page-b");
      assert.deepEqual(p.tags, ["golden", "ts-page"]); // the server keeps tags sorted
      assert.equal(p.owner, "ts-team");
      await pb.updatePrompt("prompts/ts-page-b", { owner: "other", description: "a yes/no task" });
      p = await pb.getPrompt("ts-page-b");
      assert.deepEqual([p.owner, p.task?.description, p.tags], ["other", "a yes/no task", ["golden", "ts-page"]]);
    });

    it("tags versions, moves aliases, and keeps their history", async () => {
      const pb = live.admin;
      const [v1] = await collect(pb.listVersions("ts-cat"));
      assert.equal(v1!.name, "prompts/ts-cat/versions/1");
      assert.deepEqual(v1!.shape, [4n, 32n]);
      assert.equal(v1!.tensor.length, 0);
      const withTensor = await pb.getVersion("ts-cat@latest", { includeTensor: true });
      assert.ok(withTensor.tensor.length > 4 * 32 * 4);
      const tagged = await pb.tagVersion("ts-cat/versions/1", ["golden"]);
      assert.deepEqual(tagged.tags, ["golden"]);
      assert.equal((await collect(pb.listVersions("ts-cat", { tag: "golden" }))).length, 1);
      assert.equal((await collect(pb.listVersions("ts-cat", { tag: "nothing" }))).length, 0);
      const alias = await pb.setAlias("ts-cat", "prod", 1);
      assert.deepEqual([alias.name, alias.version], ["prompts/ts-cat/aliases/prod", "prompts/ts-cat/versions/1"]);
      assert.equal((await pb.getPrompt("ts-cat")).aliases.prod, 1n);
      await pb.deleteAlias("ts-cat", "prod");
      assert.equal((await pb.getPrompt("ts-cat")).aliases.prod, undefined);
      const history = (await collect(pb.aliasHistory("ts-cat", { pageSize: 1 }))).filter((e) => e.alias === "prod");
      assert.deepEqual(history.map((e) => [e.fromVersion, e.toVersion]), [[1n, 0n], [0n, 1n]]); // newest first
      assertCode(await failure(pb.getVersion("ts-cat@prod")), "NOT_FOUND", 5);
    });

    it("exports a version as PEFT files and imports them back as a prompt that scores the same", async (t) => {
      const pb = live.admin;
      const files = await pb.exportVersion("ts-cat@latest");
      const tmp = tempDir("peft");
      t.after(() => rmSync(tmp, { recursive: true, force: true }));
      const dir = await writeAdapter(join(tmp, "adapter"), files);
      const config = JSON.parse(readFileSync(join(dir, PEFT_CONFIG), "utf8")) as Record<string, unknown>;
      assert.equal(config.peft_type, "PROMPT_TUNING");
      assert.deepEqual(readFileSync(join(dir, PEFT_WEIGHTS)), Buffer.from(files.adapterModel));
      const read = await readAdapter(dir);
      const imported = await pb.importVersion("ts-imported", "tiny-enc", read, { labels: ["negative", "positive"] });
      assert.equal(imported.name, "prompts/ts-imported/versions/1");
      assert.match(imported.lineage?.importedFrom ?? "", /^peft/);
      assert.equal(imported.sha256, (await pb.getVersion("ts-cat@latest")).sha256);
      const texts = [...POS, ...NEG];
      const original = await pb.classify(texts.map((t) => ["ts-cat", t] as const));
      const copy = await pb.classify(texts.map((t) => ["ts-imported", t] as const));
      copy.forEach((p, i) => {
        assert.equal(p.label, original[i]!.label);
        assert.ok(Math.abs(p.scores.positive! - original[i]!.scores.positive!) < 1e-5);
      });
    });

    it("refuses an adapter folder with pickled weights before anything is sent", async (t) => {
      const tmp = tempDir("pickle");
      t.after(() => rmSync(tmp, { recursive: true, force: true }));
      const dir = join(tmp, "adapter");
      mkdirSync(dir);
      writeFileSync(join(dir, PEFT_CONFIG), "{}");
      writeFileSync(join(dir, "adapter_model.bin"), "not really");
      await assert.rejects(readAdapter(dir), /adapter_model\.bin is a pickle file/);
    });

    it("deregisters a backbone: its replica stops and frees its CPU, and registering it again serves it", async () => {
      const pb = live.admin;
      const before = await pb.getBackbone("tiny-lm");
      const pinned = (await collect(pb.listPrompts({ backbone: "tiny-lm" }))).length > 0; // a version keeps its entry
      const gone = await pb.deregisterBackbone("tiny-lm");
      assert.deepEqual([gone.removed, gone.stoppedReplicas, gone.failedJobs], [!pinned, 1, []]);
      assert.equal(gone.backbone?.fingerprint, before.fingerprint);
      if (pinned) {
        const kept = await pb.getBackbone("tiny-lm");
        assert.deepEqual([kept.replicas, kept.serving.length], [0, 0]);
      } else {
        assertCode(await failure(pb.getBackbone("tiny-lm")), "NOT_FOUND", 5);
      }
      const [event] = await collect(pb.listAuditEvents({ method: "DeregisterBackbone", resource: "backbones/tiny-lm" }));
      assert.equal(event?.principal, "admin");
      // each replica holds a whole CPU: on a two-core machine this one can only be placed on the CPU just freed
      const back = await pb.registerBackbone("tiny-lm", join(live.server.dir, "models", "tiny-lm"), { timeoutMs: 120_000 });
      assert.deepEqual([back.replicas, back.fingerprint], [1, before.fingerprint]);
    });

    it("deletes versions and prompts, with force where something still points at them", async () => {
      const pb = live.admin;
      await pb.setAlias("ts-imported", "prod", 1n);
      assertCode(await failure(pb.deleteVersion("prompts/ts-imported/versions/1")), "FAILED_PRECONDITION", 9);
      await pb.deleteVersion("prompts/ts-imported/versions/1", { force: true });
      assertCode(await failure(pb.getVersion("prompts/ts-imported/versions/1")), "NOT_FOUND", 5);
      await pb.deletePrompt("ts-page-c");
      assertCode(await failure(pb.deletePrompt("ts-cat")), "FAILED_PRECONDITION", 9);
      await pb.deletePrompt("ts-cat", { force: true });
      assertCode(await failure(pb.getPrompt("ts-cat")), "NOT_FOUND", 5);
    });
  });
}
