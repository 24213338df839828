"""Placement and replica autoscaling on a real local Ray: a replica Ray cannot place is a clear error within
--placement-timeout (not a hang); a backbone's replicas grow while its micro-batcher's queue waits and shrink
back after idling, with every call answered the same meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank_api.errors import FailedPrecondition
from tests.conftest import LiveServer
from tests.load import ClassifyLoad, same_scores
from tests.test_server import train


def test_a_replica_ray_cannot_place_fails_fast_and_says_what_it_needs(
        ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, db=str(tmp_path / "b.db"), worker_cpus=512, placement_timeout_s=3,
                       backbones=(BackboneSpec("tiny", tiny_encoder),))
    t = time.monotonic()
    with pytest.raises(FailedPrecondition) as err:
        LiveServer(cfg)
    message = str(err.value)  # `promptbank serve` prints it as one line: `error: ...` (tests/test_cli_errors.py)
    assert message.startswith("Ray could not place 1 replica(s) of backbone 'tiny' within 3 s"), message
    assert "each needs {CPU: 512} on one node; the cluster's nodes have {CPU: 4}" in message, message
    assert "Lower --worker-cpus" in message
    assert time.monotonic() - t < 60


@pytest.mark.parametrize("flags", [{"placement": "around"}, {"max_replicas": 1, "replicas": 2},
                                   {"worker_gpus": -1.0}, {"placement_timeout_s": 0},
                                   {"worker_resources": (("CPU", 1.0),)}, {"worker_resources": (("pool", 0.0),)}])
def test_placement_flags_are_checked_at_the_edge(flags: dict[str, object], tiny_encoder: str) -> None:
    replicas = int(flags.pop("replicas", 1))  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        ServerConfig(backbones=(BackboneSpec("tiny", tiny_encoder, replicas=replicas),), **flags)  # type: ignore[arg-type]


def test_replicas_scale_up_under_queueing_and_back_down_when_idle(
        ray_session: None, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, db=str(tmp_path / "b.db"), grace_seconds=1.0, worker_cpus=0.25,
                       backbones=(BackboneSpec("tiny", tiny_encoder, replicas=1),), batch_max_rows=4,
                       max_replicas=2, scale_up_wait_ms=30, scale_down_after_s=4)
    live = LiveServer(cfg)
    try:
        with Client(live.address, timeout=60) as c:
            train(c, "auto-a", backbone="tiny")
            rows = [("auto-a", f"text number {i} is rather long to embed " * 4) for i in range(8)]
            expected = [p.scores for p in c.classify(rows)]
            assert len(c.get_backbone("tiny").serving) == 1
        load = ClassifyLoad(live.address, rows, threads=12)  # 12 x 8 rows queue behind 2 x 4-row batches
        with Client(live.address, timeout=60) as c:
            try:
                deadline = time.monotonic() + 120
                while len(c.get_backbone("tiny").serving) < 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
                grown = c.get_backbone("tiny").serving
                time.sleep(2)  # both replicas take calls
            finally:
                load.stop()
            assert [r.state for r in grown] == ["live", "live"], grown
            assert live.coord.autoscaler is not None and live.coord.autoscaler.grown == 1  # never above --max-replicas
            assert all(r.batches for r in live.coord.pool.get("tiny").replicas), "the new replica served calls"
            assert not load.failures, load.failures[:3]
            assert load.answers and all(same_scores(a, expected) for a in load.answers)
            deadline = time.monotonic() + 60
            while len(c.get_backbone("tiny").serving) > 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert [r.index for r in c.get_backbone("tiny").serving] == [0], "back to --replicas after idling"
            assert live.coord.autoscaler.shrunk == 1
            assert same_scores([p.scores for p in c.classify(rows)], expected)
    finally:
        live.stop()


def test_min_and_max_replicas_parse_from_the_command_line(tiny_encoder: str) -> None:
    from coordinator.__main__ import parse

    config = parse(["--backbone", f"tiny={tiny_encoder}", "--min-replicas", "2", "--max-replicas", "3",
                    "--worker-resource", "pool_a=0.5", "--placement", "pack", "--worker-gpus", "0.5"])
    assert [b.replicas for b in config.backbones] == [2] and config.max_replicas == 3
    assert config.worker_resources == (("pool_a", 0.5),) and config.placement == "pack" and config.worker_gpus == 0.5
    with pytest.raises(SystemExit):
        parse(["--backbone", f"tiny={tiny_encoder}", "--min-replicas", "3", "--max-replicas", "2"])
