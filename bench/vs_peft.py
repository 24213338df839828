"""A 64-request window over 64 tasks: promptbank (mixed-task batches) vs PEFT prompt-tuning adapters.

    python bench/vs_peft.py [--tasks 64] [--repeats 5] [--json PATH] [--quick]

PEFT applies one prompt to a whole batch, so a window of requests for 64 different tasks costs it one
`set_adapter` + forward per task group; promptbank runs the same rows as mixed-task batches. Both use the
packaged all-MiniLM-L6-v2, 20-token prompts, mean-pooled text embeddings scored against label texts.
Prints median seconds per window and the speed-up (goal >= 1.7x on CPU).
"""

from __future__ import annotations

import argparse
import platform
import warnings

import torch
from _record import Record, add_flags
from _timing import median_time
from peft import PromptTuningConfig, TaskType, get_peft_model
from transformers import AutoModel

from bank.codec import encode_prompt, sha256_hex
from coordinator.config import packaged_minilm
from promptbank.data import tweet_tasks
from promptbank_domain.task import TaskSpec
from workers.actor import BackboneWorker
from workers.heads import SIMILARITY_SCALE, mean_pool
from workers.protocol import ClassifyBatch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--virtual-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    add_flags(ap)
    a = ap.parse_args()
    if a.quick:
        a.tasks, a.repeats = 4, 2
    rec = Record("vs_peft", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    path = packaged_minilm()
    texts = [t for t, _ in tweet_tasks(seed=0)["sentiment"][: a.tasks]]
    g = torch.Generator().manual_seed(0)
    w = BackboneWorker(path)
    prompts = [torch.randn(a.virtual_tokens, w.bb.hidden_size, generator=g) * 0.5 for _ in range(a.tasks)]
    blobs = [encode_prompt(p) for p in prompts]
    keys = [sha256_hex(b) for b in blobs]
    task = TaskSpec(labels=("negative", "positive"))
    rows = [(keys[i], texts[i]) for i in range(a.tasks)]  # request i is for task i
    w.classify(ClassifyBatch(rows, dict(zip(keys, blobs, strict=True)), dict.fromkeys(keys, task)))  # prompts cached

    # PEFT: one adapter per task on the same frozen backbone.
    base = AutoModel.from_pretrained(path)
    cfg = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=a.virtual_tokens)
    peft = get_peft_model(base, cfg, adapter_name="t0")
    for i in range(1, a.tasks):
        peft.add_adapter(f"t{i}", cfg)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            peft.prompt_encoder[f"t{i}"].embedding.weight.copy_(p)
    peft.eval()
    tok = w.bb.tokenizer
    labels = w.heads.labels_for(task)

    def run_peft() -> list[torch.Tensor]:
        out = []
        with torch.inference_mode():
            for i, text in enumerate(texts):  # one task group per request in this window
                peft.set_adapter(f"t{i}")
                enc = tok([text], return_tensors="pt")
                hidden = peft(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                pooled = mean_pool(hidden[:, a.virtual_tokens :], enc["attention_mask"])  # text positions only
                out.append(SIMILARITY_SCALE * torch.nn.functional.normalize(pooled, dim=-1) @ labels.T)
        return out

    def run_promptbank() -> list[list[float]]:
        return w.classify(ClassifyBatch(rows, {}, dict.fromkeys(keys, task)))

    t_peft = median_time(run_peft, a.repeats)
    t_pb = median_time(run_promptbank, a.repeats)
    print(f"machine: {platform.machine()} {platform.system()} cpus={torch.get_num_threads()} threads; "
          f"model all-MiniLM-L6-v2; {a.tasks} requests x 1 row over {a.tasks} tasks; {a.virtual_tokens} virtual tokens")
    print(f"PEFT (set_adapter + forward per task)  {t_peft * 1e3:8.1f} ms/window  ({a.tasks / t_peft:6.1f} req/s)")
    print(f"promptbank (mixed-task batches)        {t_pb * 1e3:8.1f} ms/window  ({a.tasks / t_pb:6.1f} req/s)")
    print(f"  speed-up promptbank / PEFT: {t_peft / t_pb:.2f}x  (goal >= 1.7x)")
    rec.figure("PEFT window (set_adapter + forward per task)", t_peft * 1e3, "ms", decimals=1)
    rec.figure("PEFT throughput", a.tasks / t_peft, "req/s", decimals=1)
    rec.figure("promptbank window (mixed-task batches)", t_pb * 1e3, "ms", decimals=1)
    rec.figure("promptbank throughput", a.tasks / t_pb, "req/s", decimals=1)
    rec.figure("speed-up promptbank / PEFT", t_peft / t_pb, "x", decimals=2, goal=">= 1.7")
    rec.note(f"{a.tasks} requests x 1 row over {a.tasks} tasks, {a.virtual_tokens}-token prompts; "
             f"median of {a.repeats} windows after 2 warm-up windows; device {w.device}")
    rec.write(a.json)


if __name__ == "__main__":
    main()
