"""Training data through the service: server-side files via `datasets`, client-streamed uploads, validation."""

from __future__ import annotations

from pathlib import Path

import grpc

from promptbank import Client
from promptbank_api.v1 import jobs_pb2 as jp
from tests.test_cli import cli
from tests.test_server import DATA, HP, code_of


def test_a_server_side_file_and_its_errors(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(f'{{"review": "{t}", "stars": "{lab}"}}' for t, lab in DATA))
    job = client.create_train_job("data-file", "tiny-enc", dataset_uri=str(path), text_column="review",
                                  label_column="stars", hyperparameters=HP)
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED, done.error
    assert client.get_version(done.result_version).lineage.data == str(path)
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri=str(path),
                                                        text_column="text", label_column="stars"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "['text']" in msg and "review" in msg
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri=str(tmp_path / "no.csv")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not exist" in msg
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri=str(empty)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in msg
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri="no-such-org/no-such-set"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "--allow-hub" in msg  # hub datasets are off by default
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", []))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in msg


def test_server_files_outside_the_data_roots_are_refused(client: Client, tmp_path: Path) -> None:
    """dataset.uri must not let a client read (or probe for) the server's other files."""
    outside = Path("/etc/hostname")
    for uri in (str(outside), "/etc/passwd.csv", "/etc", "../../../../etc/hosts.csv", "~/.bashrc.json",
                "file:///etc/passwd.csv", "./../../etc/hosts.csv", f"{tmp_path}/../../../etc/hosts.csv",
                "etc/hosts.csv", "/proc/self/environ", "/dev/zero.csv"):
        code, msg = code_of(lambda uri=uri: client.create_train_job("data-x", "tiny-enc", dataset_uri=uri))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "outside the server's data roots" in msg, (uri, code, msg)
    link = tmp_path / "link.csv"  # inside a root, pointing outside: refused after resolving
    link.symlink_to("/etc/hosts")
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri=str(link)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "link.csv" in msg
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri=str(tmp_path)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and ".jsonl" in msg  # a directory inside a root: not a file
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri="datasets/../../etc"))
    assert code == grpc.StatusCode.NOT_FOUND  # an upload id, never a path
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri="tmp"))  # a hub-looking id
    assert code == grpc.StatusCode.PERMISSION_DENIED, msg  # that is a local directory here, or the hub: refused


def test_client_streamed_upload_then_train(client: Client) -> None:
    up = client.upload_dataset(DATA * 3, chunk_rows=7, request_id="up-1")
    assert up.name.startswith("datasets/") and up.rows == len(DATA) * 3
    assert dict(up.label_counts) == {"positive": len(DATA) * 3 // 2, "negative": len(DATA) * 3 // 2}
    assert client.upload_dataset(DATA * 3, chunk_rows=50, request_id="up-1").name == up.name  # idempotent
    code, _ = code_of(lambda: client.upload_dataset(DATA, request_id="up-1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    job = client.create_train_job("data-up", "tiny-enc", dataset_uri=up.name, hyperparameters=HP)
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED and done.metrics["train_examples"] + done.metrics["eval_examples"] == up.rows
    code, msg = code_of(lambda: client.create_train_job("data-x", "tiny-enc", dataset_uri="datasets/nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "datasets/nope" in msg
    code, msg = code_of(lambda: client.upload_dataset([("text", "")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty label" in msg


def test_cli_uploads_large_files_and_reads_server_side_uris(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "big.csv"
    path.write_text("text,label\n" + "\n".join(f'"{t} {i}",{lab}' for i, (t, lab) in enumerate(DATA * 400)))
    out = cli(server, "train", "--task", "data-big", "--backbone", "tiny-enc", "--data", str(path),
              "--virtual-tokens", "2", "--epochs", "1", "--batch-size", "256", "--max-steps", "10")
    assert "uploaded 25600 examples as datasets/" in out.stderr and out.stdout.startswith("prompts/data-big/versions/1")
    out = cli(server, "train", "--task", "data-uri", "--backbone", "tiny-enc", "--data-uri", str(path),
              "--virtual-tokens", "2", "--epochs", "1", "--batch-size", "256", "--max-steps", "10",
              "--init-from", "data-big")
    assert out.stdout.startswith("prompts/data-uri/versions/1")
    with Client(server.address) as c:
        v = c.get_version("data-uri")
        assert v.lineage.data == str(path) and v.lineage.init == "data-big"
