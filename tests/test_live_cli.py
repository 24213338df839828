"""Live evaluation from the command line, as a user runs it (a subprocess against the live server): classify with
a routing key and result ids, outcomes recorded from CSV, JSON lines and flags, live accuracy in `prompts show`,
the rollout actions, comparison and promotion; bad arguments end with exit 2 naming the flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from promptbank import Client
from tests.test_cli import cli
from tests.test_live_sdk import TEXTS, TRUTH, two_versions
from tests.test_server import train


def classify_json(server, ref: str, *texts: str, key: str = "") -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    args = ["classify", "--prompt", ref, "--json", *(["--routing-key", key] if key else []), *texts]
    return [json.loads(line) for line in cli(server, *args).stdout.splitlines()]


def test_classify_shows_result_ids_and_outcomes_are_recorded_from_files_and_flags(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        v1 = train(c, "cli-live", aliases=["prod"]).result_version
    rows = classify_json(server, "cli-live@prod", *TEXTS, key="user-7")
    ids = [str(r["id"]) for r in rows]
    assert len(set(ids)) == len(TEXTS) and all(len(i) == 32 for i in ids)
    assert all(r["version"] == v1 and r["canary"] is False for r in rows)
    table = cli(server, "classify", "--prompt", "cli-live@prod", TEXTS[0]).stdout
    assert table.splitlines()[0].split() == ["LABEL", "SCORE", "VERSION", "ID", "TEXT"]
    assert len(table.splitlines()[1].split()[3]) == 32  # the row's id, to send its label back with

    half = len(TEXTS) // 2
    csv_file = tmp_path / "outcomes.csv"
    csv_file.write_text("result_id,label,note\n" + "".join(f"{i},{TRUTH[t]},x\n" for i, t in
                                                             zip(ids[:half], TEXTS[:half], strict=True)))
    out = json.loads(cli(server, "outcomes", "record", str(csv_file), "--json").stdout)
    assert out == {"recorded": half, "already_recorded": 0, "unknown_ids": [], "conflicting_ids": [], "promoted": []}
    again = cli(server, "outcomes", "record", str(csv_file)).stdout
    assert again.splitlines() == [f"recorded 0 outcomes; {half} already recorded"]

    lines = [json.dumps({"result_id": i, "label": TRUTH[t]}) for i, t in zip(ids[half:], TEXTS[half:], strict=True)]
    lines.append(json.dumps({"result_id": "e" * 32, "label": "positive"}))
    proc = subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", server.address, "outcomes", "record",
                           "-"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"recorded {len(TEXTS) - half} outcomes; 0 already recorded"
    assert "e" * 32 in proc.stdout.splitlines()[1] and "unknown id" in proc.stdout

    flipped = {"positive": "negative", "negative": "positive"}[TRUTH[TEXTS[0]]]
    one = json.loads(cli(server, "outcomes", "record", "--id", ids[0], "--label", flipped, "--json").stdout)
    assert one["conflicting_ids"] == [ids[0]] and one["recorded"] == 0

    correct = sum(r["label"] == TRUTH[t] for r, t in zip(rows, TEXTS, strict=True))
    shown = cli(server, "prompts", "show", "cli-live@prod").stdout
    assert f"{len(TEXTS)} with outcomes, accuracy {correct / len(TEXTS):.4f} (95% interval " in shown
    assert "live (all time): " in shown and "live (last 24 h): " in shown and "confusion (all time):" in shown
    header = next(line for line in shown.splitlines() if "true \\ predicted" in line).split()
    assert header[-2:] == ["negative", "positive"]
    data = json.loads(cli(server, "prompts", "show", "cli-live@prod", "--json").stdout)
    assert data["live"]["all_time"]["labelled"] == len(TEXTS) and data["live"]["all_time"]["correct"] == correct


def test_rollout_actions_compare_and_promote(server) -> None:  # type: ignore[no-untyped-def]
    with Client(server.address) as c:
        v1, v2 = two_versions(c, "cli-roll")
    said = cli(server, "prompts", "shadow", "cli-roll@prod", "cli-roll/versions/2", "--fraction", "0.5").stdout
    assert said.strip() == f"cli-roll@prod: shadow {v2} on 0.5 of rows"
    cli(server, "prompts", "shadow", "cli-roll@prod", "2", "--fraction", "1")  # back to every row (unset: kept)
    rows = classify_json(server, "cli-roll@prod", *TEXTS)
    with Client(server.address) as c:
        c.record_outcomes([(str(r["id"]), TRUTH[t]) for r, t in zip(rows, TEXTS, strict=True)])

    lines = cli(server, "prompts", "rollout", "prompts/cli-roll/aliases/prod").stdout.splitlines()
    assert lines[:4] == [f"cli-roll@prod -> {v1}", f"shadow: {v2} on 1 of rows", "canary: none",
                         "policy: manual, margin 0.02, min rows 200"]
    assert lines[4].startswith(f"shadow evidence: {v2} ") and f"on {len(TEXTS)} paired rows" in lines[4]
    assert lines[5] == "canary evidence: -"
    data = json.loads(cli(server, "prompts", "rollout", "cli-roll@prod", "--json").stdout)
    assert data["shadow_evidence"]["method"] == "paired" and data["shadow_evidence"]["rows"] == len(TEXTS)

    cmp = json.loads(cli(server, "prompts", "compare", "cli-roll@prod", "2", "--margin", "0", "--json").stdout)
    assert cmp["candidate_version"] == v2 and cmp["margin"] == 0 and cmp["rows"] == len(TEXTS)
    text = cli(server, "prompts", "compare", "cli-roll@prod", v2, "--margin", "0").stdout.splitlines()
    assert text[0] == cmp["summary"] and text[1].startswith("paired rows: both right ")
    assert text[-1] == f"verdict: {'clears' if cmp['clears'] else 'does not clear'} the margin -0"

    refused = cli(server, "prompts", "promote", "cli-roll@prod", "--candidate", "2", "--margin", "0", check=False)
    if not cmp["clears"]:  # margin 0 on 8 rows: the interval reaches below 0 unless v2 is far better
        assert refused.returncode == 1 and refused.stderr.startswith("error: FAILED_PRECONDITION: ")
        assert f"{cmp['low']:+.4f}" in refused.stderr
        assert refused.stdout.splitlines()[0] == cmp["summary"]  # the comparison first, then the refusal
        forced = cli(server, "prompts", "promote", "cli-roll@prod", "--candidate", "2", "--margin", "0", "--force")
        assert forced.stdout.splitlines()[-1] == (f"promoted cli-roll@prod -> {v2} (forced: the evidence does not "
                                                  f"clear the margin)")
    else:
        assert refused.returncode == 0 and refused.stdout.splitlines()[-1] == f"promoted cli-roll@prod -> {v2}"
    history = cli(server, "prompts", "history", "cli-roll").stdout.splitlines()
    assert history[0].split()[:2] == ["TIME", "ALIAS"] and "ACTION" in history[0]
    assert ["prod", "promote", "1", "2"] in [line.split()[1:5] for line in history[1:]]

    said = cli(server, "prompts", "canary", "cli-roll@prod", "1", "--fraction", "1").stdout
    assert said.strip() == f"cli-roll@prod: canary {v1} on 1 of rows"
    table = cli(server, "classify", "--prompt", "cli-roll@prod", "--routing-key", "k", TEXTS[0]).stdout
    assert f"{v1} (canary)" in table
    assert cli(server, "prompts", "canary", "cli-roll@prod", "--clear").stdout.strip() == "cli-roll@prod: canary cleared"
    assert cli(server, "prompts", "shadow", "cli-roll@prod", "--clear").stdout.strip() == "cli-roll@prod: shadow cleared"
    pol = json.loads(cli(server, "prompts", "policy", "cli-roll@prod", "--auto", "--margin", "0.1", "--min-rows", "50",
                         "--json").stdout)
    assert pol["policy"] == {"auto": True, "margin": 0.1, "min_rows": 50}
    said = cli(server, "prompts", "policy", "cli-roll@prod", "--manual").stdout.strip()
    assert said == "cli-roll@prod: policy: manual, margin 0.1, min rows 50"


def test_bad_arguments_exit_2_naming_the_flag_and_server_errors_exit_1(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (["prompts", "canary", "x@prod", "2", "--fraction", "1.5"], "--fraction"),
        (["prompts", "shadow", "x@prod", "2", "--fraction", "0"], "--fraction"),
        (["prompts", "canary", "x@prod", "2"], "--fraction"),
        (["prompts", "shadow", "x@prod"], "VERSION_REF"),
        (["prompts", "shadow", "x@prod", "2", "--clear"], "--clear"),
        (["prompts", "policy", "x@prod", "--auto", "--min-rows", "-3"], "--min-rows"),
        (["prompts", "policy", "x@prod", "--margin", "0.1"], "--auto --manual"),
        (["prompts", "compare", "x@prod", "y/versions/2"], "'y/versions/2' is a version of 'y'"),
        (["prompts", "promote", "x@prod", "--candidate", "x@canary"], "--candidate"),
        (["prompts", "rollout", "x"], "REF@ALIAS"),
        (["outcomes", "record", "--id", "abc"], "--label"),
        (["outcomes", "record"], "FILE"),
    ]
    for args, named in cases:
        out = cli(server, *args, check=False)
        assert out.returncode == 2 and named in out.stderr, (args, out.stderr)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nabc,positive\n")
    out = cli(server, "outcomes", "record", str(bad), check=False)
    assert out.returncode == 2 and "result_id" in out.stderr and str(bad) in out.stderr
    bad.write_text('{"result_id": "abc"}\n')
    out = cli(server, "outcomes", "record", str(bad), check=False)
    assert out.returncode == 2 and f"{bad}:1: 'label'" in out.stderr
    missing = cli(server, "prompts", "rollout", "no-such-prompt@prod", check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: NOT_FOUND: ")
