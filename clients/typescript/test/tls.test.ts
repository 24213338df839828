/** TLS and mutual TLS against a real server serving with certificates the test makes (auth off: loopback). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Client, collect, type ClientOptions } from "../src/index.js";
import { makePki, startServer, type Server } from "./harness.js";
import { assertCode, failure } from "./suites/live.js";

let server: Server;
let pki: string;

before(async () => {
  server = await startServer((dir) => {
    pki = join(dir, "pki");
    makePki(pki);
    return ["--tls-cert", join(pki, "server.pem"), "--tls-key", join(pki, "server.key"), "--tls-client-ca", join(pki, "ca.pem")];
  });
});

after(async () => {
  await server?.stop();
});

/** Runs `fn` with a client made from `options` and closes it. */
async function withClient<T>(options: ClientOptions, fn: (pb: Client) => Promise<T>): Promise<T> {
  const pb = new Client({ timeoutMs: 20_000, ...options });
  try {
    return await fn(pb);
  } finally {
    pb.close();
  }
}

describe("tls", () => {
  it("serves a client that trusts the CA and presents its certificate (files)", async () => {
    const opts = { address: server.address, tlsCa: join(pki, "ca.pem"), tlsCert: join(pki, "client.pem"), tlsKey: join(pki, "client.key") };
    await withClient(opts, async (pb) => {
      const names = (await collect(pb.listBackbones())).map((b) => b.name).sort();
      assert.deepEqual(names, ["backbones/tiny-enc", "backbones/tiny-lm"]);
      const made = await pb.createPrompt("ts-tls", { labels: ["a", "b"] });
      assert.equal((await pb.getPrompt("ts-tls")).name, made.name);
    });
  });

  it("takes PEM text and bytes as well as paths, and the name localhost from the certificate", async () => {
    const opts = {
      address: `localhost:${server.port}`,
      tlsCa: readFileSync(join(pki, "ca.pem"), "utf8"),
      tlsCert: new Uint8Array(readFileSync(join(pki, "client.pem"))),
      tlsKey: readFileSync(join(pki, "client.key"), "utf8"),
    };
    await withClient(opts, async (pb) => assert.equal((await collect(pb.listBackbones())).length, 2));
  });

  it("fails as UNAVAILABLE without a client certificate (mutual TLS)", async () => {
    const err = await withClient({ address: server.address, tlsCa: join(pki, "ca.pem") }, (pb) => failure(collect(pb.listBackbones())));
    assertCode(err, "UNAVAILABLE", 14);
  });

  it("fails as UNAVAILABLE when the server's certificate does not chain to the CA given", async () => {
    const opts = { address: server.address, tlsCa: join(pki, "rogue-ca.pem"), tlsCert: join(pki, "client.pem"), tlsKey: join(pki, "client.key") };
    const err = await withClient(opts, (pb) => failure(collect(pb.listBackbones())));
    assertCode(err, "UNAVAILABLE", 14);
    assert.match(err.message, /certificate/i);
  });

  it("fails as UNAVAILABLE when it speaks plaintext to a TLS server", async () => {
    const err = await withClient({ address: server.address }, (pb) => failure(collect(pb.listBackbones())));
    assertCode(err, "UNAVAILABLE", 14);
  });
});
