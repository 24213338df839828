/** Tokens and roles, and every refusal arriving as one PromptBankError with the gRPC code name and the server's message. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Client, Role, collect } from "../../src/index.js";
import { POS, assertCode, failure, type Live } from "./live.js";

export function authSuite(live: Live): void {
  describe("auth and errors", () => {
    it("maps NOT_FOUND with the server's message", async () => {
      const err = await failure(live.admin.getPrompt("ts-no-such-prompt"));
      assertCode(err, "NOT_FOUND", 5);
      assert.match(err.serverMessage, /ts-no-such-prompt/);
      assert.equal(err.message, `NOT_FOUND: ${err.serverMessage}`);
    });

    it("maps INVALID_ARGUMENT naming the field and its range", async () => {
      const err = await failure(live.admin.createTrainJob("ts-bad", "tiny-enc", { examples: [["a", "x"], ["b", "y"]], hyperparameters: { epochs: 0 } }));
      assertCode(err, "INVALID_ARGUMENT", 3);
      assert.match(err.serverMessage, /epochs/);
      assertCode(await failure(live.admin.classify([])), "INVALID_ARGUMENT", 3);
    });

    it("maps RESOURCE_EXHAUSTED over a limit", async () => {
      const rows = Array.from({ length: 65 }, () => ["ts-any", POS[0]!] as const);
      const err = await failure(live.admin.classify(rows));
      assertCode(err, "RESOURCE_EXHAUSTED", 8);
      assert.match(err.serverMessage, /65/);
    });

    it("is UNAUTHENTICATED without a token or with an unknown one", async () => {
      for (const [token, why] of [["", /no token/], ["not-a-token", /unknown, expired or revoked/]] as const) {
        const pb = new Client({ address: live.server.address, token });
        try {
          const err = await failure(collect(pb.listPrompts()));
          assertCode(err, "UNAUTHENTICATED", 16);
          assert.match(err.serverMessage, why);
        } finally {
          pb.close();
        }
      }
    });

    it("gives a reader token reads and PERMISSION_DENIED for writes, until it is revoked", async () => {
      const admin = live.admin;
      const made = await admin.createToken("ts-reader", "reader", { ttlSeconds: 3600 });
      assert.equal(made.token?.name, "tokens/ts-reader");
      assert.equal(made.token?.role, Role.READER);
      assert.ok(made.secret.length >= 16);
      const listed = await collect(admin.listTokens({ pageSize: 1 }));
      assert.ok(listed.some((t) => t.name === "tokens/ts-reader"));
      const reader = new Client({ address: live.server.address, token: made.secret });
      try {
        assert.ok((await collect(reader.listBackbones())).length === 2);
        const denied = await failure(reader.createPrompt("ts-by-reader", { labels: ["a", "b"] }));
        assertCode(denied, "PERMISSION_DENIED", 7);
        assert.match(denied.serverMessage, /CreatePrompt/);
        await admin.revokeToken("ts-reader");
        assertCode(await failure(collect(reader.listBackbones())), "UNAUTHENTICATED", 16);
      } finally {
        reader.close();
      }
    });

    it("takes the address and token from PROMPTBANK_SERVER and PROMPTBANK_TOKEN when not given", async () => {
      const saved = { server: process.env.PROMPTBANK_SERVER, token: process.env.PROMPTBANK_TOKEN };
      process.env.PROMPTBANK_SERVER = live.server.address;
      process.env.PROMPTBANK_TOKEN = live.adminToken;
      const pb = new Client();
      try {
        assert.equal(pb.address, live.server.address);
        assert.equal((await collect(pb.listBackbones())).length, 2);
      } finally {
        pb.close();
        for (const [k, v] of [["PROMPTBANK_SERVER", saved.server], ["PROMPTBANK_TOKEN", saved.token]] as const) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    });

    it("is UNAVAILABLE when nothing listens at the address", async () => {
      const pb = new Client({ address: "127.0.0.1:1", token: live.adminToken });
      try {
        const err = await failure(pb.getPrompt("x"));
        assertCode(err, "UNAVAILABLE", 14);
        const retried = await failure(pb.createPrompt("x", { labels: ["a", "b"], retries: 2 }));
        assertCode(retried, "UNAVAILABLE", 14);
        assert.match(retried.message, /ECONNREFUSED.*\(gave up after 3 attempts\)/, "a create is retried with its request id");
      } finally {
        pb.close();
      }
    });
  });
}
