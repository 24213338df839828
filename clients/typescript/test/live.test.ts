/**
 * The SDK against one real server (tokens on, plaintext, loopback): training, inference, the catalog, auth and
 * errors, live evaluation, and retries across a restart of the server (last). Each suite is a file of its
 * own under suites/; they share this server.
 */
import { after, before } from "node:test";
import { randomBytes } from "node:crypto";
import { Client } from "../src/index.js";
import { secretFile, startServer } from "./harness.js";
import type { Live } from "./suites/live.js";
import { authSuite } from "./suites/auth.js";
import { catalogSuite } from "./suites/catalog.js";
import { deadlineSuite } from "./suites/deadlines.js";
import { inferenceSuite } from "./suites/inference.js";
import { restartSuite } from "./suites/restart.js";
import { rolloutSuite } from "./suites/rollouts.js";
import { trainingSuite } from "./suites/training.js";

const adminToken = randomBytes(24).toString("base64url");
const live = {} as Live;

before(async () => {
  live.server = await startServer((dir) => [
    "--auth", "tokens",
    "--admin-token-file", secretFile(dir, "admin.token", adminToken),
    "--limit-classify-rows", "64",
  ]);
  live.adminToken = adminToken;
  live.admin = new Client({ address: live.server.address, token: adminToken, timeoutMs: 120_000 });
  await live.admin.waitReady({ timeoutMs: 60_000 });
});

after(async () => {
  live.admin?.close();
  await live.server?.stop();
});

trainingSuite(live);
inferenceSuite(live);
catalogSuite(live);
authSuite(live);
deadlineSuite(live);
rolloutSuite(live);
restartSuite(live); // last: it stops and restarts the server
