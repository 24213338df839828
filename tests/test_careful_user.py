"""What a careful user meets, by class: each test runs the CLI (a subprocess, as a user runs it) or the SDK and
checks the exit code, that stderr holds one line naming the problem and no traceback, and that no value was
changed or dropped on the way."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from coordinator.rest.transcode import load_json
from promptbank import Client
from promptbank.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from promptbank_api.errors import InvalidArgument as DomainInvalid
from promptbank_api.files import read_labelled
from promptbank_api.names import parse_ref
from tests.test_server import DATA, HP


def run(*args: str, server: str = "localhost:1", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promptbank --server SERVER ARGS...` as a user types it; never a traceback."""
    out = subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", server, *args], capture_output=True,
                         text=True, timeout=120, input=stdin)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def one_line(out: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The last stderr line, after checking the exit code and that it names `words`."""
    err = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert all(w in err for w in words), err
    assert "[Errno" not in out.stderr, out.stderr
    return err


def csv_file(tmp_path: Path, body: bytes, name: str = "d.csv") -> str:
    path = tmp_path / name
    path.write_bytes(body)
    return str(path)


# 8. tracebacks or INTERNAL ------------------------------------------------------------------------------------


def test_bad_values_end_in_one_line_not_a_traceback(tmp_path: Path) -> None:
    one_line(run("serve", "--worker-cpus", "nan"), 2, "--worker-cpus", "finite")
    with pytest.raises(ValueError, match="row 0 names no prompt"):
        Client("localhost:1").classify_ensemble([([], "x")])
    with pytest.raises(TypeError, match=r"\(prompt, text\) pairs of strings; row 0 is 'task@alias'"):
        Client("localhost:1").classify(["task@alias"])  # type: ignore[list-item]
    with pytest.raises(DeadlineExceeded, match="server localhost:1 did not answer within 1 s"):
        Client("localhost:1").wait_ready(timeout=1)


# 9. values silently changed or dropped ------------------------------------------------------------------------


def test_a_file_that_would_change_its_rows_is_refused_naming_where(tmp_path: Path) -> None:
    cases = {
        b"text,label\ncaf\xe9 ok,pos\n": ("byte 14, line 2", "UTF-8"),  # latin-1 would change the text
        b"text,label,label\na,b,c\n": ("line 1", "'label' appears twice"),
        b"text,label\na,b,c\n": ("line 2", "3 cells", "2 columns"),
        b'text,label\nfine,pos\n"open,neg\nmore,pos\n': ("line 3", "never closed"),
    }
    for body, words in cases.items():
        path = csv_file(tmp_path, body)
        with pytest.raises(DomainInvalid) as err:
            read_labelled(path)
        assert all(w in str(err.value) for w in words), (body, str(err.value))
        one_line(run("train", "--task", "t", "--data", path), 2, path, *words)
    latin = csv_file(tmp_path, b"text,label\ncaf\xe9 ok,pos\nb,neg\n", "latin.csv")
    assert read_labelled(latin, encoding="latin-1").rows == [("caf\u00e9 ok", "pos"), ("b", "neg")]  # when named


def test_flags_and_arguments_are_taken_as_given_or_refused(tmp_path: Path) -> None:
    good = csv_file(tmp_path, b"text,label\na,pos\nb,neg\n")
    one_line(run("train", "--task", "t", "--data", good, "--max-rows", "-1"), 2, "--max-rows", ">= 1")
    one_line(run("classify", "--input", good, "some text"), 2, "not both", "some text")
    one_line(run("jobs", "list", server=""), 2, "--server", "empty")
    for flag, value, words in (("--data-root", "/nonexistent", ("not a directory",)), ("--grace", "-1", (">= 0",)),
                               ("--scale-down-after", "nan", ("finite",))):
        one_line(run("serve", flag, value), 2, flag, *words)
    with pytest.raises(ValueError, match="server address is empty"):
        Client("")
    with pytest.raises(ValueError, match="not both"):
        Client("localhost:1").create_train_job("t", "b", [("a", "pos")], dataset_uri="datasets/x")
    with pytest.raises(TypeError, match="labels must be a list of strings"):
        Client("localhost:1").create_train_job("t", "b", [("a", "pos")], labels="ab")
    for ref in (" sentiment", "sentiment ", "senti ment"):  # white space is part of what was written
        with pytest.raises(DomainInvalid, match="invalid prompt"):
            parse_ref(ref)


# 10. `latest` is reserved -------------------------------------------------------------------------------------


def test_latest_cannot_be_pointed_or_removed_and_versions_start_at_one(client: Client) -> None:
    job = client.create_train_job("careful-latest", "tiny-enc", DATA, hyperparameters=HP)
    version = client.wait_job(job.name, timeout=300).result_version
    assert version == "prompts/careful-latest/versions/1"
    for call in (lambda: client.set_alias("careful-latest", "latest", 1),
                 lambda: client.delete_alias("careful-latest", "latest")):
        with pytest.raises(InvalidArgument, match="'latest' is reserved"):
            call()
    with pytest.raises(InvalidArgument, match="version numbers start at 1"):
        client.set_alias("careful-latest", "prod", 0)
    assert client.classify([("careful-latest", "a text")])[0].version == version  # still resolves


# 11. errors that name the problem -----------------------------------------------------------------------------


def test_errors_name_the_flag_or_file(tmp_path: Path) -> None:
    for value in ("0", "-5", "nan"):
        one_line(run("--timeout", value, "jobs", "list"), 2, "--timeout", "seconds > 0")
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        Client("localhost:1", timeout=0)
    header_only = csv_file(tmp_path, b"text,label\n")
    one_line(run("train", "--task", "t", "--data", header_only), 2, header_only, "a header but no data rows")
    one_line(run("train", "--task", "t", "--data", header_only, "--max-rows", "0"), 2, "--max-rows")
    one_line(run("train", "--task", "t", "--data", header_only, "--seed", str(1 << 70)), 2, "--seed", "out of range")
    packed = csv_file(tmp_path, gzip.compress(b"text,label\n" + b"x,y\n" * 5000), "packed.csv")
    err = one_line(run("train", "--task", "t", "--data", packed), 2, "not UTF-8", "byte 1")
    assert len(err) < 200, err  # not kilobytes of the file as "columns"
    wide = csv_file(tmp_path, b"a" * 5000 + b",b\n1,2\n", "wide.csv")
    err = one_line(run("train", "--task", "t", "--data", wide), 2, "no column(s)")
    assert len(err) < 400, err
    one_line(run("jobs", "show", ""), 2, "job", "must not be empty")
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for extra in ((), ("--force",)):
        err = one_line(run("prompts", "export", "p/versions/1", str(a_file), *extra), 2, str(a_file), "is a file")
        assert "--force" not in err  # --force writes into folders; it would not help here


# 12. one voice ------------------------------------------------------------------------------------------------


def test_one_voice_for_files_pipes_and_output(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "nope.jsonl")
    one_line(run("classify", "--input", missing), 2, f"{missing}: no such file or directory")
    one_line(run("--token-file", str(tmp_path / "none" / "t"), "jobs", "list"), 2, "no such file or directory")
    # a reader that leaves early: no message, the shell's SIGPIPE status
    cmd = (f"{sys.executable} -m promptbank.cli --server {server.address} backbones list --json | head -c 1 >/dev/null; "
           "echo ${PIPESTATUS[0]}")
    with Client(server.address) as c:
        for i in range(3):
            c.create_prompt(f"careful-voice-{i}", [f"label-{n}-{'x' * 20}" for n in range(1000)])
    cmd = cmd.replace("backbones list", "prompts list")
    piped = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert piped.stdout.strip() == "141" and "Traceback" not in piped.stderr and "Errno" not in piped.stderr, piped
    listed = run("prompts", "list", server=server.address).stdout.splitlines()
    assert listed[0].split() == ["NAME", "LABELS", "LATEST", "ALIASES", "TAGS"]
    assert max(map(len, listed)) < 200  # 1,000 labels of 28 characters do not make 28,000-wide lines
    one_line(run("prompts", "show", "careful-voice-0", server=server.address), 1, "careful-voice-0")  # no versions
    made = run("prompts", "create", "careful-voice-x", "--labels", "a", "b", server=server.address).stdout
    assert made.splitlines()[0] == "name: prompts/careful-voice-x" and not made.startswith("{")
    for args in (("prompts", "delete", "careful-voice-x", "--json"),):
        out = run(*args, server=server.address)
        assert out.returncode == 0 and json.loads(out.stdout) == {"deleted": "careful-voice-x"}, out.stderr
    backbones = [json.loads(line) for line in run("backbones", "list", "--json", server=server.address).stdout.splitlines()]
    assert {b["architecture"] for b in backbones} <= {"encoder", "causal_lm", "seq2seq", "masked_lm"}
    helps = run("train", "--help").stdout + run("serve", "--help").stdout + run("classify", "--help").stdout
    said = " ".join(helps.split())
    for flag in ("--backbone BACKBONE the backbone", "--text-column TEXT_COLUMN the data's text column",
                 "--port PORT the gRPC port", "--log-level {DEBUG,INFO,WARNING,ERROR} the least severe",
                 "--json one JSON object a row"):
        assert flag in said, flag
    assert "(default 120)" in " ".join(run("--help").stdout.split())


# 13. waiting without a word -----------------------------------------------------------------------------------


def test_watching_through_an_outage_says_so_and_gives_up_at_a_named_bound() -> None:
    heard: list[str] = []
    with pytest.raises(Unavailable, match=r"gave up retrying after \d+ s \(the reconnect limit is 2 s\)"):
        for _ in Client("localhost:1").watch_job("abc", reconnect_for=2, on_retry=heard.append):
            pass
    assert len(heard) == 1 and "lost the connection to localhost:1" in heard[0]
    out = run("jobs", "watch", "abc", "--reconnect-for", "2")
    assert "promptbank: lost the connection to localhost:1" in out.stderr
    one_line(out, 1, "UNAVAILABLE", "reconnect limit is 2 s")
    assert grpc.StatusCode.UNAVAILABLE.name in out.stderr


def test_a_job_with_costly_steps_is_grouped_apart_and_warned(server) -> None:  # type: ignore[no-untyped-def]
    """1,000 label texts read through the prompt make each step ~60x a small job's: such a job is told so when
    queued and trains in a group of its own, while small jobs queued with it train together."""
    many = [f"label {n}" for n in range(1000)]
    rows = [(f"text number {i}", many[i % 1000]) for i in range(1000)]
    small = [(t, lab) for t, lab in DATA]
    with Client(server.address) as c:
        hp = HP.__class__()
        hp.CopyFrom(HP)
        hp.max_steps = 2
        heavy = c.create_train_job("careful-heavy", "tiny-enc", rows, hyperparameters=hp, eval_fraction=0.0)
        light = [c.create_train_job(f"careful-light-{i}", "tiny-enc", small, hyperparameters=hp) for i in range(2)]
        queued = next(e.message for e in c.watch_job(heavy.name) if e.message.startswith("queued"))
        assert "reads 1000 label texts through the prompt" in queued and "co-batched only with jobs of like cost" \
            in queued, queued
        starts = {}
        for job in (heavy, *light):
            done = c.wait_job(job.name, timeout=600)
            assert done.state == done.SUCCEEDED, done.error
            starts[job.name] = next(e.message for e in c.watch_job(job.name) if e.message.startswith("starting"))
        assert "co-batched" not in starts[heavy.name], starts
        assert all("co-batched with 1 other job" in starts[j.name] for j in light), starts


def test_a_generation_that_cannot_finish_in_the_context_is_refused_before_a_token(client: Client) -> None:
    """prompt + text + max_new_tokens beyond the backbone's positions: INVALID_ARGUMENT with the numbers before
    anything streams (it used to stream part of the output, then fail INTERNAL)."""
    from tests.test_server import train as train_job

    train_job(client, "careful-ctx", backbone="tiny-lm", labels=["negative", "positive"],
              label_words=["bad", "good"])
    long_text = "." * 450  # within the test server's 500-character limit; one token per character: > 256 positions
    got: list[str] = []
    with pytest.raises(InvalidArgument, match=r"positions, but backbone .* has \d+; send a shorter text"):
        for piece in client.generate("careful-ctx", long_text, max_new_tokens=8):
            got.append(piece)
    assert got == []
    with pytest.raises(InvalidArgument, match=r"\+ max_new_tokens \(512\) = \d+ positions.*ask for at most \d+"):
        list(client.generate("careful-ctx", "a short text", max_new_tokens=512))
    served = client.generate_full("careful-ctx", "a short text", max_new_tokens=4)  # what fits still serves
    assert served.finish_reason and served.generated_tokens >= 1


# the rerun's classes (scripts/careful_user.py; docs/careful-user-cases.md) ------------------------------------


def test_rerun_8_bad_values_and_files_end_in_a_named_error(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An empty backbone NAME, a client certificate without its key and a bad row deep in an upload each said a
    traceback, a C-level abort or UNKNOWN; a string where a datetime goes said AttributeError."""
    one_line(run("serve", "--backbone", "=x"), 2, "--backbone", "NAME is empty")
    cert = tmp_path / "c.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    one_line(run("--tls-cert", str(cert), "jobs", "list"), 2, "--tls-key")
    with pytest.raises(TypeError, match=r"upload_dataset takes \(text, label\) pairs of strings; row 2 is \('c', None\)"):
        Client(server.address).upload_dataset([("a", "pos"), ("b", "neg"), ("c", None)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="created_after must be a datetime"):
        Client("localhost:1").list_prompts(created_after="2020-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="after must be a datetime"):
        Client("localhost:1").list_audit_events(after="2020")  # type: ignore[arg-type]


def test_rerun_9_nothing_is_reshaped_wrapped_or_dropped(client: Client, tmp_path: Path) -> None:
    """A port past 65535 (gRPC takes it modulo 65536), a URL as --server, a plot name without .png (matplotlib
    adds one), a string as an example row ("ab" -> ("a", "b")), most=0 ("no limit"), label texts without labels
    and a job's task fields on an existing prompt (both ignored), empty tags, repeated JSON names and a closed
    stdout were all taken."""
    one_line(run("--server", "127.0.0.1:99999", "jobs", "list"), 2, "--server", "port 99999")
    one_line(run("--server", "http://127.0.0.1:8051/", "jobs", "list"), 2, "--server", "is a URL")
    one_line(run("jobs", "plot", "abc", "--out", str(tmp_path / "plot")), 2, "--out", "name a .png file")
    one_line(run("jobs", "plot", "abc", "--out", str(tmp_path)), 2, "--out", "is a directory")
    for call in (lambda: client.upload_dataset(["ab"]), lambda: client.create_train_job("careful-x", "tiny-enc", ["ab"])):
        with pytest.raises(TypeError, match="row 0 is 'ab'"):
            call()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="most=0 is out of range"):
        client.list_audit_events(most=0)
    with pytest.raises(InvalidArgument, match="label_texts has 1 entries but there are 2 labels"):
        client.create_train_job("careful-texts", "tiny-enc", DATA, label_texts=["only one"], hyperparameters=HP)
    client.create_prompt("careful-fixed", ["negative", "positive"])
    with pytest.raises(FailedPrecondition, match="has pooling 'all', the job asks for 'text'"):
        client.create_train_job("careful-fixed", "tiny-enc", DATA, pooling="text", hyperparameters=HP)
    with pytest.raises(InvalidArgument, match="tag '' is empty"):
        client.update_prompt("careful-fixed", tags=["ok", ""])
    with pytest.raises(DomainInvalid, match="names 'rows' twice"):
        load_json(b'{"rows": [], "rows": [{"prompt": "p", "text": "x"}]}')
    closed = subprocess.run(["bash", "-c", f"{sys.executable} -m promptbank.cli --server localhost:1 jobs list >&-"],
                            capture_output=True, text=True, timeout=60)
    assert closed.returncode == 2 and "stdout is closed" in closed.stderr, closed


def test_rerun_11_errors_name_the_file_flag_or_field(client: Client, tmp_path: Path) -> None:
    """A binary token file, a CA that is not PEM (every handshake failed: DEADLINE_EXCEEDED), an empty data file
    ("no column(s)"), a global flag after the command ("unrecognized arguments"), an empty --prompt ("give
    --prompt REF"), SDK values of the wrong type or width (refused in protobuf's words), an update of nothing
    ("update_mask paths []") and a relative --data-uri ("outside the data roots", though it lay in one) did not
    say what was wrong."""
    binary = csv_file(tmp_path, b"\xff\xfe\x00", "t.token")
    one_line(run("--token-file", binary, "jobs", "list"), 2, f"--token-file {binary} is not text")
    not_pem = csv_file(tmp_path, b"hello", "ca.pem")
    one_line(run("--tls-ca", not_pem, "jobs", "list"), 2, f"tls_ca {not_pem} is not PEM")
    empty = csv_file(tmp_path, b"", "empty.csv")
    one_line(run("train", "--task", "t", "--data", empty), 2, f"{empty} is empty (0 bytes)")
    one_line(run("generate", "--prompt", "p", "--max-new-tokens", str(1 << 40), "x"), 2, "--max-new-tokens",
             "out of range")
    one_line(run("jobs", "list", "--server", "x:1"), 2, "--server is a global flag", "before the command")
    one_line(run("classify", "--prompt", "", "x"), 2, "--prompt", "must not be empty")
    c = Client("localhost:1")
    for call, words in ((lambda: c.generate_full("p", "x", max_new_tokens=2.5), "max_new_tokens must be an integer"),
                        (lambda: c.generate_full("p", 5), "text must be a string"),  # type: ignore[arg-type]
                        (lambda: c.generate_full("p", "x", seed=1 << 64), "seed=18446744073709551616 is out of range"),
                        (lambda: c.set_alias("p", "prod", "1"), "version must be an integer"),  # type: ignore[arg-type]
                        (lambda: c.classify([(5, "x")]), r"row 0 is \(5, 'x'\)")):  # type: ignore[list-item]
        with pytest.raises((TypeError, ValueError), match=words):
            call()
    with pytest.raises(ValueError, match="give tags, owner and/or description"):
        client.update_prompt("careful-anything")
    with pytest.raises(PermissionDenied, match=r"'d.csv' is outside .*\(a relative path is read from the server's "
                                               "working directory"):
        client.create_train_job("careful-rel", "tiny-enc", dataset_uri="d.csv")


def test_rerun_12_demo_flags_are_checked_before_anything_starts() -> None:
    """The demo started a coordinator, then failed on the server (or hung) for row counts, epochs and ports that
    it could have refused at once."""
    for flag, value in (("--train-rows", "0"), ("--eval-rows", "-1"), ("--epochs", "0"), ("--port", "70000")):
        one_line(run("demo", flag, value), 2, flag)


def test_outcome_files_are_read_as_strictly_as_training_data(tmp_path: Path) -> None:
    """`outcomes record FILE`: a compressed file, a byte that is not UTF-8, an unclosed quote, a header without
    result_id: each is refused before anything is sent, naming the file and what is wrong."""
    packed = tmp_path / "o.csv.gz"
    packed.write_bytes(gzip.compress(b"result_id,label\nabc,pos\n"))
    cases = [(str(packed), ("o.csv.gz", "not UTF-8")),
             (csv_file(tmp_path, b"result_id,label\nabc,caf\xe9\n", "latin.csv"), ("latin.csv", "line 2")),
             (csv_file(tmp_path, b'result_id,label\n"abc,pos\n', "open.csv"), ("open.csv", "never closed")),
             (csv_file(tmp_path, b"id,label\nabc,pos\n", "head.csv"), ("head.csv", "result_id")),
             (csv_file(tmp_path, b"result_id,label,label\nabc,pos,neg\n", "twice.csv"), ("twice.csv", "twice"))]
    for path, words in cases:
        one_line(run("outcomes", "record", path), 2, *words)
