"""Uploads stream into pieces on the server (never whole in memory) and are bounded per upload and per
principal, each limit stopping the stream as soon as it is passed."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import grpc
import pytest

from bank import datasets
from bank.models import DatasetChunk
from coordinator.config import BackboneSpec, ServerConfig
from coordinator.limits import Limits
from promptbank import Client
from tests.conftest import LiveServer
from tests.test_server import DATA, code_of


@pytest.fixture(scope="module")
def small_quota(ray_session: None, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerConfig(port=0, db=str(tmp_path_factory.mktemp("uploads") / "b.db"), worker_cpus=0.25,
                                   grace_seconds=0.5, limits=Limits(upload_bytes=40_000, upload_storage=60_000),
                                   backbones=(BackboneSpec("enc", tiny_encoder),)))
    yield live
    live.stop()


def rows(n: int, tag: str = "") -> list[tuple[str, str]]:
    return [(f"{text} {tag}{i}", label) for i, (text, label) in enumerate((DATA * (n // len(DATA) + 1))[:n])]


def test_an_upload_is_stored_in_pieces_and_trains_the_same(small_quota: LiveServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "PIECE_BYTES", 1000)
    data = rows(300)
    with Client(small_quota.address) as c:
        up = c.upload_dataset(data, chunk_rows=37)
        assert up.rows == 300

        def stored(s):  # type: ignore[no-untyped-def]
            n = s.query(DatasetChunk).filter_by(dataset_id=up.name.removeprefix("datasets/")).count()
            return n, datasets.dataset_rows(s, up.name.removeprefix("datasets/"), "local")

        pieces, back = small_quota.coord.db.run_sync(stored)
        assert pieces > 5 and back == data  # many 1,000-byte pieces, the same rows in order


def test_limits_per_upload_and_per_principal(small_quota: LiveServer) -> None:
    with Client(small_quota.address) as c:
        code, msg = code_of(lambda: c.upload_dataset(rows(2000, "big"), chunk_rows=100))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "the upload: bytes" in msg and "--limit-upload-bytes" in msg
        used = small_quota.coord.db.run_sync(lambda s: datasets.stored_bytes(s, "local"))
        first = c.upload_dataset(rows(500, "a"))  # ~20 KB each
        second_rows = rows(800, "b")
        code, msg = code_of(lambda: c.upload_dataset(second_rows))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "uploads and inline examples by 'local'" in msg, msg
        after = small_quota.coord.db.run_sync(lambda s: datasets.stored_bytes(s, "local"))
        assert after > used and after <= 60_000 and first.rows == 500  # the refused upload stored nothing


def test_an_upload_is_never_held_whole_in_memory(small_quota: LiveServer) -> None:
    """Python allocations on the server side while 8 MB stream in stay far below the upload's size."""
    big = [(f"{'word ' * 60}{i}", ("negative", "positive")[i % 2]) for i in range(25_000)]  # ~8 MB as JSON
    live = small_quota  # the same server, its limits raised for this one upload (the services share its config)
    object.__setattr__(live.coord.config, "limits", Limits(upload_bytes=64 << 20, upload_storage=64 << 20))
    try:
        tracemalloc.start()
        with Client(live.address) as c:
            up = c.upload_dataset(big, chunk_rows=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        object.__setattr__(live.coord.config, "limits", Limits(upload_bytes=40_000, upload_storage=60_000))
    size = live.coord.db.run_sync(lambda s: datasets.get_dataset(s, up.name.removeprefix("datasets/")).size)
    assert size > 7_000_000 and up.rows == len(big)
    print(f"peak {peak} bytes of Python allocations for a {size}-byte upload")
    assert peak < size / 2, f"peak {peak} bytes of Python allocations for a {size}-byte upload"
