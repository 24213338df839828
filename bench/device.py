"""The serving benches at the worker level, in process, on a CUDA GPU and a one-billion-parameter causal LM.

    python bench/device.py [--model DIR] [--dtype auto] [--json PATH] [--quick] [--allow-cpu]

A Llama-shaped causal LM of ~1.1B parameters is built from a config with random weights in bf16 (no download;
bench/_synthetic.py) unless --model names one, and served by one `BackboneWorker` in this process (no Ray, no
bank: what a GPU machine without them runs, scripts/device_check.sh). Side by side:

1. mixed vs single-task batches: 64 rows of 8 tasks as one mixed batch vs 8 single-task batches (goal >= 0.97);
2. vs PEFT: a 64-request window over 64 tasks, one mixed batch vs PEFT `set_adapter` + forward per task
   (goal >= 1.7x);
3. co-batched training: 4 jobs stepping together vs one after another (goal >= 1.5x);
4. generation: 64 requests over 16 prompts continuously batched vs decoded one at a time (tokens/s).

The record names the GPU (run.machine.gpu). Without CUDA it refuses (exit 2) unless --quick (a tiny model on
the CPU: a pipeline check) or --allow-cpu.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
from _record import Record, add_flags  # noqa: E402
from _synthetic import LLAMA_1B, LLAMA_TINY, WORDS, causal_lm  # noqa: E402
from _timing import median_time, paired_medians  # noqa: E402

from bank.codec import encode_prompt, sha256_hex  # noqa: E402
from promptbank_domain.task import TaskSpec  # noqa: E402
from promptbank_domain.train_config import TrainConfig  # noqa: E402
from workers.actor import BackboneWorker  # noqa: E402
from workers.protocol import ClassifyBatch, GenerateRequest, GenerationSettings, TrainRequest  # noqa: E402

TASK = TaskSpec(labels=("negative", "positive"), label_words=("bad", "good"))


def texts(n: int, seed: int, lo: int = 6, hi: int = 40) -> list[str]:
    r = random.Random(seed)
    return [" ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi))) for _ in range(n)]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def mixed_vs_single(w: BackboneWorker, rec: Record, a: argparse.Namespace) -> None:
    prompts = [encode_prompt(torch.randn(a.virtual_tokens, w.bb.hidden_size)) for _ in range(8)]
    blobs = {sha256_hex(b): b for b in prompts}
    keys = list(blobs)
    tasks = dict.fromkeys(keys, TASK)
    rows = list(zip([keys[i % 8] for i in range(a.rows)], texts(a.rows, 1), strict=True))
    w.classify(ClassifyBatch(rows, blobs, tasks))  # prompts cached

    def single() -> None:
        for k in keys:
            w.classify(ClassifyBatch([r for r in rows if r[0] == k], {}, tasks))
        sync()

    def mixed() -> None:
        w.classify(ClassifyBatch(rows, {}, tasks))
        sync()

    t_single, t_mixed = paired_medians(single, mixed, a.repeats)
    rec.figure("single-task throughput", a.rows / t_single, "rows/s", decimals=1)
    rec.figure("mixed-task throughput", a.rows / t_mixed, "rows/s", decimals=1)
    rec.figure("mixed/single throughput ratio", t_single / t_mixed, decimals=3, goal=">= 0.97")


def vs_peft(w: BackboneWorker, path: str, rec: Record, a: argparse.Namespace) -> None:
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    n = a.tasks
    vectors = [torch.randn(a.virtual_tokens, w.bb.hidden_size) * 0.02 for _ in range(n)]
    blobs = {sha256_hex(b): b for b in (encode_prompt(v) for v in vectors)}
    keys = list(blobs)
    rows = list(zip(keys, texts(n, 2), strict=True))
    tasks = dict.fromkeys(keys, TASK)
    w.classify(ClassifyBatch(rows, blobs, tasks))

    base = AutoModelForCausalLM.from_pretrained(path, dtype=w.bb.model.dtype).to(w.device).eval()
    cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=a.virtual_tokens)
    peft = get_peft_model(base, cfg, adapter_name="t0")
    for i in range(1, n):
        peft.add_adapter(f"t{i}", cfg)
    with torch.no_grad():
        for i, v in enumerate(vectors):
            peft.prompt_encoder[f"t{i}"].embedding.weight.copy_(v)
    tok = w.bb.tokenizer
    words = [tok(" " + x, add_special_tokens=False)["input_ids"][0] for x in TASK.label_words]
    encoded = [tok([t], return_tensors="pt").to(w.device) for _, t in rows]

    def ours() -> None:
        w.classify(ClassifyBatch(rows, {}, tasks))
        sync()

    @torch.no_grad()
    def theirs() -> None:
        for i, enc in enumerate(encoded):
            peft.set_adapter(f"t{i}")
            peft(**enc).logits[0, -1, words].float().cpu()
        sync()

    t_ours, t_peft = paired_medians(ours, theirs, a.repeats)
    rec.figure("promptbank window", t_ours * 1e3, "ms", decimals=1)
    rec.figure("PEFT window", t_peft * 1e3, "ms", decimals=1)
    rec.figure("speed-up promptbank / PEFT", t_peft / t_ours, "x", decimals=2, goal=">= 1.7")


def co_batched(w: BackboneWorker, rec: Record, a: argparse.Namespace) -> None:
    cfg = TrainConfig.from_dict({"max_steps": a.steps, "epochs": 100, "batch_size": 8, "prompt_kind": "input",
                                 "num_virtual_tokens": a.virtual_tokens, "eval_fraction": 0.1, "seed": 0})
    jobs = [TrainRequest(f"job{j}", TASK, cfg, [(t, TASK.labels[i % 2]) for i, t in enumerate(texts(96, 10 + j))])
            for j in range(a.jobs)]

    def together() -> None:
        list(w.train_group(jobs))
        sync()

    def alone() -> None:
        for j in jobs:
            list(w.train(j))
        sync()

    t_alone = median_time(alone, 1, warmup=1)
    t_together = median_time(together, 1, warmup=0)
    rec.figure("co-batched jobs", t_together, "s", decimals=2)
    rec.figure("jobs one after another", t_alone, "s", decimals=2)
    rec.figure("co-batching speed-up", t_alone / t_together, "x", decimals=2, goal=">= 1.5")


def generation(w: BackboneWorker, rec: Record, a: argparse.Namespace) -> None:
    prompts = {sha256_hex(b): b for b in (encode_prompt(torch.randn(a.virtual_tokens, w.bb.hidden_size) * 0.02)
                                          for _ in range(16))}
    keys = list(prompts)
    reqs = [GenerateRequest(keys[i % 16], prompts, t, max_new_tokens=a.new_tokens, request_id=f"r{i}")
            for i, t in enumerate(texts(a.requests, 3, 4, 20))]
    engine = w.engine()
    assert engine is not None
    counts: list[int] = []

    def run(r: GenerateRequest) -> None:
        counts.append(sum(p.generated_tokens for p in w.generate(r) if p.finish_reason))

    from workers.generate import generate

    for r in reqs[:2]:
        run(r)  # warm-up, prompts cached
    t = time.perf_counter()
    threads = [threading.Thread(target=run, args=(r,)) for r in reqs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sync()
    batched = sum(counts[2:]) / (time.perf_counter() - t)
    few = reqs[: max(2, a.requests // 8)]
    t = time.perf_counter()
    alone_tokens = sum(sum(p.generated_tokens for p in generate(w.bb, w._prompt(r.key, prompts), r.text,
                                                                 r.max_new_tokens) if p.finish_reason) for r in few)
    sync()
    alone = alone_tokens / (time.perf_counter() - t)
    rec.figure("continuously batched", batched, "tokens/s", decimals=1)
    rec.figure("one at a time", alone, "tokens/s", decimals=1)
    rec.figure("tokens/s batched / one at a time", batched / alone, "x", decimals=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(ap)
    ap.add_argument("--model", default="", help="a causal LM folder (default: build the 1B model here)")
    ap.add_argument("--dtype", default="auto", help="serving dtype (auto: bf16 on GPUs that have it)")
    ap.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (slow)")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--virtual-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not (a.quick or a.allow_cpu):
        print("bench/device.py measures a CUDA GPU and this machine has none (--quick: a pipeline check on the CPU; "
              "--allow-cpu: run anyway)", file=sys.stderr)
        sys.exit(2)
    if a.quick:
        a.rows, a.tasks, a.repeats, a.jobs, a.steps, a.requests, a.new_tokens = 16, 8, 1, 2, 2, 8, 4
    shape = LLAMA_TINY if a.quick else LLAMA_1B
    rec = Record("device", {k: v for k, v in vars(a).items() if k not in ("model",)} |
                 {"model": a.model or f"LlamaConfig({shape}) random, bf16"}, a.quick)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.model or causal_lm(Path(tmp) / "model", shape, "bf16", "cuda" if cuda else "cpu")
        t = time.perf_counter()
        w = BackboneWorker(path, dtype=a.dtype, generation=GenerationSettings(max_seqs=64))
        rec.figure("load time", time.perf_counter() - t, "s", decimals=1)
        params = sum(p.numel() for p in w.bb.model.parameters())
        rec.figure("parameters", params / 1e9, "B", decimals=3)
        rec.note(f"served in {w.bb.dtype} on {', '.join(str(d) for d in w.bb.placement.devices)}")
        print(f"{params / 1e9:.2f}B parameters in {w.bb.dtype} on {w.device}", flush=True)
        for part in (mixed_vs_single, co_batched, generation):
            part(w, rec, a)
            print(f"{part.__name__} done", flush=True)
        vs_peft(w, path, rec, a)  # last: it loads a second copy of the model for PEFT
        if cuda:
            rec.figure("peak GPU memory", torch.cuda.max_memory_allocated() / 2**30, "GiB", decimals=2)
    for f in rec.figures:
        print(f"{f['name']:>40}: {f['value']:.3f} {f['unit']}" + (f"  (goal {f['goal']['op']} {f['goal']['value']:g}, "
              f"{'met' if f['met'] else 'MISSED'})" if f["goal"] else ""))
    rec.write(a.json)


if __name__ == "__main__":
    main()
