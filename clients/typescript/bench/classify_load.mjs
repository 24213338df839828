// Classify load through the TypeScript SDK, for bench/ts_client.py: keeps `concurrency` calls in flight until every
// request is done, after a warm-up of `warmup` requests, and prints one JSON line {seconds, latencies_ms}.
//
//   node bench/classify_load.mjs SPEC.json    # {address, concurrency, warmup, requests: [[[prompt, text], ...], ...]}
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Client } from "@promptbank/client";

/** @type {{address: string, concurrency: number, warmup: number, requests: [string, string][][]}} */
const spec = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8"));
const pb = new Client({ address: spec.address, timeoutMs: 300_000 });

/** @param {[string, string][][]} requests */
async function load(requests) {
  let next = 0;
  /** @type {number[]} */
  const latencies = [];
  const t0 = performance.now();
  const worker = async () => {
    while (next < requests.length) {
      const rows = requests[next++] ?? [];
      const t = performance.now();
      await pb.classify(rows);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  return { seconds: (performance.now() - t0) / 1000, latencies_ms: latencies };
}

try {
  await load(spec.requests.slice(0, spec.warmup));
  console.log(JSON.stringify(await load(spec.requests)));
} finally {
  pb.close();
}
