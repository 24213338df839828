"""Memory-aware placement: a backbone whose footprint (weights in its serving dtype, from the checkpoint's
safetensors headers or its config, plus the stated headroom) cannot fit the Ray nodes is FAILED_PRECONDITION
at once, naming the bytes, the dtype and what each node has; `--worker-gpus auto` takes the fewest GPUs that
hold it. Real local Ray and a real server; the huge checkpoints here are headers only, never allocated."""

from __future__ import annotations

import json
import re
import struct
import time
from pathlib import Path

import grpc
import pytest

from coordinator.capacity import NodeOffer, check, offers, plan_gpus
from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.errors import FailedPrecondition
from tests.test_cli import cli
from tests.test_server import code_of
from workers.weights import RUNTIME_BYTES, Footprint, config_parameters, footprint

GIB = 1 << 30


def header_only_checkpoint(folder: Path, elements: int, layers: int = 2) -> str:
    """A causal-LM checkpoint whose safetensors header claims `elements` fp32 weights (the data is absent)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64, "n_layer": layers, "n_head": 4,
        "vocab_size": 1000, "n_positions": 128}))
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "wte.weight": {"dtype": "F32", "shape": [elements // 1024, 1024],
                                        "data_offsets": [0, elements * 4]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return str(folder)


def test_a_footprint_is_read_from_the_headers_in_the_serving_dtype(tiny_causal_lm: str, tmp_path: Path) -> None:
    path = header_only_checkpoint(tmp_path / "big", 1 << 30)
    half, full = footprint(path, "bf16"), footprint(path, "fp32")
    assert half is not None and full is not None
    assert (half.weights, full.weights, half.source) == (2 * GIB, 4 * GIB, "safetensors headers")
    assert half.total == 2 * GIB + int(0.2 * 2 * GIB) + RUNTIME_BYTES  # no cache: no --generate-max-cached-tokens
    cached = footprint(path, "bf16", cached_tokens=1000)
    assert cached is not None and cached.kv_cache == 2 * 2 * 64 * 1000 * 2  # layers x k,v x width x tokens x bytes
    tiny = footprint(tiny_causal_lm, "fp32")
    assert tiny is not None and 1e6 < tiny.weights / 4 < 2e6  # the tiny GPT-2's ~1.1M parameters
    gpt2_small = config_parameters({"n_embd": 768, "n_layer": 12, "vocab_size": 50257, "n_positions": 1024})
    assert 120e6 < gpt2_small < 130e6  # its config alone gives GPT-2 small's 124M


def test_cpu_replicas_that_cannot_fit_any_node_are_refused_with_the_numbers() -> None:
    spec = BackboneSpec("big", "/nowhere", replicas=3)
    need = Footprint("bf16", 10 * GIB, 0, "safetensors headers")
    nodes = [NodeOffer("a" * 32, 30 * GIB, 0), NodeOffer("b" * 32, 8 * GIB, 0)]
    with pytest.raises(FailedPrecondition) as err:
        check(spec, need, 0.0, 0, nodes)
    msg = str(err.value)
    assert "backbone 'big' cannot fit: one replica needs 12.50 GiB in bf16 (weights 10.00 GiB" in msg, msg
    assert "3 replica(s) are asked for" in msg and "node aaaaaaaa: 30.00 GiB memory" in msg and "node bbbbbbbb: 8.00" in msg
    check(BackboneSpec("big", "/nowhere", replicas=2), need, 0.0, 0, nodes)  # two fit the first node


def test_worker_gpus_auto_takes_the_fewest_gpus_that_hold_the_footprint(tmp_path: Path) -> None:
    path = header_only_checkpoint(tmp_path / "b", 30 * GIB)  # 60 GiB in bf16, ~72.5 GiB with headroom
    nodes = [NodeOffer("n" * 32, 500 * GIB, 8)]
    cfg = ServerConfig(worker_gpus_auto=True, worker_gpu_memory_gib=40, generate_batching=False)
    spec = BackboneSpec("b", path, dtype="bf16")
    assert plan_gpus(spec, cfg, nodes) == 2.0
    assert plan_gpus(spec, ServerConfig(worker_gpus_auto=True, worker_gpu_memory_gib=80, generate_batching=False),
                     nodes) == 1.0
    assert plan_gpus(spec, cfg, [NodeOffer("c" * 32, 500 * GIB, 0)]) == 0.0  # no GPUs in the cluster: a CPU replica
    with pytest.raises(FailedPrecondition, match="2 GPU.s. of 40.00 GiB per replica.*node nnnnnnnn: 500.00 GiB memory, 1 GPU"):
        plan_gpus(spec, cfg, [NodeOffer("n" * 32, 500 * GIB, 1)])  # one GPU per node: two cannot be had
    with pytest.raises(FailedPrecondition, match="needs each GPU's memory"):
        plan_gpus(spec, ServerConfig(worker_gpus_auto=True, ray_address="auto"), nodes)
    with pytest.raises(ValueError, match="exclude each other"):
        ServerConfig(worker_gpus_auto=True, worker_gpus=1.0)


def test_a_backbone_larger_than_every_node_is_refused_before_a_replica_starts(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = header_only_checkpoint(tmp_path / "huge", 1 << 40)  # 4 TiB of fp32 claimed by its header
    biggest = max(n.memory for n in offers())
    with Client(server.address) as c:
        t = time.monotonic()
        code, msg = code_of(lambda: c.register_backbone("huge", path))
        assert time.monotonic() - t < 10  # at once: no placement timeout, no load
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        assert re.search(r"one replica needs 49\d\d\.\d\d GiB in fp32 \(weights 4096\.00 GiB from its safetensors "
                         r"headers, plus 8\d\d\.\d\d GiB headroom", msg), msg
        assert f"{biggest / GIB:.2f} GiB memory" in msg and "--dtype" in msg
        assert "huge" not in server.coord.pool.backbones
        assert not any(b.name == "backbones/huge" for b in c.list_backbones())
    out = cli(server, "backbones", "register", "huge", path, "--dtype", "bf16", check=False)
    assert out.returncode == 1 and "FAILED_PRECONDITION" in out.stderr and "GiB in bf16" in out.stderr


def test_a_server_refuses_at_start_when_a_backbone_cannot_fit(ray_session: None, tmp_path: Path) -> None:
    from tests.conftest import LiveServer

    path = header_only_checkpoint(tmp_path / "huge", 1 << 40)
    cfg = ServerConfig(port=0, db=str(tmp_path / "b.db"), backbones=(BackboneSpec("huge", path, dtype="bf16"),))
    t = time.monotonic()
    with pytest.raises(FailedPrecondition, match="GiB in bf16"):
        LiveServer(cfg)
    assert time.monotonic() - t < 60


def test_register_backbone_takes_a_dtype_that_list_and_get_show(server, tiny_causal_lm: str) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(cli(server, "backbones", "register", "tiny-lm-bf16", tiny_causal_lm, "--dtype", "bf16",
                         "--json").stdout)
    assert out["dtype"] == "bf16"
    with Client(server.address) as c:
        assert c.get_backbone("tiny-lm-bf16").fingerprint == c.get_backbone("tiny-lm").fingerprint
        assert c.get_backbone("tiny-lm").dtype == "fp32"  # auto on a CPU
        code, msg = code_of(lambda: c.register_backbone("tiny-lm-bf16", tiny_causal_lm, dtype="fp16"))
        assert code is grpc.StatusCode.ALREADY_EXISTS and "served in bf16, not fp16" in msg
        code, msg = code_of(lambda: c.register_backbone("x", tiny_causal_lm, dtype="int4"))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "'int4' must be one of" in msg
    listed = cli(server, "backbones", "list").stdout
    assert "DTYPE" in listed and any("tiny-lm-bf16" in line and "bf16" in line for line in listed.splitlines())
