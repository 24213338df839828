"""Quality side by side on one split: a 20-token prompt vs a probe vs full fine-tuning of the same backbone.

    python bench/quality.py [--train 3000] [--test 1000] [--seed 0] [--skip finetune,probe]

One split of the tweet corpus (positive vs negative; `tweet_tasks(seed)["sentiment"]`: the first `--train`
rows train, the next `--test` rows are held out) and the packaged all-MiniLM-L6-v2, measured in one run:

- majority   the train set's majority label predicted for every held-out row;
- zero-shot  the promptbank head with no prompt: cosine of the mean-pooled text to each label text;
- probe      logistic regression on the frozen mean-pooled, normalised embeddings (C picked on a 20% slice
             of train, then refit on all train rows; the held-out rows are never looked at);
- fine-tune  every weight of the same MiniLM trained on the same train rows (mean pooling + linear head,
             AdamW 5e-5 / head 1e-3, linear warmup+decay, 3 epochs, batch 32, dropout on);
- prompt     the product path with its defaults: `BackboneWorker.train(..., TrainConfig().to_dict())`,
             held-out rows scored by `BackboneWorker.classify` (the prompt is the whole adaptation).

Prints accuracy and wall time per row, the machine, and the gaps prompt - probe (goal >= 0) and
prompt - fine-tune (goal >= -0.01). `--prompt-config '{"epochs": 5}'` overrides TrainConfig fields for
experiments; the goal is about the defaults. `--curve` (research, not a result) also scores the held-out
rows with the (averaged) prompt of every evaluation, beside that evaluation's eval-split metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
import warnings
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as st_load
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from bank.codec import encode_prompt, sha256_hex
from coordinator.config import packaged_minilm
from promptbank.data import tweet_tasks
from workers.actor import BackboneWorker
from workers.heads import mean_pool
from workers.task import TrainConfig
from workers.train import debiased_average

LABELS = ["negative", "positive"]


def accuracy(pred: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def argmax_labels(logits: list[list[float]], labels: list[str]) -> list[str]:
    return [labels[max(range(len(row)), key=row.__getitem__)] for row in logits]


@torch.no_grad()
def embed(model: AutoModel, tok: AutoTokenizer, texts: list[str], bs: int = 128) -> np.ndarray:
    """Frozen sentence embeddings as sentence-transformers makes them: mean over real tokens, L2-normalised."""
    model.eval()
    out = []
    for i in range(0, len(texts), bs):
        enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**enc).last_hidden_state  # (B, T, H)
        out.append(F.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1))
    return torch.cat(out).numpy()


def probe(path: str, train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int) -> tuple[float, str]:
    model, tok = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    x_tr, x_te = embed(model, tok, [t for t, _ in train]), embed(model, tok, [t for t, _ in test])
    y_tr = np.array([LABELS.index(lab) for _, lab in train])
    idx = np.random.RandomState(seed).permutation(len(train))
    n_val = max(1, len(train) // 5)
    val, fit = idx[:n_val], idx[n_val:]
    scores = {}
    for c in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
        clf = LogisticRegression(C=c, max_iter=5000).fit(x_tr[fit], y_tr[fit])
        scores[c] = clf.score(x_tr[val], y_tr[val])
    best_c = max(scores, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    clf = LogisticRegression(C=best_c, max_iter=5000).fit(x_tr, y_tr)
    pred = [LABELS[k] for k in clf.predict(x_te)]
    return accuracy(pred, [lab for _, lab in test]), f"C={best_c:g} (val acc {scores[best_c]:.3f})"


class FineTuned(torch.nn.Module):
    def __init__(self, path: str, n_labels: int):
        super().__init__()
        self.body = AutoModel.from_pretrained(path)
        self.drop = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(self.body.config.hidden_size, n_labels)

    def forward(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.body(**enc).last_hidden_state  # (B, T, H)
        return self.head(self.drop(mean_pool(hidden, enc["attention_mask"])))  # (B, K)


def finetune(
    path: str, train: list[tuple[str, str]], test: list[tuple[str, str]], seed: int, epochs: int, lr: float, bs: int = 32
) -> tuple[float, str]:
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(path)
    net = FineTuned(path, len(LABELS))
    opt = torch.optim.AdamW(
        [{"params": net.body.parameters(), "lr": lr}, {"params": net.head.parameters(), "lr": 1e-3}], weight_decay=0.01
    )
    steps = math.ceil(len(train) / bs) * epochs
    warm = max(1, int(0.1 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / (steps - warm)))
    y = torch.tensor([LABELS.index(lab) for _, lab in train])
    rng = random.Random(seed)
    net.train()
    for _ in range(epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for b in range(0, len(order), bs):
            idx = order[b : b + bs]
            enc = tok([train[i][0] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            loss = F.cross_entropy(net(enc), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    pred = []
    with torch.no_grad():
        for b in range(0, len(test), 128):
            enc = tok([t for t, _ in test[b : b + 128]], padding=True, truncation=True, max_length=128, return_tensors="pt")
            pred += [LABELS[k] for k in net(enc).argmax(-1).tolist()]
    return accuracy(pred, [lab for _, lab in test]), f"{epochs} epochs, lr {lr:g}, {steps} steps"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ft-epochs", type=int, default=3)
    ap.add_argument("--ft-lr", type=float, default=5e-5)
    ap.add_argument("--prompt-config", default="{}", help="JSON overrides of TrainConfig fields (experiments only)")
    ap.add_argument("--label-texts", nargs="*", default=None, help="label texts of the task (default: the labels)")
    ap.add_argument("--curve", action="store_true", help="also score the held-out rows after every evaluation")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: zeroshot,probe,finetune,prompt")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}

    rows = tweet_tasks(seed=a.seed)["sentiment"]
    train, test = rows[: a.train], rows[a.train : a.train + a.test]
    gold = [lab for _, lab in test]
    path = packaged_minilm()
    task: dict = {"labels": LABELS}
    if a.label_texts:
        task["label_texts"] = list(a.label_texts)
    results: list[tuple[str, float, float, str]] = []  # name, accuracy, seconds, note

    def record(name: str, t0: float, acc: float, note: str) -> None:
        results.append((name, acc, time.perf_counter() - t0, note))
        print(f"  {name:<10} {acc:.4f}  {results[-1][2]:7.1f} s  {note}  (load {os.getloadavg()[0]:.2f})", flush=True)

    t0 = time.perf_counter()
    major = Counter(lab for _, lab in train).most_common(1)[0][0]
    record("majority", t0, accuracy([major] * len(test), gold), f"always {major!r}")

    worker = BackboneWorker(path)  # sets torch threads to the node's cores, as a replica does
    if "zeroshot" not in skip:
        t0 = time.perf_counter()
        # A worker of its own: label embeddings cached under classify's inference_mode must not reach the
        # training worker's autograd graph ("Inference tensors cannot be saved for backward").
        zs = BackboneWorker(path)
        blob = encode_prompt(torch.zeros(0, zs.bb.hidden_size))
        key = sha256_hex(blob)
        logits = zs.classify([(key, t) for t, _ in test], {key: blob}, {key: task})
        record("zero-shot", t0, accuracy(argmax_labels(logits, LABELS), gold), "no prompt, label-text similarity")
        del zs
    if "probe" not in skip:
        t0 = time.perf_counter()
        acc, note = probe(path, train, test, a.seed)
        record("probe", t0, acc, "logistic regression on frozen embeddings, " + note)
    if "finetune" not in skip:
        t0 = time.perf_counter()
        acc, note = finetune(path, train, test, a.seed, a.ft_epochs, a.ft_lr)
        record("fine-tune", t0, acc, "all weights, mean pool + linear head, " + note)
    if "prompt" not in skip:
        cfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **json.loads(a.prompt_config)})
        t0 = time.perf_counter()
        events = []
        for e in worker.train("bench-quality", task, train, cfg.to_dict()):
            events.append(e)
            if a.curve and e["kind"] == "CHECKPOINT" and len(events) > 1 and events[-2]["kind"] == "EVAL":
                ema = st_load(e["checkpoint"])["ema"]  # bias-corrected, as the evaluation scored it
                blob = encode_prompt(debiased_average(ema, cfg.ema_decay, e["step"]))
                key = sha256_hex(blob)
                acc = accuracy(argmax_labels(worker.classify([(key, t) for t, _ in test], {key: blob}, {key: task}),
                                             LABELS), gold)
                m = events[-2]["metrics"]
                print(f"  curve step {e['step']:5d}: eval-split acc {m['eval_accuracy']:.4f}"
                      f" loss {m['eval_loss']:.4f} ± {m['eval_loss_se']:.4f} | held-out acc {acc:.4f}", flush=True)
        result = events[-1]
        if result["kind"] != "RESULT":
            raise SystemExit(f"prompt training ended with {result['kind']}")
        t_train = time.perf_counter() - t0
        key = sha256_hex(result["prompt"])
        logits = worker.classify([(key, t) for t, _ in test], {key: result["prompt"]}, {key: task})
        m = result["metrics"]
        note = (f"{cfg.num_virtual_tokens} tokens, lr {cfg.learning_rate:g}, {cfg.epochs} epochs, init {cfg.init}; "
                f"train {t_train:.1f} s, {int(m['steps'])} steps, eval acc {m.get('eval_accuracy', float('nan')):.3f}")
        record("prompt", t0, accuracy(argmax_labels(logits, LABELS), gold), note)

    print()
    print(f"machine: {platform.platform()} {platform.processor() or platform.machine()}; "
          f"cpus={os.cpu_count()}; torch {torch.__version__} threads={torch.get_num_threads()}; "
          f"load avg now {os.getloadavg()[0]:.2f}")
    print(f"split: tweet sentiment (negative/positive), seed {a.seed}, {len(train)} train / {len(test)} held out; "
          f"backbone all-MiniLM-L6-v2 (packaged); task {task}")
    print(f"{'method':<10} {'accuracy':>8} {'wall s':>8}  note")
    for name, acc, sec, note in results:
        print(f"{name:<10} {acc:8.4f} {sec:8.1f}  {note}")
    acc = {name: v for name, v, _, _ in results}
    if "prompt" in acc:
        for other, goal in (("probe", 0.0), ("fine-tune", -0.01)):
            if other in acc:
                gap = acc["prompt"] - acc[other]
                verdict = "met" if gap >= goal - 1e-12 else "NOT met"
                print(f"gap prompt - {other:<9} {gap:+.4f}  (goal >= {goal:+.2f}: {verdict})")
        t_prompt = next(n for name, _, _, n in results if name == "prompt").split("train ")[1].split(" s")[0]
        print(f"prompt training time {t_prompt} s (goal < 600 s on 2 cores)")


if __name__ == "__main__":
    main()
