"""Mixed-task vs single-task batches, a prompted forward vs the bare backbone, and what deep prompts cost to
serve, side by side in one run.

    python bench/mixed_batch.py [--rows 64] [--tasks 8] [--repeats 15] [--json PATH] [--quick]

Prints median seconds per batch and the ratios (goals: mixed/single throughput >= 0.97; prompted/bare
time <= 1.03 on the same token count; a batch mixing `--tasks` deep prompts / the same rows with no prompt,
throughput >= 0.9). Also the bytes of one stored version of each kind. Real model: the packaged
all-MiniLM-L6-v2; real text: tweets.
"""

from __future__ import annotations

import argparse
import platform

import torch
from _record import Record, add_flags
from _timing import paired_medians

from bank.codec import encode_prompt, sha256_hex
from coordinator.config import packaged_minilm
from promptbank.data import tweet_tasks
from promptbank_domain.task import TaskSpec
from promptbank_kinds import DEEP
from workers.actor import BackboneWorker
from workers.heads import mean_pool
from workers.protocol import ClassifyBatch
from workers.soft_prompt import build_batch, tokenize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--virtual-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=15)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.rows, a.tasks, a.repeats = 8, 2, 2
    rec = Record("mixed_batch", vars(a), a.quick)

    w = BackboneWorker(packaged_minilm())
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][: a.rows]]
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randn(a.virtual_tokens, w.bb.hidden_size, generator=g) * 0.5 for _ in range(a.tasks)]
    blobs = {sha256_hex(b): b for b in (encode_prompt(p) for p in prompts)}
    keys = list(blobs)
    task = TaskSpec(labels=("negative", "positive"))
    tasks = dict.fromkeys(keys, task)

    mixed_rows = [(keys[i % a.tasks], t) for i, t in enumerate(texts)]
    single_rows = [(keys[0], t) for t in texts]
    w.classify(ClassifyBatch(mixed_rows, blobs, tasks))  # warm the prompt cache: both runs use cached prompts

    def batch(rows: list[tuple[str, str]], prompts: dict[str, bytes], tasks: dict[str, TaskSpec]) -> ClassifyBatch:
        """Up to all rows per forward: same texts, so the same length groups (forwards) in both runs."""
        return ClassifyBatch(rows, prompts, tasks, max_rows=a.rows)

    t_mixed, t_single = paired_medians(lambda: w.classify(batch(mixed_rows, blobs, tasks)),
                                       lambda: w.classify(batch(single_rows, blobs, tasks)), a.repeats)

    # Prompted forward (n virtual + T tokens) vs the bare backbone on n + T real tokens: same positions.
    ids = tokenize(w.bb, texts, 128)
    cached = [w.cache.get(k) for k in keys]
    pad = w.bb.tokenizer.convert_tokens_to_ids("the")
    bare_ids = [row[:1] + [pad] * a.virtual_tokens + row[1:] for row in ids]
    row_tasks = [task] * len(ids)

    def prompted() -> None:
        with torch.inference_mode():
            w.heads.features(build_batch(w.bb, ids, [cached[i % a.tasks] for i in range(len(ids))]), row_tasks)

    def bare() -> None:
        with torch.inference_mode():
            enc = w.bb.tokenizer.pad({"input_ids": bare_ids}, return_tensors="pt")
            out = w.bb.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            torch.nn.functional.normalize(mean_pool(out, enc["attention_mask"]), dim=-1)

    t_prompted, t_bare = paired_medians(prompted, bare, a.repeats)

    # Deep prompts: a batch mixing `tasks` deep prompts vs the same rows with no prompt at all, both through
    # the replica's classify path (cached prompts, the same length groups).
    assert w.bb.deep is not None
    deep_blobs = [encode_prompt(torch.randn(a.virtual_tokens, w.bb.deep.width, generator=g) * 0.5, kind=DEEP)
                  for _ in range(a.tasks)]
    none = encode_prompt(torch.zeros(0, w.bb.hidden_size))
    served = {sha256_hex(b): b for b in [*deep_blobs, none]}
    deep_keys, none_key = [sha256_hex(b) for b in deep_blobs], sha256_hex(none)
    deep_rows = [(deep_keys[i % a.tasks], t) for i, t in enumerate(texts)]
    bare_rows = [(none_key, t) for t in texts]
    served_tasks = dict.fromkeys(served, task)
    w.classify(batch(deep_rows + bare_rows[:1], served, served_tasks))  # cache them
    t_deep, t_none = paired_medians(lambda: w.classify(batch(deep_rows, served, served_tasks)),
                                    lambda: w.classify(batch(bare_rows, served, served_tasks)), a.repeats)

    rec.settings["device"] = str(w.device)
    print(f"machine: {platform.machine()} {platform.processor() or ''} torch threads={torch.get_num_threads()} "
          f"device={w.device}; model all-MiniLM-L6-v2; {a.rows} rows, {a.tasks} tasks, {a.virtual_tokens} virtual tokens")
    print(f"single-task batch  {t_single * 1e3:8.1f} ms  ({a.rows / t_single:7.1f} rows/s)")
    print(f"mixed-task batch   {t_mixed * 1e3:8.1f} ms  ({a.rows / t_mixed:7.1f} rows/s)")
    print(f"  mixed/single throughput ratio: {t_single / t_mixed:.3f}  (goal >= 0.97)")
    print(f"bare backbone      {t_bare * 1e3:8.1f} ms")
    print(f"prompted forward   {t_prompted * 1e3:8.1f} ms")
    print(f"  prompted/bare time ratio: {t_prompted / t_bare:.3f}  (goal <= 1.03)")
    print(f"no prompt          {t_none * 1e3:8.1f} ms  ({a.rows / t_none:7.1f} rows/s)")
    print(f"mixed deep prompts {t_deep * 1e3:8.1f} ms  ({a.rows / t_deep:7.1f} rows/s)")
    print(f"  mixed deep / no prompt throughput ratio: {t_none / t_deep:.3f}  (goal >= 0.9); "
          f"mixed input prompts / no prompt: {t_none / t_mixed:.3f}")
    print(f"bytes per version: input {len(next(iter(blobs.values())))}, deep {len(deep_blobs[0])}")
    rec.figure("single-task batch", t_single * 1e3, "ms", decimals=1)
    rec.figure("single-task throughput", a.rows / t_single, "rows/s", decimals=1)
    rec.figure("mixed-task batch", t_mixed * 1e3, "ms", decimals=1)
    rec.figure("mixed-task throughput", a.rows / t_mixed, "rows/s", decimals=1)
    rec.figure("mixed/single throughput ratio", t_single / t_mixed, decimals=3, goal=">= 0.97")
    rec.figure("bare backbone forward", t_bare * 1e3, "ms", decimals=1)
    rec.figure("prompted forward", t_prompted * 1e3, "ms", decimals=1)
    rec.figure("prompted/bare time ratio", t_prompted / t_bare, decimals=3, goal="<= 1.03")
    rec.figure("no-prompt throughput", a.rows / t_none, "rows/s", decimals=1)
    rec.figure("mixed deep-prompt throughput", a.rows / t_deep, "rows/s", decimals=1)
    rec.figure("mixed deep / no prompt throughput ratio", t_none / t_deep, decimals=3, goal=">= 0.9")
    rec.figure("mixed input / no prompt throughput ratio", t_none / t_mixed, decimals=3)
    rec.figure("bytes per input-prompt version", len(next(iter(blobs.values()))), "B", decimals=0)
    rec.figure("bytes per deep-prompt version", len(deep_blobs[0]), "B", decimals=0)
    rec.note(f"median of {a.repeats} timed runs of each side after 2 warm-up runs, the two sides of each ratio "
             f"timed in alternating rounds; {a.rows} tweets, {a.tasks} random "
             f"{a.virtual_tokens}-token prompts; prompted vs bare on the same token count")
    rec.write(a.json)


if __name__ == "__main__":
    main()
