"""Where a replica's weights go and in which dtype: the CPU, its one GPU, or spread over the GPUs Ray gave it.

With N > 1 visible GPUs the backbone is cut by layers over them (accelerate's device map, each GPU holding at
most its free memory less the headroom workers/weights.py states); activations cross at layer boundaries,
each self-attention layer reads its deep prefix and keeps its generation cache on its own device. Before
loading, a GPU replica compares the checkpoint's footprint with its devices' free memory and refuses at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from promptbank_api.errors import FailedPrecondition
from promptbank_domain.precision import check_dtype, resolve_dtype
from workers.weights import ACTIVATION_SHARE, RUNTIME_BYTES, footprint, gib

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


@dataclass(frozen=True)
class Placement:
    """The serving dtype and the devices of one replica; `device_map` is what `from_pretrained` takes."""

    dtype: str  # "bf16" | "fp16" | "fp32" (`auto` resolved)
    devices: tuple[torch.device, ...]  # the first holds the embeddings: the replica's input device
    max_memory: dict[int | str, int] = field(default_factory=dict)  # per GPU index, when split

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    @property
    def device(self) -> torch.device:
        return self.devices[0]

    @property
    def device_map(self) -> str | dict[str, int | str] | None:
        if self.device.type == "cpu":
            return None  # transformers loads on the CPU, straight from the memory-mapped safetensors
        if len(self.devices) == 1:
            return {"": self.device.index or 0}
        return "auto"


def plan(dtype: str = "auto", model: str = "", revision: str = "", cached_tokens: int = 0) -> Placement:
    """Pick the devices this process sees (Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs) and resolve
    `dtype`. On GPUs, FAILED_PRECONDITION now when the checkpoint's footprint exceeds their free memory."""
    check_dtype(dtype)
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        return Placement(resolve_dtype(dtype, on_gpu=False), (torch.device("cpu"),))
    name = resolve_dtype(dtype, on_gpu=True, gpu_has_bf16=bool(torch.cuda.is_bf16_supported()))
    devices = tuple(torch.device("cuda", i) for i in range(n))
    free = [torch.cuda.mem_get_info(i)[0] for i in range(n)]
    need = footprint(model, name, cached_tokens, revision) if model else None
    if need is not None and need.total > sum(free):
        raise FailedPrecondition(
            f"backbone {model!r} needs {need.describe()}; this replica's {n} GPU(s) have "
            f"{', '.join(gib(f) for f in free)} free. Give it more GPUs (--worker-gpus), or serve a smaller dtype")
    if n == 1:
        return Placement(name, devices)
    # Each GPU holds weights up to its free memory less its share of the headroom (activations, runtime, cache).
    share = 1.0 / (1.0 + ACTIVATION_SHARE)
    kv = need.kv_cache // n if need is not None else 0
    budget: dict[int | str, int] = {i: max(0, int((f - RUNTIME_BYTES - kv) * share)) for i, f in enumerate(free)}
    return Placement(name, devices, budget)
