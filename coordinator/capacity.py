"""Will a backbone's replicas fit? Asked before Ray is asked to place them, so a backbone that cannot fit is
FAILED_PRECONDITION at once, naming the bytes one replica needs, its dtype and what each node has: not a
placement timeout ten minutes later, nor an out-of-memory crash while the weights load.

One replica needs its weights in the serving dtype (workers/weights.py: from the checkpoint's safetensors
headers, else its config) plus the headroom stated there. A CPU replica is compared with each node's Ray
`memory` resource; a GPU replica with the memory of the GPUs it is given (--worker-gpu-memory, or what
nvidia-smi reports where the coordinator runs; unknown otherwise, and then the replica checks its own GPUs
before loading). `--worker-gpus auto` takes the fewest GPUs whose memory holds the footprint.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from dataclasses import dataclass

import ray

from coordinator.config import BackboneSpec, ServerConfig
from promptbank_api.errors import FailedPrecondition
from promptbank_domain.precision import resolve_dtype
from workers.weights import Footprint, footprint, gib

log = logging.getLogger("promptbank.coordinator")


@dataclass(frozen=True)
class NodeOffer:
    """What one live Ray node has: its id, Ray's `memory` resource (bytes) and its GPUs."""

    node_id: str
    memory: float
    gpus: float

    def describe(self, gpu_bytes: int) -> str:
        gpus = f"{self.gpus:g} GPU(s)" + (f" of {gib(gpu_bytes)}" if self.gpus and gpu_bytes else "")
        return f"node {self.node_id[:8]}: {gib(self.memory)} memory, {gpus}"


def offers() -> list[NodeOffer]:
    """The live nodes of the Ray cluster this coordinator uses."""
    out = []
    for n in ray.nodes():
        if n.get("Alive"):
            res = n.get("Resources", {})
            out.append(NodeOffer(str(n.get("NodeID", "")), float(res.get("memory", 0)), float(res.get("GPU", 0))))
    return out


def local_gpu_bytes() -> int:
    """The smallest GPU's memory on this machine by nvidia-smi (no CUDA context is made); 0 when unknown."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        sizes = [int(float(line)) << 20 for line in out.split() if line.strip()]  # MiB
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0
    return min(sizes, default=0)


def gpu_bytes(config: ServerConfig) -> int:
    """Memory of each GPU: the flag, else nvidia-smi here when Ray is local (this machine's GPUs); 0: unknown."""
    if config.worker_gpu_memory_gib:
        return int(config.worker_gpu_memory_gib * (1 << 30))
    return local_gpu_bytes() if not config.ray_address else 0


def estimate(spec: BackboneSpec, config: ServerConfig, on_gpu: bool) -> Footprint | None:
    dtype = resolve_dtype(spec.dtype, on_gpu)  # auto on a GPU: bf16 or fp16, 2 bytes either way
    cached = config.generate_max_cached_tokens if config.generate_batching else 0
    return footprint(spec.model, dtype, cached, spec.revision)


def plan_gpus(spec: BackboneSpec, config: ServerConfig, nodes: list[NodeOffer]) -> float:
    """GPUs per replica of `spec`, checking that its replicas fit; FAILED_PRECONDITION with the numbers if not."""
    cluster_gpus = max((n.gpus for n in nodes), default=0.0)
    per_gpu = gpu_bytes(config)
    if config.worker_gpus_auto:
        if not cluster_gpus:
            gpus = 0.0
        else:
            need = estimate(spec, config, on_gpu=True)
            if need is None:
                gpus = 1.0
            elif not per_gpu:
                raise FailedPrecondition(f"--worker-gpus auto needs each GPU's memory to size backbone {spec.name!r} "
                                         f"({need.describe()}): pass --worker-gpu-memory GIB")
            else:
                gpus = float(max(1, math.ceil(need.total / per_gpu)))
    else:
        gpus = config.worker_gpus if config.worker_gpus is not None else (1.0 if cluster_gpus else 0.0)
    check(spec, estimate(spec, config, on_gpu=gpus > 0), gpus, per_gpu, nodes)
    return gpus


def check(spec: BackboneSpec, need: Footprint | None, gpus: float, per_gpu: int, nodes: list[NodeOffer]) -> None:
    """FAILED_PRECONDITION when `spec.replicas` replicas of `need` bytes cannot fit the nodes."""
    if need is None:
        log.info("backbone %s: its checkpoint is not on this machine; its footprint is not checked before placing",
                 spec.name)
        return
    if gpus > 0:
        if not per_gpu:
            return  # unknown here: each replica compares the footprint with its own GPUs before loading
        has = per_gpu * gpus  # a fraction of a GPU gets that fraction of its memory
        places = sum(int(n.gpus // gpus) for n in nodes) if has >= need.total else 0
        where = f"{gpus:g} GPU(s) of {gib(per_gpu)} per replica"
    else:
        places = sum(int(n.memory // need.total) for n in nodes)
        where = "CPU memory per replica"
    if places >= spec.replicas:
        return
    shown = "; ".join(n.describe(per_gpu) for n in nodes) or "no live nodes"
    raise FailedPrecondition(
        f"backbone {spec.name!r} cannot fit: one replica needs {need.describe()} in {where}, and "
        f"{spec.replicas} replica(s) are asked for; the nodes have {shown}. Serve it in a smaller dtype "
        f"(--dtype, or RegisterBackbone's dtype), give each replica more GPUs (--worker-gpus), or add nodes")
