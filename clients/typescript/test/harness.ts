/**
 * A real promptbank server for the tests: `python test/fixtures.py serve` (the coordinator, its own local Ray,
 * a SQLite bank in a temp folder, two tiny random models built for the run) on a free loopback port. The
 * Python interpreter is env PROMPTBANK_PYTHON, else the repository's .venv, else python3.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** clients/typescript (this file runs from build/test/). */
export const PKG = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO = resolve(PKG, "..", "..");
const FIXTURES = join(PKG, "test", "fixtures.py");
const START_TIMEOUT_MS = 300_000;

export function python(): string {
  const venv = join(REPO, ".venv", "bin", "python");
  return process.env.PROMPTBANK_PYTHON || (existsSync(venv) ? venv : "python3");
}

/** The environment of a Python child: the repository on PYTHONPATH, no hub, no usage stats. */
export function pythonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const path = [REPO, process.env.PYTHONPATH].filter(Boolean).join(":");
  return {
    ...process.env,
    PYTHONPATH: path,
    HF_HUB_OFFLINE: "1",
    TRANSFORMERS_OFFLINE: "1",
    HF_DATASETS_OFFLINE: "1",
    RAY_USAGE_STATS_ENABLED: "0",
    ...extra,
  };
}

export interface Server {
  /** `127.0.0.1:PORT`. */
  address: string;
  port: number;
  /** A folder of this server's own (its bank.db, models and files), removed by stop(). */
  dir: string;
  /** Everything the server printed so far (for failure messages). */
  log: () => string;
  /** SIGTERM (graceful: the server stops Ray), then SIGKILL to its process group after 60 s. */
  stop: () => Promise<void>;
  /** Stops the process as stop() does but keeps its folder: resume() starts it again. */
  halt: () => Promise<void>;
  /** Starts a halted server again with the same flags, port and bank.db: a restarted coordinator. */
  resume: () => Promise<void>;
}

/** Writes `secret` to a file in `dir` (for --admin-token-file) and returns its path. */
export function secretFile(dir: string, name: string, secret: string): string {
  const path = join(dir, name);
  writeFileSync(path, secret, { mode: 0o600 });
  return path;
}

/** A fresh temp folder under the OS temp dir. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `promptbank-ts-${prefix}-`));
}

/** Which models a test server serves: the two tiny random ones (quick; they learn nothing that generalises), or
 * the packaged all-MiniLM-L6-v2 as backbone "minilm" (what `promptbank serve` serves by default). */
export type Models = "tiny" | "packaged";

/** Starts a server with extra `promptbank serve` flags; `setup(dir)` returns flags that need its folder. */
export async function startServer(setup: (dir: string) => string[] = () => [], models: Models = "tiny"): Promise<Server> {
  const dir = tempDir("server");
  const flags = ["--db", join(dir, "bank.db"), ...setup(dir)];
  const launch = (port: number) => start(dir, port, flags, models);
  let proc = await launch(0);
  let halted = false;
  return {
    address: `127.0.0.1:${proc.port}`,
    port: proc.port,
    dir,
    log: () => proc.log(),
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    halt: async () => {
      halted = true;
      await proc.stop();
    },
    resume: async () => {
      assert.ok(halted, "resume() a server that halt() stopped");
      proc = await launch(proc.port);
      halted = false;
    },
  };
}

/** One server process on `port` (0: any free one), serving from `dir`. */
async function start(dir: string, port: number, flags: string[], models: Models): Promise<{ port: number; log: () => string; stop: () => Promise<void> }> {
  const serve = models === "tiny" ? ["serve", join(dir, "models")] : ["serve-packaged"];
  const args = [FIXTURES, ...serve, "--host", "127.0.0.1", "--port", String(port), ...flags];
  const child = spawn(python(), args, {
    cwd: REPO,
    env: pythonEnv({ PROMPTBANK_HOME: dir }),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so a forced stop also ends the Ray processes it started
  });
  let out = "";
  const log = () => out.slice(-8000);
  const killGroup = () => {
    try {
      process.kill(-(child.pid ?? 0), "SIGKILL");
    } catch {
      // already gone
    }
  };
  process.once("exit", killGroup); // last resort if the test process dies first
  const serving = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in ${START_TIMEOUT_MS} ms:\n${log()}`)), START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /promptbank serving on [^\s:]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before serving:\n${log()}`));
    });
  });
  return { port: serving, log, stop: () => stopChild(child, killGroup) };
}

async function stopChild(child: ChildProcess, killGroup: () => void): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(killGroup, 60_000);
    await exited;
    clearTimeout(timer);
  }
  process.removeListener("exit", killGroup);
}

/** Runs `python test/fixtures.py pki DIR`: ca.pem, server.pem/.key, client.pem/.key, rogue-ca.pem. */
export function makePki(dir: string): void {
  const r = spawnSync(python(), [FIXTURES, "pki", dir], { cwd: REPO, env: pythonEnv(), encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`fixtures.py pki failed (${r.status}): ${r.stderr}`);
  }
}
