"""The careful user's command-line cases: global flags, train, classify, generate, jobs, prompts, backbones,
tokens, audit, demo's pieces, shell pipes and `serve`'s flags (scripts/careful_user.py runs and judges them)."""

from __future__ import annotations

import json
from collections.abc import Callable

from careful_cases import cli, json_lines, serve, shell, stdout_is
from careful_user import Case, Seen, bad, either, ok

TRAIN = "train --backbone enc --max-steps 2 --batch-size 4 --kind input"  # a quick job: a new user's small file


def _examples(n: int) -> Callable[[Seen], str | None]:
    """The finished job (--json) trained and held out `n` examples in all."""
    def check(seen: Seen) -> str | None:
        m = json.loads(seen.stdout)["metrics"]
        got = m.get("train_examples", 0) + m.get("eval_examples", 0)
        return None if got == n else f"{got:g} examples used, not {n}"
    return check


def global_flags() -> list[Case]:
    out = [cli("global", a, bad(*w, code=c)) for a, w, c in (
        ('--server "" jobs list', ("--server", "empty"), 2),
        ('--server "   " jobs list', ("--server", "empty"), 2),
        ("--server $CLOSED jobs list", ("UNAVAILABLE", "$CLOSED"), 1),
        ("--server no-such-host.invalid:50051 jobs list", ("UNAVAILABLE", "no-such-host.invalid"), 1),
        ("--server 127.0.0.1:99999 jobs list", ("--server", "99999"), 2),
        ("--server http://127.0.0.1:1/ jobs list", ("--server", "http://"), 2),
        ("--timeout 0 jobs list", ("--timeout", "> 0"), 2),
        ("--timeout -1 jobs list", ("--timeout",), 2),
        ("--timeout nan jobs list", ("--timeout",), 2),
        ("--timeout inf jobs list", ("--timeout",), 2),
        ("--timeout soon jobs list", ("--timeout", "soon"), 2),
        ("--timeout 0.000001 jobs list", ("DEADLINE_EXCEEDED",), 1),
        ("--token-file $W/missing.token jobs list", ("$W/missing.token", "no such file"), 2),
        ("--token-file $W/dir jobs list", ("$W/dir", "is a directory"), 2),
        ("--token-file $W/tok_empty jobs list", ("--token-file", "empty"), 2),
        ("--token-file $W/tok_bin jobs list", ("--token-file", "$W/tok_bin"), 2),
        ("--tls-ca $W/missing.pem jobs list", ("$W/missing.pem",), 2),
        ("--tls-ca $W/not.pem --timeout 3 jobs list", ("not.pem",), 2),
        ("--tls-cert $W/not.pem jobs list", ("--tls-key",), 2),
        ("", ("COMMAND",), 2),
        ("fly", ("fly", "choose from"), 2),
        ("jobs list --bogus", ("--bogus",), 2),
        ("completion fish", ("fish", "choose from"), 2),
    )]
    out += [cli("global", "--help", ok("--server", "--timeout")),
            cli("global", "completion bash", ok("promptbank")),
            cli("global", "--server localhost:1 --help", ok("COMMAND")),
            cli("global", "jobs list", ok("NAME", "STATE"), env={"PROMPTBANK_SERVER": "$S"}),
            cli("global", "jobs list", bad("PROMPTBANK_SERVER", code=2), env={"PROMPTBANK_SERVER": "   "})]
    return out


def train() -> list[Case]:
    out = [
        cli("train", f"{TRAIN} --task c-ok --data $W/good.csv", ok(check=stdout_is("prompts/c-ok/versions/1"))),
        cli("train", f"{TRAIN} --task c-json --data $W/good.csv --json", ok(check=json_lines("state", "SUCCEEDED"))),
        cli("train", f"{TRAIN} --task c-nowait --data $W/good.csv --no-wait", ok("jobs/")),
        cli("train", f"{TRAIN} --task c-tsv --data $W/good.tsv", ok("prompts/c-tsv/versions/1")),
        cli("train", f"{TRAIN} --task c-jsonl --data $W/good.jsonl", ok("prompts/c-jsonl/versions/1")),
        cli("train", f"{TRAIN} --task c-json-array --data $W/good.json", ok("prompts/c-json-array/versions/1")),
        cli("train", f"{TRAIN} --task c-crlf --data $W/crlf.csv", ok("prompts/c-crlf/versions/1")),
        cli("train", f"{TRAIN} --task c-bom --data $W/bom.csv", ok("prompts/c-bom/versions/1")),
        cli("train", f"{TRAIN} --task c-uni --data $W/uni.csv --json", ok("b\\u00f6n")),
        cli("train", f"{TRAIN} --task c-num --data $W/num.csv", ok("prompts/c-num/versions/1")),
        cli("train", f"{TRAIN} --task c-latin --data $W/latin1.csv --encoding latin-1", ok("prompts/c-latin/versions/1")),
        cli("train", f"{TRAIN} --task c-blank --data $W/blank.csv", ok("prompts/c-blank/versions/1", "1")),
        cli("train", f"{TRAIN} --task c-rows --data $W/good.csv --max-rows 4 --json", ok(check=_examples(4))),
        cli("train", f"{TRAIN} --task c-uri --data-uri $W/data/good.csv", ok("prompts/c-uri/versions/1")),
        cli("train", f"{TRAIN} --task c-uri2 --data-uri good.csv", bad("'good.csv'", "relative path", code=1)),
        cli("train", f"{TRAIN} --task c-big --data $W/big.csv --no-wait", ok("uploaded 25000 examples", "jobs/")),
        cli("train", f"{TRAIN} --task c-rid --data $W/good.csv --no-wait --request-id same-1", ok("jobs/")),
        cli("train", f"{TRAIN} --task c-alias --data $W/good.csv --alias prod --alias canary", ok("versions/1")),
        cli("train", f"{TRAIN} --task c-eval0 --data $W/good.csv --eval-fraction 0 --json", ok('"eval_examples": 0')),
        cli("train", f"{TRAIN} --task c-init --data $W/good.csv --init-from t1/versions/1", ok("versions/1")),
        cli("train", f"{TRAIN} --task c-nearest --data $W/good.csv --init-from nearest", ok("versions/1")),
        cli("train", "train --help", ok("--max-rows", "--encoding")),
    ]
    for args, words, code in (
        ("--task t --data $W/missing.csv", ("$W/missing.csv",), 2),
        ("--task t --data $W/dir", ("$W/dir", "directory"), 2),
        ("--task t --data $W/empty.csv", ("$W/empty.csv", "empty"), 2),
        ("--task t --data $W/header.csv", ("$W/header.csv", "no data rows"), 2),
        ("--task t --data $W/packed.csv", ("$W/packed.csv", "UTF-8"), 2),
        ("--task t --data $W/latin1.csv", ("$W/latin1.csv", "UTF-8"), 2),
        ("--task t --data $W/latin1.csv --encoding klingon", ("klingon",), 2),
        ("--task t --data $W/dup.csv", ("'label' appears twice",), 2),
        ("--task t --data $W/extra.csv", ("line 2", "3 cells"), 2),
        ("--task t --data $W/unclosed.csv", ("line 3", "never closed"), 2),
        ("--task t --data $W/wide.csv", ("no column",), 2),
        ("--task t --data $W/nolabel.csv", ("label",), 2),
        ("--task t --data $W/good.csv --label-column y", ("'y'",), 2),
        ("--task t --data $W/good.csv --text-column ''", ("text",), 2),
        ("--task t --data $W/bad.json", ("$W/bad.json",), 2),
        ("--task t --data $W/notes.txt", ("$W/notes.txt",), 2),
        ("--task t --data $W/good.csv --data-uri x.csv", ("--data", "--data-uri"), 2),
        ("--task t", ("--data", "--data-uri"), 2),
        ("--task '' --data $W/good.csv", ("''",), 1),
        ("--task ' spaced' --data $W/good.csv", ("' spaced'",), 1),
        ("--task UPPER --data $W/good.csv", ("'UPPER'",), 1),
        ("--task $(printf 'x%.0s' {1..200}) --data $W/good.csv", ("prompt name",), 1),
        ("--task t --data $W/good.csv --backbone nope", ("nope",), 1),
        ("--task t --data $W/good.csv --backbone ''", ("backbone",), 1),
        ("--task t --data-uri /etc/passwd", ("/etc/passwd",), 1),
        ("--task t --data-uri ../../etc/passwd", ("../../etc/passwd",), 1),
        ("--task t --data-uri datasets/nope", ("datasets/nope",), 1),
        ("--task t --data-uri missing.csv", ("missing.csv",), 1),
        ("--task t --data $W/good.csv --max-steps -1", ("max_steps",), 1),
        ("--task t --data $W/good.csv --max-steps 2.5", ("--max-steps", "2.5"), 2),
        ("--task t --data $W/good.csv --max-steps many", ("--max-steps", "many"), 2),
        ("--task t --data $W/good.csv --lr nan", ("learning_rate",), 1),
        ("--task t --data $W/good.csv --lr -1", ("learning_rate",), 1),
        ("--task t --data $W/good.csv --lr inf", ("learning_rate",), 1),
        ("--task t --data $W/good.csv --batch-size 0", ("batch_size",), 1),
        ("--task t --data $W/good.csv --batch-size 100000000", ("batch_size",), 1),
        ("--task t --data $W/good.csv --virtual-tokens 0", ("num_virtual_tokens",), 1),
        ("--task t --data $W/good.csv --virtual-tokens 5000", ("num_virtual_tokens",), 1),
        ("--task t --data $W/good.csv --epochs -2", ("epochs",), 1),
        ("--task t --data $W/good.csv --eval-fraction 1", ("eval_fraction",), 1),
        ("--task t --data $W/good.csv --eval-fraction -0.1", ("eval_fraction",), 1),
        ("--task t --data $W/good.csv --eval-fraction nan", ("eval_fraction",), 1),
        ("--task t --data $W/good.csv --warmup-fraction 2", ("warmup_fraction",), 1),
        ("--task t --data $W/good.csv --weight-decay -1", ("weight_decay",), 1),
        ("--task t --data $W/good.csv --seed 1180591620717411303424", ("--seed", "out of range"), 2),
        ("--task t --data $W/good.csv --max-rows 0", ("--max-rows",), 2),
        ("--task t --data $W/good.csv --max-rows -1", ("--max-rows",), 2),
        ("--task t --data $W/good.csv --max-rows lots", ("--max-rows", "lots"), 2),
        ("--task t --data $W/good.csv --labels pos", ("'pos'",), 1),
        ("--task t --data $W/good.csv --labels pos other", ("neg",), 1),
        ("--task t1 --data $W/good.csv --label-texts good bad", ("label_texts",), 1),
        ("--task t1 --data $W/good.csv --pooling text", ("pooling",), 1),
        ("--task t --data $W/good.csv --labels pos neg pos", ("pos",), 1),
        ("--task t --data $W/good.csv --labels pos ''", ("label",), 1),
        ("--task t --data $W/good.csv --label-texts only-one", ("label_texts",), 1),
        ("--task t --data $W/good.csv --pooling max", ("--pooling", "max"), 2),
        ("--task t --data $W/good.csv --kind shallow", ("--kind", "shallow"), 2),
        ("--task t --data $W/good.csv --init-from nope/versions/3", ("nope",), 1),
        ("--task t --data $W/good.csv --alias latest", ("'latest' is reserved",), 1),
        ("--task t --data $W/good.csv --alias ''", ("alias",), 1),
        ("--task t --data $W/good.csv --alias 'has space'", ("'has space'",), 1),
        ("--task t --data $W/good.csv --reconnect-for 0", ("--reconnect-for",), 2),
        ("--task t --data $W/good.csv --frobnicate", ("--frobnicate",), 2),
        ("--task t --data $W/good.csv --server $CLOSED", ("--server", "before the command"), 2),
        ("--task t --data $W/good.csv --lr=nan --timeout=5", ("--timeout", "before the command"), 2),
    ):
        out.append(cli("train", f"{TRAIN} {args}", bad(*words, code=code, latest="latest" in args)))
    out.append(cli("train", f"{TRAIN} --task c-rid2 --data $W/good.csv --no-wait --request-id same-1",
                   either("same-1")))
    return out


def classify() -> list[Case]:
    text = "na\u00efve caf\u00e9 \U0001f600 \u4e2d\u6587"
    out = [
        cli("classify", "classify --prompt t1 'a great movie'", ok("LABEL", "prompts/t1/versions/1")),
        cli("classify", f"classify --prompt t1 --json '{text}'", ok(check=json_lines("text", text))),
        cli("classify", "classify --prompt t1 --json '  leading and trailing  '",
            ok(check=json_lines("text", "  leading and trailing  "))),
        cli("classify", "classify --prompt t1@prod --json x", ok(check=json_lines("version", "prompts/t1/versions/1"))),
        cli("classify", "classify --prompt t1@latest --json x", ok(check=json_lines("version", "prompts/t1/versions/1"))),
        cli("classify", "classify --prompt prompts/t1/versions/1 x", ok("pos")),
        cli("classify", "classify --prompt t1 -- -5", ok("-5")),
        cli("classify", "classify --input $W/rows.jsonl --json", ok("prompts/g1/versions/1", "prompts/t1/versions/1")),
        cli("classify", "classify --input $W/rows_noprompt.jsonl --prompt t1", ok("prompts/t1/versions/1")),
        cli("classify", "classify --prompt t1 ''", either("text")),
    ]
    for args, words, code in (
        ("--prompt t1", ("TEXT",), 2),
        ("'a text'", ("--prompt",), 2),
        ("--prompt nope x", ("nope",), 1),
        ("--prompt '' x", ("--prompt", "empty"), 2),
        ("--prompt ' t1' x", ("' t1'",), 1),
        ("--prompt t1@nope x", ("nope",), 1),
        ("--prompt t1/versions/0 x", ("version numbers",), 1),
        ("--prompt t1/versions/99 x", ("99", "t1"), 1),
        ("--prompt t1/versions/-1 x", ("t1/versions/-1",), 1),
        ("--prompt t1/versions/99999999999999999999 x", ("version numbers",), 1),
        ("--prompt t1@ x", ("'t1@'",), 1),
        ("--prompt @prod x", ("'@prod'",), 1),
        ("--prompt t1 $(head -c 30000 /dev/zero | tr '\\0' a)", ("characters",), 1),
        ("--input $W/missing.jsonl", ("$W/missing.jsonl", "no such file"), 2),
        ("--input $W/dir", ("$W/dir", "directory"), 2),
        ("--input $W/rows_empty.jsonl", ("$W/rows_empty.jsonl", "no rows"), 2),
        ("--input $W/rows_blank.jsonl", ("$W/rows_blank.jsonl", "no rows"), 2),
        ("--input $W/rows_bad.jsonl", ("$W/rows_bad.jsonl", "2"), 2),
        ("--input $W/rows_num.jsonl", ("'text'", "5"), 2),
        ("--input $W/rows_noprompt.jsonl", ("prompt",), 2),
        ("--input $W/rows_list.jsonl", ("$W/rows_list.jsonl", "1"), 2),
        ("--input $W/rows_latin1.jsonl", ("$W/rows_latin1.jsonl", "UTF-8"), 2),
        ("--input $W/packed.csv", ("$W/packed.csv",), 2),
        ("--input $W/rows.jsonl extra", ("not both", "extra"), 2),
        ("--prompt g1 --server $CLOSED x", ("--server", "before the command"), 2),
    ):
        out.append(cli("classify", f"classify {args}", bad(*words, code=code)))
    out.append(cli("classify", "--server $CLOSED classify --prompt g1 x", bad("UNAVAILABLE", "$CLOSED", code=1)))
    out.append(cli("classify", "classify --prompt t1 " + " ".join(f"t{i}" for i in range(2000)), bad("rows", code=1)))
    return out


def generate() -> list[Case]:
    out = [
        cli("generate", "generate --prompt g1 --max-new-tokens 4 'once upon'", ok(check=lambda s: None if s.stdout.strip()
                                                                                    else "no text came out")),
        cli("generate", "generate --backbone lm --max-new-tokens 3 hello", ok()),
        cli("generate", "generate --prompt g1 --max-new-tokens 3 --usage hi", ok("finish_reason=", "generated_tokens=3")),
        cli("generate", "generate --prompt g1 --max-new-tokens 3 --temperature 0.7 --top-p 0.9 --top-k 5 --seed 7 hi",
            ok()),
        cli("generate", "generate --prompt g1 --max-new-tokens 3 ''", either("text")),
    ]
    for args, words, code in (
        ("--prompt g1 --max-new-tokens 0 hi", ("max_new_tokens",), 1),
        ("--prompt g1 --max-new-tokens -1 hi", ("max_new_tokens",), 1),
        ("--prompt g1 --max-new-tokens 100000 hi", ("max_new_tokens",), 1),
        ("--prompt g1 --max-new-tokens ten hi", ("--max-new-tokens", "ten"), 2),
        ("--prompt g1 --max-new-tokens 99999999999999999999 hi", ("--max-new-tokens",), 2),
        ("--prompt g1 --temperature nan hi", ("temperature",), 1),
        ("--prompt g1 --temperature -1 hi", ("temperature",), 1),
        ("--prompt g1 --temperature inf hi", ("temperature",), 1),
        ("--prompt g1 --top-p 0 hi", ("top_p",), 1),
        ("--prompt g1 --top-p 1.5 hi", ("top_p",), 1),
        ("--prompt g1 --top-k -1 hi", ("top_k",), 1),
        ("--prompt g1 --top-k 5000 hi", ("top_k",), 1),
        ("--prompt g1 --stop a --stop b --stop c --stop d --stop e hi", ("stop",), 1),
        ("--prompt g1 --stop '' hi", ("stop",), 1),
        ("--prompt g1 --seed 18446744073709551616 hi", ("--seed", "out of range"), 2),
        ("--prompt g1 one two", ("one TEXT",), 2),
        ("--prompt t1 hi", ("enc",), 1),
        ("--prompt nope hi", ("nope",), 1),
        ("--backbone nope hi", ("nope",), 1),
        ("--backbone enc hi", ("enc",), 1),
        ("--prompt g1 --backbone lm hi", ("--backbone", "--prompt"), 2),
        ("hi", ("--prompt", "--backbone"), 2),
        ("--prompt g1", ("TEXT",), 2),
        ("--prompt g1 $(head -c 30000 /dev/zero | tr '\\0' a)", ("characters",), 1),
    ):
        out.append(cli("generate", f"generate {args}", bad(*words, code=code)))
    return out


def jobs() -> list[Case]:
    out = [
        cli("jobs", "jobs list", ok("NAME", "STATE", "$JOB")),
        cli("jobs", "jobs list --json", ok(check=lambda s: None if all(ln.startswith("{") for ln in s.stdout.splitlines())
                                            else "not one JSON object a line")),
        cli("jobs", "jobs show $JOB", ok("state: SUCCEEDED")),
        cli("jobs", "jobs show $JOB --json", ok(check=json_lines("state", "SUCCEEDED"))),
        cli("jobs", "jobs watch $JOB", ok("SUCCEEDED")),
        cli("jobs", "jobs watch $JOB --json", ok(check=json_lines("state", "SUCCEEDED"))),
        cli("jobs", "jobs plot $JOB --out $W/loss.png", ok("$W/loss.png")),
        cli("jobs", "jobs cancel $JOB", either("SUCCEEDED")),
        cli("jobs", "jobs plot $JOB --out $W/new/dir/x.png", ok("$W/new/dir/x.png")),
    ]
    for args, words, code in (
        ("jobs show ''", ("job", "empty"), 2),
        ("jobs show nope", ("nope",), 1),
        ("jobs show jobs/", ("jobs/",), 1),
        ("jobs show ../../etc/passwd", ("../../etc/passwd",), 1),
        ("jobs show $(printf 'x%.0s' {1..5000})", ("job",), 1),
        ("jobs watch nope", ("nope",), 1),
        ("jobs watch $JOB --reconnect-for 0", ("--reconnect-for",), 2),
        ("jobs watch $JOB --reconnect-for nan", ("--reconnect-for",), 2),
        ("jobs cancel nope", ("nope",), 1),
        ("jobs plot nope --out $W/x.png", ("nope",), 1),
        ("jobs plot $JOB --out $W/plot", ("$W/plot", ".png"), 2),
        ("jobs plot $JOB --out $W/plot.txt", ("$W/plot.txt", ".png"), 2),
        ("jobs plot $JOB --out $W/dir", ("$W/dir",), 2),
        ("jobs", ("ACTION",), 2),
        ("jobs rerun x", ("rerun",), 2),
        ("--server $CLOSED jobs watch $JOB --reconnect-for 2", ("UNAVAILABLE", "reconnect limit is 2 s"), 1),
    ):
        out.append(cli("jobs", args, bad(*words, code=code), timeout=60))
    return out


def prompts() -> list[Case]:
    out = [
        cli("prompts", "prompts list", ok("NAME", "t1")),
        cli("prompts", "prompts list --json", ok('"name": "prompts/t1"')),
        cli("prompts", "prompts list --tag nope", ok("no prompts")),
        cli("prompts", "prompts list --created-after 2999-01-01", ok("no prompts")),
        cli("prompts", "prompts list --label pos --backbone enc", ok("t1")),
        cli("prompts", "prompts show t1", ok("prompts/t1/versions/1")),
        cli("prompts", "prompts show t1@prod --json", ok(check=json_lines("name", "prompts/t1/versions/1"))),
        cli("prompts", "prompts versions t1", ok("prompts/t1/versions/1", "input")),
        cli("prompts", "prompts history t1", ok("prod")),
        cli("prompts", "prompts create p-new --labels a b --tags x --owner me --description 'd \u00e9'",
            ok("name: prompts/p-new", "d \u00e9")),
        cli("prompts", "prompts create p-json --labels a b --json", ok(check=json_lines("name", "prompts/p-json"))),
        cli("prompts", "prompts update p-new --tags y z", ok("y, z")),
        cli("prompts", "prompts update p-new --owner '' --json", ok(check=json_lines("owner", ""))),
        cli("prompts", "prompts alias t1/versions/1 canary", ok("t1@canary -> prompts/t1/versions/1")),
        cli("prompts", "prompts unalias t1 canary", ok("removed t1@canary")),
        cli("prompts", "prompts tag t1/versions/1 --tags good '\u2713'", ok("\u2713")),
        cli("prompts", "prompts export t1/versions/1 $W/out1", ok("$W/out1")),
        cli("prompts", "prompts export t1@prod $W/out1 --force --json", ok('"exported"')),
        cli("prompts", "prompts import $W/adapter --task p-imp --backbone enc --labels neg pos", ok("prompts/p-imp/versions/1")),
        cli("prompts", "prompts delete p-json", ok("deleted p-json")),
    ]
    for args, words, code in (
        ("prompts list --created-after yesterday", ("--created-after", "yesterday"), 2),
        ("prompts show nope", ("nope",), 1),
        ("prompts show ''", ("''",), 1),
        ("prompts show t1@nope", ("nope",), 1),
        ("prompts show t1/versions/0", ("version numbers",), 1),
        ("prompts show p-new", ("p-new",), 1),
        ("prompts versions nope", ("nope",), 1),
        ("prompts history nope", ("nope",), 1),
        ("prompts create p-new --labels a b", ("p-new",), 1),
        ("prompts create '' --labels a b", ("''",), 1),
        ("prompts create 'a b' --labels a b", ("'a b'",), 1),
        ("prompts create A --labels a b", ("'A'",), 1),
        ("prompts create \u00f1and\u00fa --labels a b", ("\u00f1and\u00fa",), 1),
        ("prompts create x/y --labels a b", ("x/y",), 1),
        ("prompts create x@y --labels a b", ("x@y",), 1),
        ("prompts create p-lt2 --labels a b --label-words x", ("label_words",), 1),
        ("prompts create p-dup --labels a a", ("'a'",), 1),
        ("prompts create p-one --labels a", ("label",), 1),
        ("prompts create p-emptylab --labels a ''", ("label",), 1),
        ("prompts create p-lt --labels a b --label-texts x", ("label_texts",), 1),
        ("prompts create p-desc --labels a b --description $(head -c 100000 /dev/zero | tr '\\0' d)", ("description",), 1),
        ("prompts create p-tags --labels a b --tags $(seq -s ' ' 1 500)", ("tags",), 1),
        ("prompts create p-pool --labels a b --pooling mean", ("--pooling", "mean"), 2),
        ("prompts update p-new", ("--tags", "--owner", "--description"), 2),
        ("prompts update nope --tags x", ("nope",), 1),
        ("prompts update p-new --tags ''", ("tag",), 1),
        ("prompts alias t1/versions/1 latest", ("'latest' is reserved",), 1),
        ("prompts alias t1/versions/1 ''", ("alias",), 1),
        ("prompts alias t1/versions/1 'bad alias'", ("'bad alias'",), 1),
        ("prompts alias t1/versions/9 x", ("9", "t1"), 1),
        ("prompts alias nope x", ("nope",), 1),
        ("prompts unalias t1 latest", ("'latest' is reserved",), 1),
        ("prompts unalias t1 nope", ("nope",), 1),
        ("prompts tag t1/versions/1", ("--tags",), 2),
        ("prompts tag t1/versions/9 --tags x", ("9", "t1"), 1),
        ("prompts delete nope", ("nope",), 1),
        ("prompts delete t1", ("--force",), 1),
        ("prompts delete t1/versions/1", ("--force",), 1),
        ("prompts delete ''", ("''",), 1),
        ("prompts export nope/versions/1 $W/out2", ("nope",), 1),
        ("prompts export t1/versions/1 $W/out1", ("$W/out1", "not empty"), 2),
        ("prompts export t1/versions/1 $W/taken", ("$W/taken", "is a file"), 2),
        ("prompts export t1/versions/1 /proc/nope/out", ("/proc/nope",), 2),
        ("prompts export t1/versions/1 $W/taken/sub", ("$W/taken/sub",), 2),
        ("prompts import $W/missing --task p-imp2 --backbone enc", ("$W/missing",), 2),
        ("prompts import $W/taken --task p-imp2 --backbone enc", ("$W/taken",), 2),
        ("prompts import $W/adapter_empty --task p-imp2 --backbone enc", ("$W/adapter_empty", "adapter_"), 2),
        ("prompts import $W/adapter_bad --task p-imp2 --backbone enc", ("adapter_config.json",), 1),
        ("prompts import $W/adapter --task p-imp2 --backbone lm --labels neg pos --label-words bad good", ("'lm'",), 1),
        ("prompts import $W/adapter --task p-imp2 --backbone nope", ("nope",), 1),
        ("prompts import $W/adapter --task 'Bad Name' --backbone enc", ("'Bad Name'",), 1),
        ("prompts frob", ("frob",), 2),
    ):
        out.append(cli("prompts", args, bad(*words, code=code, latest="latest" in args)))
    return out


def backbones_tokens_audit() -> list[Case]:
    out = [
        cli("backbones", "backbones list", ok("enc", "encoder", "causal_lm")),
        cli("backbones", "backbones list --json", ok('"architecture": "encoder"')),
        cli("tokens", "tokens list", either("tokens")),
        cli("audit", "audit list", ok("TIME", "CreateTrainJob")),
        cli("audit", "audit list --json --limit 2", ok(check=lambda s: None if len(s.stdout.splitlines()) == 2
                                                       else f"{len(s.stdout.splitlines())} lines, not 2")),
        cli("audit", "audit list --principal nobody", ok("no audit events")),
        cli("audit", "audit list --after 2020-01-01 --before 2999-01-01 --method CreateTrainJob", ok("CreateTrainJob")),
    ]
    for fam, args, words, code in (
        ("backbones", "backbones register x $W/nowhere", ("$W/nowhere",), 1),
        ("backbones", "backbones register x /etc", ("/etc",), 1),
        ("backbones", "backbones register x gpt2", ("gpt2",), 1),
        ("backbones", "backbones register '' $W/models/enc", ("backbone",), 1),
        ("backbones", "backbones register 'Bad Name' $W/models/enc", ("'Bad Name'",), 1),
        ("backbones", "backbones register enc $W/models/lm", ("enc",), 1),
        ("backbones", "backbones register x2 $W/models/enc --replicas 0", ("replicas",), 1),
        ("backbones", "backbones register x2 $W/models/enc --replicas -1", ("replicas",), 1),
        ("backbones", "backbones register x2 $W/models/enc --replicas two", ("--replicas", "two"), 2),
        ("backbones", "backbones register x2 $W/models/enc --dtype fp8", ("--dtype", "fp8"), 2),
        ("backbones", "backbones deregister nope", ("nope",), 1),
        ("backbones", "backbones deregister ''", ("empty",), 2),
        ("tokens", "tokens create --name x --role root", ("--role", "root"), 2),
        ("tokens", "tokens create --name x --role reader --expires-in 0", ("--expires-in", "'0'"), 2),
        ("tokens", "tokens create --name x --role reader --expires-in 5y", ("--expires-in", "'5y'"), 2),
        ("tokens", "tokens create --name admin --role reader", ("admin",), 1),
        ("tokens", "tokens create --name '' --role reader", ("name",), 1),
        ("tokens", "tokens revoke nope", ("nope",), 1),
        ("audit", "audit list --after soon", ("--after", "soon"), 2),
        ("audit", "audit list --after 2026-02-01 --before 2026-01-01", ("--after", "--before"), 2),
        ("audit", "audit list --limit 0", ("--limit",), 2),
        ("audit", "audit list --limit many", ("--limit", "many"), 2),
    ):
        out.append(cli(fam, args, bad(*words, code=code)))
    out.append(cli("tokens", "tokens create --name careful-r --role reader --expires-in 1d", either("careful-r")))
    out.append(cli("prompts", "prompts create latest --labels a b", either("latest")))
    out.append(cli("backbones", "backbones register enc $W/models/enc", either("enc")))
    return out


def pipes_demo_serve() -> list[Case]:
    out = [shell("pipes", f"$BIN {a} | head -1 >/dev/null", ok()) for a in (
        "prompts list", "prompts list --json", "jobs list", "backbones list", "audit list", "prompts versions t1",
        "classify --prompt t1 " + " ".join(f"t{i}" for i in range(60)), "jobs watch $JOB", "prompts show t1",
        "completion bash", "--help", "train --help")]
    out += [shell("pipes", "$BIN prompts list | head -c 1 >/dev/null", ok()),
            shell("pipes", "$BIN classify --prompt t1 x >&-", bad("stdout", code=2)),
            shell("pipes", "$BIN prompts list > /dev/full", bad("No space", code=2))]
    for args, words in (("--train-rows 0", ("--train-rows",)), ("--train-rows -5", ("--train-rows",)),
                        ("--eval-rows -1", ("--eval-rows",)), ("--epochs 0", ("--epochs",)),
                        ("--port -5", ("--port",)), ("--port 70000", ("--port",)), ("--epochs many", ("--epochs", "many")),
                        ("--workdir $W/taken", ("$W/taken",))):
        out.append(cli("demo", f"demo {args}", bad(*words, code=2), timeout=40))
    out.append(cli("demo", "demo --help", ok("--train-rows")))
    for args, words in (
        ("--port -1", ("port", "-1")), ("--port 70000", ("port", "70000")), ("--port abc", ("--port", "abc")),
        ("--http-port -5", ("--http-port",)), ("--replicas 0", ("replicas", "0")), ("--replicas -2", ("replicas", "-2")),
        ("--worker-cpus nan", ("--worker-cpus",)), ("--worker-cpus -1", ("--worker-cpus",)),
        ("--db $W/dir", ("$W/dir",)),
        ("--backbone noequals", ("--backbone", "noequals")), ("--backbone =x", ("--backbone",)),
        ("--backbone x=", ("backbone", "'x'")), ("--data-root $W/nowhere", ("--data-root",)),
        ("--grace -1", ("--grace",)), ("--limit-classify-rows 0", ("classify_rows", "0")),
        ("--limit-text-chars -5", ("text_chars", "-5")), ("--log-level LOUD", ("--log-level", "LOUD")),
        ("--auth maybe", ("--auth", "maybe")),
        ("--tls-cert $W/missing.pem --tls-key $W/missing.pem", ("$W/missing.pem",)),
        ("--frobnicate", ("--frobnicate",)), ("--host 0.0.0.0", ("--auth", "0.0.0.0")),
        ("--placement-timeout 0", ("--placement-timeout",)), ("--max-replicas 1 --replicas 2", ("--max-replicas",)),
        ("--host 999.1.1.1 --port 0", ("999.1.1.1",)), ("--model-root $W/taken", ("--model-root",)),
        ("--admin-token-file $W/missing.token --auth tokens", ("$W/missing.token",)),
    ):
        out.append(serve(args, bad(*words, code=1 if args.startswith("--db") else 2)))  # 1: the bank refused
    out.append(cli("serve", "serve --help", ok("--http-port", "--data-root")))
    return out


def cases() -> list[Case]:
    from careful_cases_live import live  # after the prompts' cases: it uses their t1 and p-imp

    return [*global_flags(), *train(), *classify(), *generate(), *jobs(), *prompts(), *live(),
            *backbones_tokens_audit(), *pipes_demo_serve()]
