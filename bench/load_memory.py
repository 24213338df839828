"""Peak memory of a replica loading its backbone in half precision: weights read straight into bf16.

    python bench/load_memory.py [--json PATH] [--quick]

A GPT-2-small-shaped causal LM (`GPT2Config()`, 124M parameters, random weights, no download) is saved with
safetensors twice: in bf16 (what a half-precision deployment ships) and in fp32. Each load runs in a fresh child
process, as a replica does: import torch, transformers and the worker, reset the kernel's resident-set high-water
mark (/proc/self/clear_refs), note the resident set (the baseline), build `FrozenBackbone(path, dtype="bf16")`,
then read the high-water mark (VmHWM). Figure: (peak - baseline) / bf16 weight bytes. Goal <= 1.3 for the bf16
checkpoint: the weights are memory-mapped and land once, with no fp32 copy. The fp32 checkpoint is printed
beside it without a goal: its mapped fp32 pages are resident while each tensor is converted (file-backed page
cache, returned when the file is closed), so its peak counts the file too; and the same bf16 load is also shown
in fp32 for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _record import Record, add_flags  # noqa: E402


def _status(field: str) -> int:
    """A /proc/self/status size in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(path: str, dtype: str) -> None:
    """One load in this fresh process; prints one JSON line."""
    import torch

    from workers.backbone import FrozenBackbone

    torch.set_num_threads(2)
    try:  # "5" resets the peak resident set to the current one (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    base = _status("VmRSS")
    t = time.perf_counter()
    bb = FrozenBackbone(path, dtype=dtype)
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    weights = sum(p.numel() * p.element_size() for p in bb.model.parameters())
    params = sum(p.numel() for p in bb.model.parameters())
    print(json.dumps({"baseline": base, "peak": peak, "after": _status("VmRSS"), "weights": weights,
                      "params": params, "seconds": seconds, "reset": reset, "dtype": bb.dtype}))


def build(folder: Path, quick: bool) -> dict[str, str]:
    """The model saved in bf16 and in fp32, with a tokenizer that needs no download (the packaged MiniLM's)."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from coordinator.config import packaged_minilm

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=2) if quick else GPT2Config()
    model = GPT2LMHeadModel(cfg)
    tok = AutoTokenizer.from_pretrained(packaged_minilm())
    out = {}
    for dtype, torch_dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        d = folder / dtype
        model.to(torch_dtype).save_pretrained(d)  # safetensors
        tok.save_pretrained(d)
        out[dtype] = str(d)
    return out


def measure(path: str, dtype: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", path, "--dtype", dtype], capture_output=True,
                         text=True, env=env, timeout=600, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flags(ap)
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="bf16", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.dtype)
        return
    rec = Record("load_memory", {"model": "GPT2Config()" if not a.quick else "GPT2Config(n_layer=2, n_embd=64)",
                                 "serving_dtype": "bf16"}, a.quick)
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(Path(tmp), a.quick)
        runs = {"bf16 checkpoint": measure(paths["bf16"], "bf16"), "fp32 checkpoint": measure(paths["fp32"], "bf16"),
                "fp32 serving": measure(paths["fp32"], "fp32")}
    weights = runs["bf16 checkpoint"]["weights"]
    print(f"model: {runs['bf16 checkpoint']['params'] / 1e6:.1f}M parameters, {weights / 2**20:.1f} MiB in bf16")
    for name, r in runs.items():
        above = r["peak"] - r["baseline"]
        print(f"{name:>16} -> {r['dtype']}: baseline {r['baseline'] / 2**20:.0f} MiB, peak +{above / 2**20:.0f} MiB "
              f"({above / weights:.2f}x bf16 weights), after +{(r['after'] - r['baseline']) / 2**20:.0f} MiB, "
              f"{r['seconds']:.1f} s{'' if r['reset'] else ' (peak not reset: includes imports)'}")
    b = runs["bf16 checkpoint"]
    rec.figure("bf16 weights", weights / 2**20, "MiB", decimals=1)
    rec.figure("peak RSS above baseline, bf16 checkpoint -> bf16", (b["peak"] - b["baseline"]) / weights, "x weights",
               decimals=2, goal="<= 1.3")
    f = runs["fp32 checkpoint"]
    rec.figure("peak RSS above baseline, fp32 checkpoint -> bf16", (f["peak"] - f["baseline"]) / weights, "x weights",
               decimals=2)
    s = runs["fp32 serving"]
    rec.figure("peak RSS above baseline, fp32 checkpoint -> fp32", (s["peak"] - s["baseline"]) / weights, "x weights",
               decimals=2)
    rec.figure("load time, bf16 checkpoint -> bf16", b["seconds"], "s", decimals=1)
    rec.note("Each load in a fresh process: baseline = resident set after importing torch, transformers and the "
             "worker; peak = VmHWM after FrozenBackbone(path, dtype) (high-water mark reset before loading).")
    rec.note("An fp32 checkpoint's memory-mapped pages count while they are converted (file-backed, returned when "
             "the file closes): ship half-precision checkpoints for half-precision serving.")
    rec.details = {name: r for name, r in runs.items()}
    rec.write(a.json)


if __name__ == "__main__":
    main()
