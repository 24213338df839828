"""A backbone's serving precision: the names the flags, the API and the replicas share (no torch here).

`auto` is resolved where the weights land: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPUs (where
fp32 is the fastest path that keeps mixed batches exact to 1e-5). A prompt version pins the checkpoint, never
the serving dtype: prompts stay fp32 in the bank and are cast at the forward.
"""

from __future__ import annotations

SERVING_DTYPES = ("auto", "bf16", "fp16", "fp32")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def check_dtype(name: str, what: str = "--dtype") -> str:
    """A serving dtype's name ("" reads as "auto"); ValueError naming the value otherwise."""
    name = (name or "auto").strip().lower()
    if name not in SERVING_DTYPES:
        raise ValueError(f"{what} {name!r} must be one of {list(SERVING_DTYPES)}")
    return name


def resolve_dtype(name: str, on_gpu: bool, gpu_has_bf16: bool = True) -> str:
    """`auto` made concrete for where the weights go; any other name stays."""
    name = check_dtype(name)
    if name != "auto":
        return name
    if not on_gpu:
        return "fp32"
    return "bf16" if gpu_has_bf16 else "fp16"


# Tolerance of a row's scores (logits) between a mixed batch and the row alone, per serving dtype, as
# (atol, rtol): |mixed - alone| <= atol + rtol * |alone|; labels must be identical. fp32 kernels are
# batch-invariant on AVX2 up to summation order; half precision rounds every activation to 8 (bf16) or 11
# (fp16) mantissa bits, so a padded or co-batched row may move by a unit or two in the last place of its
# logits: rtol is two units of the dtype (2^-6 for bf16, 2^-9 for fp16), atol covers logits near zero
# (docs/configuration.md, "Large backbones", has what was measured).
MIXED_BATCH_TOL = {"fp32": (1e-5, 1e-5), "bf16": (5e-2, 2**-6), "fp16": (1e-2, 2**-9)}
