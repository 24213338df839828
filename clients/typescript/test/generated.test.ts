/** The committed generated code is exactly what scripts/gen_ts.sh makes from protos/ now. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PKG, REPO, python, pythonEnv, tempDir } from "./harness.js";

test("src/gen is fresh: regenerating from protos/ changes nothing", (t) => {
  const out = tempDir("gen");
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const r = spawnSync("bash", [join(REPO, "scripts", "gen_ts.sh"), out], {
    cwd: REPO,
    env: pythonEnv({ PYTHON: python() }),
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  for (const dir of [["promptbank", "v1"], ["google", "api"]]) {
    const fresh = join(out, ...dir);
    const committed = join(PKG, "src", "gen", ...dir);
    const names = readdirSync(fresh).sort();
    assert.deepEqual(readdirSync(committed).sort(), names, "generated file set differs; run scripts/gen_ts.sh");
    assert.ok(names.length >= 2);
    const stale = names.filter((n) => readFileSync(join(fresh, n), "utf8") !== readFileSync(join(committed, n), "utf8"));
    assert.deepEqual(stale, [], `stale generated code ${stale.join(", ")}; run scripts/gen_ts.sh and commit`);
  }
});
