"""The CLI and API as a careful user meets them: zero means zero, nothing changed silently, every error one
clear line (never a traceback), huge numbers refused cleanly, one server per port, Ctrl-C explained."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from promptbank import Client
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import jobs_pb2 as jp
from tests.test_cli import cli
from tests.test_server import DATA, HP, code_of, input_hp, train

SLOW = ["--virtual-tokens", "2", "--epochs", "1000", "--batch-size", "4", "--patience", "10000"]


def run(*args: str, check_clean: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`promptbank ARGS` with no --server (for serve/completion)."""
    out = subprocess.run([sys.executable, "-m", "promptbank.cli", *args], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "RAY_ADDRESS": ""})
    if check_clean:
        assert "Traceback" not in out.stderr, out.stderr
    return out


def clean(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "Traceback" not in out.stderr, out.stderr
    return out


# 1. zero means zero -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag,field", [("--epochs", "epochs"), ("--virtual-tokens", "num_virtual_tokens"),
                                        ("--batch-size", "batch_size"), ("--max-steps", "max_steps"),
                                        ("--patience", "patience")])
def test_zero_is_refused_where_it_means_nothing(server, tmp_path: Path, flag: str, field: str) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in DATA))
    out = clean(cli(server, "train", "--task", "zero", "--backbone", "tiny-enc", "--data", str(data), flag, "0",
                    "--no-wait", check=False))
    assert out.returncode == 1 and "INVALID_ARGUMENT" in out.stderr and f"{field}=0" in out.stderr, out.stderr


def test_zero_is_honoured_where_it_means_something(client: Client) -> None:
    job = client.create_train_job("zero-eval", "tiny-enc", DATA, hyperparameters=HP, eval_fraction=0.0)
    done = client.wait_job(job.name, timeout=300)
    assert done.state == jp.TrainJob.SUCCEEDED and done.metrics["eval_examples"] == 0  # no held-out split
    assert done.metrics["train_examples"] == len(DATA)
    default = train(client, "zero-default")  # unset: the server's 5%
    assert default.metrics["eval_examples"] == round(len(DATA) * 0.05)
    seeded = client.create_train_job("zero-seed", "tiny-enc", DATA, hyperparameters=input_hp(
        num_virtual_tokens=2, epochs=1, seed=0, input_noise=0.0))
    shown = client.get_job(seeded.name).hyperparameters
    assert shown.seed == 0 and shown.HasField("input_noise") and shown.input_noise == 0.0
    client.wait_job(seeded.name, timeout=300)


def test_generate_and_register_refuse_zero_and_non_numbers(client: Client) -> None:
    train(client, "zero-gen", backbone="tiny-lm", labels=["negative", "positive"], label_words=["bad", "good"])
    code, msg = code_of(lambda: list(client.generate("zero-gen", "hi", max_new_tokens=0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "max_new_tokens=0" in msg
    for bad in (math.nan, math.inf, -1.0):
        code, msg = code_of(lambda bad=bad: list(client.generate("zero-gen", "hi", temperature=bad)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in msg
    code, msg = code_of(lambda: client.register_backbone("zero-bb", "some/model", replicas=0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "replicas=0" in msg


# 2. no silent changes to data --------------------------------------------------------------------------------


def test_left_out_rows_are_reported_and_labels_stay_text(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [(t, "1" if lab == "positive" else "0") for t, lab in DATA]
    path = tmp_path / "numeric.csv"
    body = [f'"{t}",{lab}' for t, lab in rows] + ['"",1', '"no label here",']
    path.write_text("text,label\n" + "\n".join(body))
    out = clean(cli(server, "train", "--task", "numeric-labels", "--backbone", "tiny-enc", "--data", str(path),
                    "--virtual-tokens", "2", "--epochs", "1"))
    assert f"{len(rows)} rows; left out 1 with an empty text (rows {len(rows) + 1}) and 1 with an empty label " \
           f"(rows {len(rows) + 2})" in out.stderr
    with Client(server.address) as c:
        assert list(c.get_prompt("numeric-labels").task.labels) == ["0", "1"]  # not '0.0' / '1.0'
        served = train(c, "numeric-server", data=(), dataset_uri=str(path))  # the server reads the file the same way
        assert served.metrics["train_examples"] + served.metrics["eval_examples"] == len(rows)
        assert list(c.get_prompt("numeric-server").task.labels) == ["0", "1"]
        queued = next(e.message for e in c.watch_job(served.name) if e.message.startswith("queued"))
        assert "left out 1 with an empty text" in queued and "1 with an empty label" in queued  # in the job


def test_texts_cut_at_max_length_are_reported(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + "\n".join(f'"{t} {t} {t} {t}",{lab}' for t, lab in DATA))
    out = clean(cli(server, "train", "--task", "cut", "--backbone", "tiny-enc", "--data", str(path),
                    "--virtual-tokens", "2", "--epochs", "1", "--max-length", "8"))
    assert f"note: {len(DATA)} of {len(DATA)} examples reached max_length (8 tokens)" in out.stderr
    held_out = round(len(DATA) * 0.05)  # the default 5% of a small file: too few rows to trust
    assert f"warning: only {held_out} held-out rows: eval_accuracy" in out.stderr and "95% interval" in out.stderr
    done = json.loads(clean(cli(server, "train", "--task", "cut", "--backbone", "tiny-enc", "--data", str(path),
                                "--virtual-tokens", "2", "--epochs", "1", "--json")).stdout)
    assert done["state"] == "SUCCEEDED" and done["metrics"]["truncated_examples"] == 0  # 128 tokens: none cut
    assert done["hyperparameters"]["max_length"] == 128 and done["step"] > 0


# 3. errors are one line, never a traceback -------------------------------------------------------------------


def test_classify_input_errors_name_the_file_and_line(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "cli-in")
    cases = {
        "no-text.jsonl": ('{"prompt": "cli-in", "text": "fine"}\n{"prompt": "cli-in"}\n', ":2: 'text' must be a string"),
        "number.jsonl": ('{"prompt": "cli-in", "text": 5}\n', ":1: 'text' must be a string, got 5"),
        "no-prompt.jsonl": ('{"text": "fine"}\n', ":1: the row names no 'prompt'"),
        "broken.jsonl": ('{"prompt": "cli-in", "text": \n', ":1: not JSON"),
    }
    for name, (body, message) in cases.items():
        path = tmp_path / name
        path.write_text(body)
        out = clean(cli(server, "classify", "--input", str(path), check=False))
        assert out.returncode == 2 and f"{path}{message}" in out.stderr, (name, out.stderr)
    out = clean(cli(server, "classify", "--input", str(tmp_path), check=False))
    assert out.returncode == 2 and "is a directory" in out.stderr
    defaulted = tmp_path / "defaulted.jsonl"  # rows without a prompt take --prompt
    defaulted.write_text('{"text": "fine"}\n{"prompt": "cli-in@latest", "text": "bad"}\n')
    rows = [json.loads(line) for line in clean(cli(server, "classify", "--input", str(defaulted), "--prompt",
                                                   "cli-in", "--json")).stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["cli-in", "cli-in@latest"]


def test_files_that_cannot_be_written_are_one_line(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        done = train(c, "cli-out")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    out = clean(cli(server, "prompts", "export", "cli-out", str(taken), check=False))
    assert out.returncode == 2 and "--force" in out.stderr and (taken / "keep.txt").read_text() == "mine"
    assert not (taken / "adapter_config.json").exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = clean(cli(server, "prompts", "export", "cli-out", str(afile), check=False))
    assert out.returncode == 2 and "is a file" in out.stderr
    clean(cli(server, "prompts", "export", "cli-out", str(taken), "--force"))
    assert (taken / "adapter_config.json").exists() and (taken / "keep.txt").exists()
    out = clean(cli(server, "jobs", "plot", done.name, "--out", str(afile / "x.png"), check=False))
    assert out.returncode == 2 and str(afile) in out.stderr


def test_serve_with_a_bad_bank_says_so_in_one_line(tmp_path: Path) -> None:
    out = run("serve", "--port", "0", "--db", str(tmp_path))
    assert out.returncode != 0 and "is a directory" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    secret = "s3cr3t-pw"
    out = run("serve", "--port", "0", "--db", f"postgresql://someone:{secret}@127.0.0.1:1/bank", timeout=180)
    assert out.returncode != 0 and "127.0.0.1" in out.stderr and "cannot open the bank" in out.stderr
    assert secret not in out.stderr + out.stdout and len(out.stderr.strip().splitlines()) == 1, out.stderr
    pw = tmp_path / "db.password"  # the way to keep it off the command line (and out of `ps`)
    pw.write_text(secret + "\n")
    out = run("serve", "--port", "0", "--db", "postgresql://someone@127.0.0.1:1/bank", "--db-password-file", str(pw),
              timeout=180)
    assert out.returncode != 0 and "cannot open the bank at postgresql://someone@127.0.0.1:1/bank" in out.stderr
    assert secret not in out.stderr + out.stdout


# 4. huge numbers -----------------------------------------------------------------------------------------------


def test_out_of_range_numbers_are_invalid_argument(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    huge = "cli-in/versions/99999999999999999999999"
    for args in (["classify", "--prompt", huge, "x"], ["prompts", "show", huge], ["prompts", "alias", huge, "prod"]):
        out = clean(cli(server, *args, check=False))
        assert out.returncode == 1 and "INVALID_ARGUMENT" in out.stderr and "version numbers run from 1" in out.stderr
    forged = base64.urlsafe_b64encode(json.dumps({"o": 10**30, "q": {}}).encode()).decode()
    code, msg = code_of(lambda: client.catalog.ListBackbones(cat.ListBackbonesRequest(page_token=forged), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in msg


# 5. one server per port ----------------------------------------------------------------------------------------


def test_a_second_server_on_a_taken_port_fails_at_once(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = server.address.rsplit(":", 1)[1]
    t0 = time.monotonic()
    out = run("serve", "--port", port, "--db", str(tmp_path / "other.db"))
    assert out.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert time.monotonic() - t0 < 60  # before Ray and the models load
    assert not (tmp_path / "other.db").exists()
    with Client(server.address) as c:  # the first server still answers every call
        assert [b.name for b in c.list_backbones()][:1] == ["backbones/tiny-enc"]


# 6. Ctrl-C -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["train", "watch"])
def test_ctrl_c_says_the_job_keeps_running(server, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in DATA))
    # as from a terminal: SIGINT at its default even when this test runs under a launcher that ignores it (a
    # background job of a shell without job control passes SIG_IGN on, and Python then installs no handler)
    base = ["env", "--default-signal=INT", sys.executable, "-m", "promptbank.cli", "--server", server.address]
    job = ""
    if how == "watch":
        job = cli(server, "train", "--task", f"ctrl-c-{how}", "--backbone", "tiny-enc", "--data", str(data), *SLOW,
                  "--no-wait").stdout.strip()
        cmd = [*base, "jobs", "watch", job]
    else:
        cmd = [*base, "train", "--task", f"ctrl-c-{how}", "--backbone", "tiny-enc", "--data", str(data), *SLOW]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running: list[jp.TrainJob] = []
    try:
        seen = proc.stderr.readline()  # type: ignore[union-attr]  # the first line: submitted and following
        assert seen, "the CLI printed nothing"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
        err = seen + rest
    finally:
        if proc.poll() is None:
            proc.kill()
        with Client(server.address) as c:  # even when the test fails: a 16,000-step job would hold the replica
            running = [j for j in c.list_jobs() if j.prompt == f"prompts/ctrl-c-{how}"]
            for j in running:
                c.cancel_job(j.name)
    assert proc.returncode == 130 and "Traceback" not in err, err
    name = job or running[0].name
    assert f"{name} keeps running" in err and f"promptbank jobs watch {name}" in err
    assert f"promptbank jobs cancel {name}" in err
    assert running and running[0].state in (jp.TrainJob.QUEUED, jp.TrainJob.RUNNING)  # it went on without us


# 7. one output style ---------------------------------------------------------------------------------------------


def test_lists_are_tables_with_headers_and_json_has_numbers(server) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        train(c, "cli-style")
    empty = clean(cli(server, "prompts", "list", "--tag", "no-such-tag"))
    assert empty.stdout.strip() == "no prompts"
    rows = clean(cli(server, "prompts", "versions", "cli-style")).stdout.splitlines()
    assert rows[0].split() == ["NAME", "KIND", "ALIASES", "EVAL_ACCURACY", "TAGS"] and "cli-style/versions/1" in rows[1]
    listed = [json.loads(line) for line in clean(cli(server, "prompts", "list", "--json")).stdout.splitlines()]
    mine = next(p for p in listed if p["name"] == "prompts/cli-style")
    assert mine["latest_version"] == 1 and mine["aliases"] == {"latest": 1}  # numbers, not "1"
    shown = json.loads(clean(cli(server, "prompts", "show", "cli-style", "--json")).stdout)
    assert shown["version"] == 1 and shown["shape"] == [4, 32]
    helped = clean(cli(server, "prompts", "export", "--help"))
    assert "ref" in helped.stdout and "dir" in helped.stdout and "--force" in helped.stdout


def test_request_ids_make_scripted_retries_safe(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in DATA))
    args = ["train", "--task", "cli-rid", "--backbone", "tiny-enc", "--data", str(data), "--virtual-tokens", "2",
            "--epochs", "1", "--no-wait", "--request-id", "rid-1"]
    first, again = clean(cli(server, *args)).stdout.strip(), clean(cli(server, *args)).stdout.strip()
    assert first.startswith("jobs/") and again == first  # the retry returned the first job, not a second one
    made = clean(cli(server, "prompts", "create", "cli-rid-p", "--labels", "a", "b", "--request-id", "rid-2", "--json"))
    retried = clean(cli(server, "prompts", "create", "cli-rid-p", "--labels", "a", "b", "--request-id", "rid-2",
                        "--json"))
    assert json.loads(made.stdout)["name"] == json.loads(retried.stdout)["name"] == "prompts/cli-rid-p"
    with Client(server.address) as c:
        c.wait_job(first, timeout=300)


def test_cancel_prints_one_line_and_completion_scripts(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        job = c.create_train_job("cli-cxl", "tiny-enc", DATA, hyperparameters=input_hp(
            num_virtual_tokens=2, epochs=1000, batch_size=4, patience=10000))
    out = clean(cli(server, "jobs", "cancel", job.name))
    assert out.stdout.count("\n") == 1 and out.stdout.startswith(f"{job.name}: cancel requested")
    for shell in ("bash", "zsh"):
        script = clean(run("completion", shell))
        assert script.returncode == 0 and "promptbank" in script.stdout and "classify" in script.stdout
    bash = tmp_path / "c.bash"
    bash.write_text(run("completion", "bash").stdout)
    check = subprocess.run(["bash", "-n", str(bash)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # valid bash
