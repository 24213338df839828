"""The `promptbank` CLI as a user runs it: a subprocess against the live server."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptbank import Client
from tests.test_server import DATA, TOPIC, input_hp, train


def cli(server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    proc = subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", server.address, *args],
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"promptbank {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture()
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text("review,sentiment\n" + "\n".join(f'"{t}",{lab}' for t, lab in DATA))
    return path


def test_train_waits_then_prints_the_version(server, data_file: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli(server, "train", "--task", "cli-sent", "--backbone", "tiny-enc", "--data", str(data_file),
              "--text-column", "review", "--label-column", "sentiment", "--virtual-tokens", "4", "--epochs", "2",
              "--alias", "prod")
    assert out.stdout == "prompts/cli-sent/versions/1\n" and "eval_accuracy=" in out.stderr
    shown = json.loads(cli(server, "prompts", "show", "cli-sent@prod", "--json").stdout)
    assert shown["name"] == "prompts/cli-sent/versions/1" and sorted(shown["aliases"]) == ["latest", "prod"]
    listed = cli(server, "prompts", "list").stdout
    assert "prompts/cli-sent" in listed and "prod->1" in listed


def test_train_no_wait_then_watch_and_show(server, data_file: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli(server, "train", "--task", "cli-bg", "--backbone", "tiny-enc", "--data", str(data_file),
              "--text-column", "review", "--label-column", "sentiment", "--virtual-tokens", "4", "--epochs", "1",
              "--ema-decay", "0", "--token-dropout", "0.2", "--eval-fraction", "0.25", "--no-wait")
    job = out.stdout.strip()
    assert job.startswith("jobs/") and len(out.stdout.splitlines()) == 1
    watched = cli(server, "jobs", "watch", job)
    assert "SUCCEEDED" in watched.stdout and "prompts/cli-bg/versions/1" in watched.stdout
    shown = json.loads(cli(server, "jobs", "show", job, "--json").stdout)
    assert shown["state"] == "SUCCEEDED" and shown["result_version"] == "prompts/cli-bg/versions/1"
    hp = shown["hyperparameters"]
    assert hp["ema_decay"] == 0.0 and hp["token_dropout"] == 0.2 and hp["input_noise"] == 5.0  # flags reach the job
    assert shown["dataset"]["eval_fraction"] == 0.25
    assert job in cli(server, "jobs", "list").stdout


def test_watch_exits_nonzero_for_a_cancelled_job(server) -> None:  # type: ignore[no-untyped-def]

    with Client(server.address) as c:
        job = c.create_train_job("cli-cancel", "tiny-enc", DATA,
                                 hyperparameters=input_hp(epochs=1000, num_virtual_tokens=2, batch_size=4, patience=10000))
        cancelled = json.loads(cli(server, "jobs", "cancel", job.name, "--json").stdout)
        assert cancelled["name"] == job.name
    watched = cli(server, "jobs", "watch", job.name, check=False)
    assert watched.returncode == 1 and "CANCELLED" in watched.stdout


def test_classify_input_with_mixed_tasks_equals_single_task_requests(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "cli-mix-a")
        train(c, "cli-mix-b", data=TOPIC)
    rows = [{"prompt": "cli-mix-a", "text": "great stuff"}, {"prompt": "cli-mix-b", "text": "the coach resigned"},
            {"prompt": "cli-mix-a@latest", "text": "awful"}, {"prompt": "cli-mix-b/versions/1", "text": "a new law"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    mixed = [json.loads(line) for line in cli(server, "classify", "--input", str(path), "--json").stdout.splitlines()]
    assert [m["prompt"] for m in mixed] == [r["prompt"] for r in rows]
    for row, got in zip(rows, mixed, strict=True):
        alone = json.loads(cli(server, "classify", "--prompt", row["prompt"], row["text"], "--json").stdout)
        assert got["label"] == alone["label"] and got["text"] == row["text"]
        assert got["scores"] == pytest.approx(alone["scores"], abs=1e-6)
        assert set(got) >= {"prompt", "text", "label", "scores"}


def test_errors_are_printed_with_their_status(server) -> None:  # type: ignore[no-untyped-def]
    out = cli(server, "classify", "--prompt", "missing-task", "hello", check=False)
    assert out.returncode == 1 and "NOT_FOUND" in out.stderr and "missing-task" in out.stderr
    out = cli(server, "train", "--task", "t", "--data", "/nonexistent.csv", check=False)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_backbones_list(server) -> None:  # type: ignore[no-untyped-def]
    out = cli(server, "backbones", "list").stdout.splitlines()
    assert out[0].split() == ["NAME", "ARCHITECTURE", "HIDDEN", "DTYPE", "REPLICAS", "MODEL"]
    rows = {line.split()[0]: line.split()[1:5] for line in out[1:]}
    assert rows["backbones/tiny-enc"] == ["encoder", "32", "fp32", "1"]  # dtype auto: fp32 on a CPU
    enc = next(line for line in out if line.startswith("backbones/tiny-enc"))
    assert re.search(r" 1 \(live@[0-9a-f]{8}\) ", enc), enc  # each replica's state and Ray node
    assert rows["backbones/tiny-lm"][0] == "causal_lm"
    listed = [json.loads(line) for line in cli(server, "backbones", "list", "--json").stdout.splitlines()]
    assert all(isinstance(b["hidden_size"], int) and isinstance(b["replicas"], int) for b in listed)
    assert {b["dtype"] for b in listed if b["name"] in ("backbones/tiny-enc", "backbones/tiny-lm")} == {"fp32"}
    assert all(r["state"] == "live" and r["node_id"] for b in listed for r in b["serving"])


def test_generate_prints_the_streamed_text(server) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "cli-gen", backbone="tiny-lm", labels=["negative", "positive"], label_words=["bad", "good"])
        expected = "".join(c.generate("cli-gen", "once upon a time", max_new_tokens=5))
    out = cli(server, "generate", "--prompt", "cli-gen", "--max-new-tokens", "5", "once upon a time")
    assert out.stdout == expected + "\n" and expected.strip()
    split = cli(server, "generate", "--prompt", "cli-gen", "once", "upon", check=False)  # never joined by a guess
    assert split.returncode == 2 and "generate takes one TEXT, got 2" in split.stderr, split.stderr


def test_train_help_states_the_servers_defaults() -> None:
    """Flags left out take the server's defaults; the help must name the values the server really uses, for
    the kind a job gets when it names none and for the other."""
    from promptbank.cli import build_parser
    from promptbank_domain.train_config import TrainConfig
    from promptbank_kinds import DEFAULT as DEFAULT_KIND

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub.choices["train"]._actions}
    assert DEFAULT_KIND == "deep" and "'deep' prompt" in helps["kind"] and "default deep where the backbone" in helps["kind"]
    deep, plain = TrainConfig.defaults("deep"), TrainConfig.defaults("input")
    for dest, value in (("virtual_tokens", deep.num_virtual_tokens), ("batch_size", deep.batch_size),
                        ("input_noise", deep.input_noise), ("ema_decay", deep.ema_decay),
                        ("token_dropout", deep.token_dropout), ("eval_fraction", deep.eval_fraction),
                        ("prefix_projection", deep.prefix_projection), ("max_grad_norm", deep.max_grad_norm)):
        assert f"default {value:g}" in helps[dest], (dest, helps[dest])
    for dest, field in (("epochs", "epochs"), ("lr", "learning_rate")):
        d, i = getattr(deep, field), getattr(plain, field)
        assert d != i and f"default {d:g} for a deep prompt, {i:g} for an input one" in helps[dest], (dest, helps[dest])
