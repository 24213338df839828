"""Training speed side by side: a promptbank step vs a PEFT prompt-tuning step, and co-batched jobs.

    python bench/train_speed.py [--batch 8] [--steps 20] [--jobs 4] [--rows 320] [--json PATH] [--quick]

1. Step time and peak memory of one training step (forward + backward + AdamW on the prompt) on the same
   model (packaged all-MiniLM-L6-v2), batch and sequence lengths: promptbank's Trainer vs PEFT
   PromptTuningConfig (FEATURE_EXTRACTION) with the same loss (fp32, text pooling, cosine to the plain
   label-text embeddings). Each variant runs in its own child process; memory is the peak resident-set
   growth during the steps (CPU) or torch.cuda.max_memory_allocated (GPU). Goal: ratios <= 1.0. Also
   printed: promptbank's step with its defaults (label texts read through the prompt, input noise,
   precision "auto").
2. `--jobs` jobs trained together (their rows share forwards, grouped by length, and one backward per step)
   vs the same jobs one after another, with the defaults: aggregate examples/s. Goal >= 1.5x. The batch
   defaults to TrainConfig's. Beside it, the ceiling: `--jobs` batches of equal-length rows in one forward/
   backward vs one at a time, which bounds what any co-batching can win on the device.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import threading
import time
import warnings

import torch


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set every 2 ms; `.peak - .start` is the growth during the block."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())


def _data(n: int) -> list[tuple[str, str]]:
    from promptbank.data import tweet_tasks

    return tweet_tasks(seed=0)["sentiment"][:n]


def step_promptbank(batch: int, steps: int, q: mp.Queue, defaults: bool = False) -> None:  # type: ignore[type-arg]
    """PEFT's step exactly (text pooling, plain label texts, fp32, no input noise), or promptbank's defaults."""
    warnings.filterwarnings("ignore")
    from coordinator.config import packaged_minilm
    from promptbank_domain.task import TaskSpec
    from promptbank_domain.train_config import TrainConfig
    from workers.actor import BackboneWorker
    from workers.train import Trainer, train_jobs

    w = BackboneWorker(packaged_minilm())
    rows = _data(batch * (steps + 3))
    like_peft = {} if defaults else {"precision": "fp32", "input_noise": 0.0}
    cfg = TrainConfig(batch_size=batch, epochs=1, eval_fraction=0.0, progress_every=1, checkpoint_every=10**6,
                      **like_peft)
    task = TaskSpec(labels=("negative", "positive"), **({} if defaults else {"pooling": "text"}))
    t = Trainer("bench", w.heads, task, rows, cfg)
    times, last = [], time.perf_counter()
    gen = train_jobs(w.heads, [t])
    for _ in range(3):  # warm-up steps
        next(e for e in gen if e.kind == "PROGRESS")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        last = time.perf_counter()
        for _ in range(steps):
            next(e for e in gen if e.kind == "PROGRESS")
            now = time.perf_counter()
            times.append(now - last)
            last = now
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else mem.peak - mem.start
    q.put((statistics.median(times), peak))


def step_peft(batch: int, steps: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    warnings.filterwarnings("ignore")
    import torch.nn.functional as F
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from coordinator.config import packaged_minilm
    from workers.heads import SIMILARITY_SCALE, mean_pool

    torch.set_num_threads(os.cpu_count() or 1)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = packaged_minilm()
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path).to(dev).eval()
    with torch.no_grad():  # label-text embeddings, as promptbank's head uses
        enc = tok(["negative", "positive"], padding=True, return_tensors="pt").to(dev)
        labels = F.normalize(mean_pool(base(**enc).last_hidden_state, enc["attention_mask"]), dim=-1)
    model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=20))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    rows = _data(batch * (steps + 3))
    index = {"negative": 0, "positive": 1}

    def one(i: int) -> None:
        chunk = rows[i * batch : (i + 1) * batch]
        enc = tok([t for t, _ in chunk], truncation=True, max_length=128, padding=True, return_tensors="pt").to(dev)
        y = torch.tensor([index[lab] for _, lab in chunk], device=dev)
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        pooled = F.normalize(mean_pool(hidden[:, 20:], enc["attention_mask"]), dim=-1)
        loss = F.cross_entropy(SIMILARITY_SCALE * pooled @ labels.T, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    for i in range(3):
        one(i)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    with PeakRSS() as mem:
        for i in range(3, 3 + steps):
            t = time.perf_counter()
            one(i)
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else mem.peak - mem.start
    q.put((statistics.median(times), peak))


def cobatch(n_jobs: int, rows: int, batch: int) -> tuple[float, float, float]:
    warnings.filterwarnings("ignore")
    from coordinator.config import packaged_minilm
    from promptbank_domain.task import TaskSpec
    from promptbank_domain.train_config import TrainConfig
    from workers.actor import BackboneWorker
    from workers.train import Trainer, train_jobs

    w = BackboneWorker(packaged_minilm())
    data = _data(rows * n_jobs)
    task = TaskSpec(labels=("negative", "positive"))

    def trainers() -> list[Trainer]:
        return [Trainer(f"j{i}", w.heads, task, data[i * rows : (i + 1) * rows],
                        TrainConfig(batch_size=batch, epochs=1, eval_fraction=0.0, seed=i, checkpoint_every=10**6))
                for i in range(n_jobs)]

    ceiling = _batch_ceiling(w, n_jobs, batch, data)
    list(train_jobs(w.heads, trainers()[:1]))  # warm-up
    t = time.perf_counter()
    for tr in trainers():
        list(train_jobs(w.heads, [tr]))
    sequential = time.perf_counter() - t
    t = time.perf_counter()
    list(train_jobs(w.heads, trainers()))
    together = time.perf_counter() - t
    return n_jobs * rows / sequential, n_jobs * rows / together, ceiling


def _batch_ceiling(w, n_jobs: int, batch: int, data: list[tuple[str, str]]) -> float:  # type: ignore[no-untyped-def]
    """What co-batching can win at best here: rows of one length, `n_jobs` forward/backward passes of
    `batch` rows vs one of `n_jobs * batch` rows (bf16 autocast when the CPU has it, as the defaults)."""
    from _timing import median_time

    from promptbank_domain.task import TaskSpec
    from workers.prepare import autocast_dtype
    from workers.soft_prompt import tokenize

    task = TaskSpec(labels=("negative", "positive"))
    ids = tokenize(w.bb, [t for t, _ in data[: n_jobs * batch]], 128)
    length = int(statistics.median(len(r) for r in ids))
    ids = [(r * length)[:length] for r in ids]  # every row the median length: no padding anywhere
    prompt = torch.nn.Parameter(torch.randn(20, w.bb.hidden_size) * 0.02)
    dtype = autocast_dtype("auto", w.device)

    def step(rows: list[list[int]]) -> None:
        with torch.autocast(w.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            feats = w.heads.features_under(task, prompt, rows)
        feats.float().sum().backward()

    apart = median_time(lambda: [step(ids[j * batch : (j + 1) * batch]) for j in range(n_jobs)], repeats=5)
    together = median_time(lambda: step(ids), repeats=5)
    return apart / together


def main() -> None:
    from _record import Record, add_flags

    from promptbank_domain.train_config import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--rows", type=int, default=320, help="training rows per co-batched job")
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.batch, a.steps, a.jobs, a.rows = 4, 2, 2, 8
    rec = Record("train_speed", vars(a), a.quick)
    ctx = mp.get_context("spawn")
    results = {}
    runs = (("promptbank", step_promptbank, ()), ("peft", step_peft, ()),
            ("defaults", step_promptbank, (True,)))
    for name, fn, extra in runs:
        q = ctx.Queue()
        p = ctx.Process(target=fn, args=(a.batch, a.steps, q, *extra))
        p.start()
        p.join()
        if p.exitcode != 0 or q.empty():
            raise SystemExit(f"the {name} run failed (exit code {p.exitcode}); see its traceback above")
        results[name] = q.get()
    (pb_t, pb_m), (pf_t, pf_m), (df_t, df_m) = results["promptbank"], results["peft"], results["defaults"]
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}"
    print(f"machine: {platform.machine()} {platform.system()}, {dev}; all-MiniLM-L6-v2, batch {a.batch}, "
          f"20 virtual tokens, tweets (max 128 tokens)")
    print(f"train step  promptbank {pb_t * 1e3:7.1f} ms   PEFT {pf_t * 1e3:7.1f} ms   ratio {pb_t / pf_t:.3f} (goal <= 1.0)")
    mem = "CUDA max allocated" if torch.cuda.is_available() else "peak RSS growth"
    print(f"memory ({mem})  promptbank {pb_m / 2**20:7.1f} MiB   PEFT {pf_m / 2**20:7.1f} MiB   "
          f"ratio {pb_m / max(1, pf_m):.3f} (goal <= 1.0)")
    print(f"promptbank defaults (labels through the prompt, input noise, precision auto): step {df_t * 1e3:7.1f} ms "
          f"({df_t / pf_t:.3f} of PEFT's fp32 step), memory {df_m / 2**20:7.1f} MiB")
    seq, tog, ceiling = cobatch(a.jobs, a.rows, a.batch)
    print(f"{a.jobs} jobs x {a.rows} rows: one after another {seq:6.1f} ex/s, co-batched {tog:6.1f} ex/s, "
          f"speed-up {tog / seq:.2f}x (goal >= 1.5x)")
    print(f"  ceiling here: one forward/backward of {a.jobs}x{a.batch} equal-length rows vs {a.jobs} of {a.batch}: "
          f"{ceiling:.2f}x (what batching can win on this device at all)")
    rec.settings["device"] = dev
    rec.figure("train step, promptbank (like PEFT: fp32, text pooling, no noise)", pb_t * 1e3, "ms", decimals=1)
    rec.figure("train step, PEFT prompt tuning", pf_t * 1e3, "ms", decimals=1)
    rec.figure("step time ratio promptbank / PEFT", pb_t / pf_t, decimals=3, goal="<= 1.0")
    rec.figure(f"memory ({mem}), promptbank", pb_m / 2**20, "MiB", decimals=1)
    rec.figure(f"memory ({mem}), PEFT", pf_m / 2**20, "MiB", decimals=1)
    rec.figure("memory ratio promptbank / PEFT", pb_m / max(1, pf_m), decimals=3, goal="<= 1.0")
    rec.figure("train step, promptbank defaults", df_t * 1e3, "ms", decimals=1)
    rec.figure("defaults step / PEFT fp32 step", df_t / pf_t, decimals=3)
    rec.figure(f"memory ({mem}), promptbank defaults", df_m / 2**20, "MiB", decimals=1)
    rec.figure(f"{a.jobs} jobs one after another", seq, "ex/s", decimals=1)
    rec.figure(f"{a.jobs} jobs co-batched", tog, "ex/s", decimals=1)
    rec.figure("co-batching speed-up", tog / seq, "x", decimals=2, goal=">= 1.5")
    rec.figure("batching ceiling on this device", ceiling, "x", decimals=2)
    rec.note(f"step: median of {a.steps} steps after 3 warm-up steps, batch {a.batch}, each variant in its own process; "
             f"co-batching: {a.jobs} jobs x {a.rows} rows, 1 epoch, defaults; ceiling: one forward/backward of "
             f"{a.jobs}x{a.batch} equal-length rows vs {a.jobs} of {a.batch}; memory on CPU is the resident-set "
             "growth during the timed steps, where a few MiB is noise")
    rec.write(a.json)


if __name__ == "__main__":
    main()
