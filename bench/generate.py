"""Generation at serving scale: continuous batching across tasks and prompt kinds vs one sequence at a time, vs
PEFT per task, vs one batched HF generate with no prompt.

    python bench/generate.py [--requests 64] [--tasks 16] [--new-tokens 64] [--rounds 3] [--json PATH] [--quick]

A GPT-2-small-shaped causal LM (GPT2Config(): 12 layers, 768 wide, 50,257 tokens; random weights, saved to a
temp dir; the packaged WordPiece vocabulary padded with extra tokens to GPT-2's size, and no EOS, so every
request generates all its tokens). `--requests` concurrent requests over `--tasks` tasks (half deep prompts,
half input prompts, 20 positions each), texts of 16-64 tokens, `--new-tokens` new tokens each, greedy:
  (a) promptbank with continuous batching, through the server (gRPC -> coordinator -> Ray replica);
  (b) the same server with `--generate-batching off` (one sequence at a time per call);
  (c) PEFT in process: per task, set_adapter then one batched HF generate of that task's requests;
  (d) the ceiling: one batched HF generate of all texts with no prompt, in process.
Sides run in rotating order, round after round, on one machine; each round's tokens/s ratios (a)/(b), (a)/(c),
(a)/(d) are reported as the median and spread (min-max) over rounds. Goals on 2 CPU cores: >= 4, >= 1.5, >= 0.7.
Time to first token counts from the window's start (all requests sent at once); inter-token latency is the gap
between a request's consecutive pieces (in process: between decode steps).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import grpc
import torch
from _record import Record, add_flags
from _serve import coordinator_process
from _timing import percentile
from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from bank.codec import encode_prompt
from bank.peft_format import export_peft
from coordinator.config import packaged_minilm
from promptbank import Client
from promptbank_api.v1 import inference_pb2 as inf
from promptbank_api.v1 import inference_pb2_grpc as inf_grpc
from promptbank_kinds import DEEP

LABELS = ["negative", "positive"]
Timing = tuple[float, list[float], list[float]]  # (window seconds, each request's TTFT, every inter-token gap)


def build(tmp: Path, quick: bool) -> tuple[str, GPT2Config]:
    """The backbone, saved with a tokenizer whose vocabulary matches its embedding rows."""
    tok = AutoTokenizer.from_pretrained(packaged_minilm())
    none = {"bos_token_id": None, "eos_token_id": None}  # the tokenizer has no EOS: every request runs to its length
    cfg = (GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=256, vocab_size=len(tok), **none) if quick
           else GPT2Config(**none))
    if len(tok) < cfg.vocab_size:
        tok.add_tokens([f"<x{i}>" for i in range(cfg.vocab_size - len(tok))])
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    return str(tmp / "model"), cfg


def texts_of(n: int, lo: int, hi: int) -> list[str]:
    tok = AutoTokenizer.from_pretrained(packaged_minilm())
    words = [w for w in tok.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        k = int(torch.randint(lo, hi + 1, (1,), generator=g)) - 2  # [CLS] and [SEP] count
        out.append(" ".join(words[int(i)] for i in torch.randint(len(words), (k,), generator=g)))
    return out


def prompts_of(cfg: GPT2Config, tasks: int, positions: int) -> list[torch.Tensor]:
    """Task t < tasks/2: a deep prompt (P, layers x 2 x width); else an input prompt (P, width)."""
    g = torch.Generator().manual_seed(1)
    deep = [torch.randn(positions, cfg.n_layer * 2 * cfg.n_embd, generator=g) * 0.5 for _ in range(tasks // 2)]
    flat = [torch.randn(positions, cfg.n_embd, generator=g) * 0.5 for _ in range(tasks - tasks // 2)]
    return deep + flat


def import_all(client: Client, path: str, cfg: GPT2Config, prompts: list[torch.Tensor]) -> None:
    for t, p in enumerate(prompts):
        deep = p.shape[1] != cfg.n_embd
        blob = encode_prompt(p, kind=DEEP) if deep else encode_prompt(p)
        conf, weights = export_peft(blob, base_model=path, revision="", architecture="causal_lm",
                                    num_virtual_tokens=p.shape[0], token_dim=cfg.n_embd, task={"labels": LABELS},
                                    extra=None, num_layers=cfg.n_layer if deep else 0,
                                    num_attention_heads=cfg.n_head if deep else 0)
        client.import_version(f"task{t}", "lm", conf, weights, labels=LABELS)


async def served(address: str, texts: list[str], tasks: int, new: int) -> Timing:
    """All requests at once over one channel; TTFT and gaps from each stream's pieces."""
    async with grpc.aio.insecure_channel(address) as ch:
        stub = inf_grpc.InferenceStub(ch)
        t0 = time.perf_counter()
        ttft: list[float] = []
        gaps: list[float] = []

        async def one(i: int, text: str) -> None:
            last = None
            async for r in stub.Generate(inf.GenerateRequest(prompt=f"task{i % tasks}", text=text,
                                                             max_new_tokens=new), timeout=3600):
                now = time.perf_counter()
                if r.text:
                    if last is None:
                        ttft.append(now - t0)
                    else:
                        gaps.append(now - last)
                    last = now

        await asyncio.gather(*[one(i, x) for i, x in enumerate(texts)])
        return time.perf_counter() - t0, ttft, gaps


class Steps:
    """An HF streamer that only notes when each step's new tokens come (not the prompt's call)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        if value.dim() == 1 or value.shape[-1] == 1:
            self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def hf_generate(model: torch.nn.Module, tok: object, texts: list[str], new: int, t0: float,
                prompt: torch.Tensor | None = None) -> tuple[float, list[float]]:
    """One batched greedy HF generate (left-padded); returns (first token time from t0, step gaps). `prompt`:
    PEFT prompt tuning's computation, the prompt's vectors before every row's embeddings (PEFT 0.21's own
    generate re-injects them at every step under transformers 5, which renamed `past_key_values` to `cache`)."""
    enc = tok(texts, return_tensors="pt", padding=True)  # type: ignore[operator]
    steps = Steps()
    kw: dict[str, object] = dict(enc)
    if prompt is not None:
        ids, mask = enc["input_ids"], enc["attention_mask"]
        embeds = model.get_input_embeddings()(ids)  # type: ignore[operator]
        kw = {"inputs_embeds": torch.cat([prompt.expand(len(ids), -1, -1), embeds], dim=1),
              "attention_mask": torch.cat([torch.ones(len(ids), prompt.shape[0], dtype=mask.dtype), mask], dim=1)}
    with torch.inference_mode():
        model.generate(**kw, max_new_tokens=new, min_new_tokens=new, do_sample=False, streamer=steps,
                       pad_token_id=tok.pad_token_id, eos_token_id=None)  # type: ignore[attr-defined]
    return steps.times[0] - t0, [b - a for a, b in zip(steps.times, steps.times[1:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--virtual-tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    add_flags(ap)
    a = ap.parse_args()
    lo, hi = 16, 64
    if a.quick:
        a.requests, a.tasks, a.new_tokens, a.virtual_tokens, a.rounds, lo, hi = 8, 4, 8, 4, 1, 8, 16
    rec = Record("generate", vars(a), a.quick)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        path, cfg = build(tmp, a.quick)
        texts = texts_of(a.requests, lo, hi)
        prompts = prompts_of(cfg, a.tasks, a.virtual_tokens)
        by_task = [[i for i in range(a.requests) if i % a.tasks == t] for t in range(a.tasks)]

        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        base = GPT2LMHeadModel.from_pretrained(path).eval()
        plain = GPT2LMHeadModel.from_pretrained(path).eval()
        half = a.tasks // 2
        kv = cfg.n_embd
        pt_cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=a.virtual_tokens)
        px_cfg = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=a.virtual_tokens, token_dim=kv,
                                    num_layers=cfg.n_layer, num_attention_heads=cfg.n_head)
        deep_base = GPT2LMHeadModel.from_pretrained(path).eval()
        px = get_peft_model(deep_base, px_cfg, adapter_name="t0")
        pt = get_peft_model(base, pt_cfg, adapter_name=f"t{half}")
        with torch.no_grad():
            for t in range(a.tasks):
                if t < half:
                    if t:
                        px.add_adapter(f"t{t}", px_cfg)
                    px.prompt_encoder[f"t{t}"].embedding.weight.copy_(prompts[t].reshape(a.virtual_tokens, -1))
                else:
                    if t > half:
                        pt.add_adapter(f"t{t}", pt_cfg)
                    pt.prompt_encoder[f"t{t}"].embedding.weight.copy_(prompts[t])

        def peft_side() -> Timing:
            t0 = time.perf_counter()
            ttft, gaps = [], []
            for t in range(a.tasks):
                group = [texts[i] for i in by_task[t]]
                if t < half:  # prefix tuning: PEFT's own generate
                    px.set_adapter(f"t{t}")
                    first, g = hf_generate(px, tok, group, a.new_tokens, t0)
                else:  # prompt tuning: the adapter's prompt, as PEFT's generate would put it (see hf_generate)
                    pt.set_adapter(f"t{t}")
                    with torch.no_grad():
                        prompt = pt.get_prompt(batch_size=1)[0]
                    first, g = hf_generate(pt.get_base_model(), tok, group, a.new_tokens, t0, prompt)
                ttft += [first] * len(by_task[t])
                gaps += g * len(by_task[t])
            return time.perf_counter() - t0, ttft, gaps

        def ceiling_side() -> Timing:
            t0 = time.perf_counter()
            first, g = hf_generate(plain, tok, texts, a.new_tokens, t0)
            return time.perf_counter() - t0, [first] * len(texts), g * len(texts)

        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        common = ("--backbone", f"lm={path}", "--http-port", "0")
        with coordinator_process(tmp / "a", *common) as (addr_a, _), \
                coordinator_process(tmp / "b", *common, "--generate-batching", "off") as (addr_b, _):
            for addr in (addr_a, addr_b):
                with Client(addr, timeout=300) as c:
                    import_all(c, path, cfg, prompts)
            sides = {
                "a": lambda: asyncio.run(served(addr_a, texts, a.tasks, a.new_tokens)),
                "b": lambda: asyncio.run(served(addr_b, texts, a.tasks, a.new_tokens)),
                "c": peft_side,
                "d": ceiling_side,
            }
            # warm-up: every side once on a few requests (the servers load prompts, torch picks kernels)
            asyncio.run(served(addr_a, texts[: a.tasks], a.tasks, 4))
            asyncio.run(served(addr_b, texts[: a.tasks], a.tasks, 4))
            hf_generate(plain, tok, texts[:4], 4, time.perf_counter())
            px.set_adapter("t0")
            hf_generate(px, tok, texts[:2], 2, time.perf_counter())
            runs: dict[str, list[Timing]] = {k: [] for k in sides}
            order = list(sides)
            for r in range(a.rounds):
                turn = order[r % 4:] + order[: r % 4]
                for k in turn:
                    runs[k].append(sides[k]())
                    print(f"round {r + 1} {k}: {a.requests * a.new_tokens / runs[k][-1][0]:8.1f} tokens/s", flush=True)

    names = {"a": "(a) promptbank, continuous batching", "b": "(b) promptbank, batching off",
             "c": "(c) PEFT set_adapter + batched generate per task", "d": "(d) one batched HF generate, no prompt"}
    tokens = a.requests * a.new_tokens
    for k, label in names.items():
        tps = statistics.median(tokens / w for w, _, _ in runs[k])
        ttft = [x for _, t, _ in runs[k] for x in t]
        gaps = [x for _, _, g in runs[k] for x in g]
        print(f"{label:<52} {tps:8.1f} tok/s  TTFT p50 {percentile(ttft, .5) * 1e3:8.0f} ms p99 "
              f"{percentile(ttft, .99) * 1e3:8.0f} ms  inter-token p50 {percentile(gaps, .5) * 1e3:7.1f} ms p99 "
              f"{percentile(gaps, .99) * 1e3:7.1f} ms")
        rec.figure(f"{label}: tokens/s", tps, "tokens/s", decimals=1)
        rec.figure(f"{label}: TTFT p50", percentile(ttft, .5) * 1e3, "ms", decimals=0)
        rec.figure(f"{label}: TTFT p99", percentile(ttft, .99) * 1e3, "ms", decimals=0)
        rec.figure(f"{label}: inter-token p50", percentile(gaps, .5) * 1e3, "ms", decimals=1)
        rec.figure(f"{label}: inter-token p99", percentile(gaps, .99) * 1e3, "ms", decimals=1)
    for k, goal in (("b", 4.0), ("c", 1.5), ("d", 0.7)):
        ratios = [runs[k][r][0] / runs["a"][r][0] for r in range(a.rounds)]  # tokens/s (a) / (k), same round
        med = statistics.median(ratios)
        print(f"tokens/s (a)/({k}): median {med:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, {a.rounds} rounds; "
              f"goal >= {goal:g})")
        rec.figure(f"tokens/s (a)/({k}), median over rounds", med, "x", decimals=2, goal=f">= {goal:g}")
        rec.figure(f"tokens/s (a)/({k}), lowest round", min(ratios), "x", decimals=2)
    rec.note(f"{a.requests} requests over {a.tasks} tasks ({a.tasks // 2} deep, {a.tasks - a.tasks // 2} input prompts "
             f"of {a.virtual_tokens} positions), texts of {lo}-{hi} tokens, {a.new_tokens} new tokens each, greedy; "
             f"{'quick: a 2-layer 64-wide GPT-2' if a.quick else 'GPT2Config() (124M parameters), random weights'}; "
             f"{a.rounds} rounds, sides in rotating order")
    rec.note("(c): deep tasks through PEFT's own generate (PREFIX_TUNING); input-prompt tasks through HF generate "
             "with the adapter's prompt vectors before the embeddings (PEFT 0.21's generate re-injects a "
             "PROMPT_TUNING prompt at every step under transformers 5, so its own generate is not used there)")
    rec.write(a.json)


if __name__ == "__main__":
    main()
