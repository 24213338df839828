"""Live evaluation from the command line: `promptbank outcomes record`, and the `prompts` actions that manage an
alias's rollout (`rollout`, `shadow`, `canary`, `policy`, `compare`, `promote`), plus the live accuracy lines of
`prompts show`.

Each prints for people by default and one JSON object with `--json`, as the other commands do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from promptbank import cli_args
from promptbank.client import Client
from promptbank.live_calls import OutcomeSummary, alias_ref, version_ref
from promptbank.output import emit, plural, to_data
from promptbank_api.files import json_lines, read_table, read_utf8, shown
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_api.v1 import live_pb2 as lv

ACTIONS = ("rollout", "shadow", "canary", "policy", "compare", "promote")  # the `prompts` actions of this module


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (one object) instead of lines for people")


def _alias(p: argparse.ArgumentParser) -> None:
    p.add_argument("alias", type=cli_args.alias, metavar="REF@ALIAS",
                   help="the alias: task@alias or prompts/TASK/aliases/ALIAS")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`promptbank outcomes ...`."""
    o = sub.add_parser("outcomes", help="send true labels of classified rows back by result id")
    acts = o.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = acts.add_parser("record", help="record outcomes: a CSV with header result_id,label, JSON lines "
                                       '{"result_id": ..., "label": ...}, or one with --id and --label')
    r.add_argument("file", nargs="?", metavar="FILE|-", help="the outcomes file; - reads standard input")
    r.add_argument("--id", dest="result_id", type=cli_args.nonempty, metavar="ID",
                   help="one result id (the `id` that classify printed), with --label")
    r.add_argument("--label", type=cli_args.nonempty, metavar="LABEL", help="the true label of --id's row")
    _json(r)


def add_prompt_actions(ps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The rollout actions under `promptbank prompts`."""
    p = ps.add_parser("rollout", help="an alias's version, shadow, canary, policy and the evidence so far")
    _alias(p)
    _json(p)
    p = ps.add_parser("shadow", help="score a version on an alias's rows in the same forward, never answering "
                                     "with it (admin)")
    _alias(p)
    p.add_argument("version", nargs="?", metavar="VERSION_REF", help="task/versions/N, or N")
    p.add_argument("--fraction", type=cli_args.shadow_fraction, metavar="F",
                   help="share of the alias's rows the shadow scores, in (0, 1] (default: 1 for a new shadow)")
    p.add_argument("--clear", action="store_true", help="remove the alias's shadow")
    _json(p)
    p = ps.add_parser("canary", help="answer a share of an alias's rows with a version, sticky per routing key "
                                     "(admin)")
    _alias(p)
    p.add_argument("version", nargs="?", metavar="VERSION_REF", help="task/versions/N, or N")
    p.add_argument("--fraction", type=cli_args.fraction, metavar="F",
                   help="share of the alias's rows the canary answers, in [0, 1]")
    p.add_argument("--clear", action="store_true", help="remove the alias's canary")
    _json(p)
    p = ps.add_parser("policy", help="whether an alias promotes its shadow (else canary) by itself (admin)")
    _alias(p)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--auto", action="store_true", help="promote once the evidence clears the margin")
    mode.add_argument("--manual", action="store_true", help="move only on `prompts promote`")
    p.add_argument("--margin", type=cli_args.fraction, metavar="M",
                   help="how much less accurate a candidate may be, in [0, 1] (default: keep the current)")
    p.add_argument("--min-rows", type=cli_args.count, metavar="N",
                   help="rows with outcomes an automatic promotion waits for (default: keep the current)")
    _json(p)
    p = ps.add_parser("compare", help="a candidate version against an alias's version, on the outcomes so far")
    _alias(p)
    p.add_argument("candidate", metavar="CANDIDATE", help="task/versions/N, or N")
    p.add_argument("--margin", type=cli_args.fraction, metavar="M", help="judge by this margin (default: the "
                                                                         "alias's policy margin)")
    _json(p)
    p = ps.add_parser("promote", help="move an alias to a candidate when the evidence clears the margin (admin)")
    _alias(p)
    p.add_argument("--candidate", required=True, metavar="V", help="task/versions/N, or N")
    p.add_argument("--margin", type=cli_args.fraction, metavar="M", help="judge by this margin (default: the "
                                                                         "alias's policy margin)")
    p.add_argument("--force", action="store_true", help="move it whatever the evidence says (still recorded)")
    _json(p)


# ------------------------------------------------------------ outcomes


def read_outcomes(name: str) -> list[tuple[str, str]]:
    """(result id, label) pairs from a file (or `-`, standard input): JSON lines when the first non-blank
    character is `{`, else CSV with a header naming `result_id` and `label`."""
    path = Path("<stdin>" if name == "-" else name)
    text = sys.stdin.read() if name == "-" else read_utf8(path)
    where = str(path)
    if text.lstrip().startswith("{"):
        return [_pair(rec, f"{where}:{n}") for n, rec in json_lines(path, text)]
    columns, records = read_table(path, text)
    missing = {"result_id", "label"} - set(columns)
    if missing:
        raise ValueError(f"{where}: the CSV header must name result_id and label; it lacks "
                         f"{', '.join(sorted(missing))} (header: {shown(columns) if columns else 'none'})")
    return [_pair(rec, f"{where}:{n}") for n, rec in enumerate(records, 2)]


def _pair(rec: dict[str, object], where: str) -> tuple[str, str]:
    rid, label = rec.get("result_id"), rec.get("label")
    for key, value in (("result_id", rid), ("label", label)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: '{key}' must be a non-empty string, got {json.dumps(value)}")
    return str(rid).strip(), str(label).strip()


def summary_lines(s: OutcomeSummary) -> list[str]:
    out = [f"recorded {plural(s.recorded, 'outcome')}; {s.already} already recorded"]
    if s.unknown:
        out.append(f"{plural(len(s.unknown), 'unknown id')} (never issued, or past the server's retention): "
                   f"{_some(s.unknown)}")
    if s.conflicting:
        out.append(f"{plural(len(s.conflicting), 'id')} already had another label (the first stands): "
                   f"{_some(s.conflicting)}")
    if s.promoted:
        out.append(f"promoted by policy: {', '.join(s.promoted)}")
    return out


def _some(ids: Iterable[str], most: int = 10) -> str:
    ids = list(ids)
    return ", ".join(ids[:most]) + (f" ... ({len(ids)} in all)" if len(ids) > most else "")


def cmd_outcomes(a: argparse.Namespace, c: Client) -> int:
    one = a.result_id is not None or a.label is not None
    if one and a.file:
        raise ValueError(f"outcomes record: give FILE or --id/--label, not both (FILE {a.file!r} with --id)")
    if one and (a.result_id is None or a.label is None):
        raise ValueError("outcomes record: --id and --label go together" + (" (--label is missing)" if a.label
                                                                           is None else " (--id is missing)"))
    if not one and not a.file:
        raise ValueError("outcomes record: give FILE (or - for standard input), or --id ID --label LABEL")
    pairs = [(a.result_id, a.label)] if one else read_outcomes(a.file)
    if not pairs:
        raise ValueError(f"{a.file} holds no outcomes")
    s = c.record_outcomes(pairs)
    if a.json:
        emit({"recorded": s.recorded, "already_recorded": s.already, "unknown_ids": list(s.unknown),
              "conflicting_ids": list(s.conflicting), "promoted": list(s.promoted)}, True)
    else:
        print("\n".join(summary_lines(s)))
    return 0


# ------------------------------------------------------------ rollouts


def comparison_line(cmp: lv.Comparison) -> str:
    """The comparison in one line: the server's summary, or the numbers when it gave none."""
    if cmp.summary:
        return cmp.summary
    if cmp.method in ("", "none"):
        return f"no outcomes yet for {cmp.candidate_version or 'the candidate'}"
    verdict = "clears" if cmp.clears else "does not clear"
    return (f"{cmp.candidate_version} {cmp.candidate_accuracy:.4f} vs {cmp.primary_version} "
            f"{cmp.primary_accuracy:.4f} on {cmp.rows} {cmp.method} rows: difference {cmp.difference:+.4f}, 95% "
            f"interval [{cmp.low:+.4f}, {cmp.high:+.4f}], p={cmp.p_value:.3g}; {verdict} the margin -{cmp.margin:g}")


def rollout_lines(alias: str, r: lv.Rollout) -> list[str]:
    pol = r.policy
    return [
        f"{alias} -> {r.version or '-'}",
        f"shadow: {r.shadow_version} on {r.shadow_fraction or 1:g} of rows" if r.shadow_version else "shadow: none",
        f"canary: {r.canary_version} on {r.canary_fraction:g} of rows" if r.canary_version else "canary: none",
        f"policy: {'auto' if pol.auto else 'manual'}, margin {pol.margin:g}, min rows {pol.min_rows}",
        f"shadow evidence: {comparison_line(r.shadow_evidence) if r.shadow_version else '-'}",
        f"canary evidence: {comparison_line(r.canary_evidence) if r.canary_version else '-'}",
    ]


def _side(a: argparse.Namespace, what: str) -> None:
    """`shadow`/`canary`: a VERSION_REF to set, or --clear, never both."""
    if a.clear and (a.version or a.fraction is not None):
        extra = f"VERSION_REF {a.version!r}" if a.version else "--fraction"
        raise ValueError(f"prompts {what}: --clear takes no {extra}")
    if not a.clear and not a.version:
        raise ValueError(f"prompts {what}: give VERSION_REF to set a {what}, or --clear to remove it")
    if what == "canary" and not a.clear and a.fraction is None:
        raise ValueError("prompts canary: give --fraction F, the share of the alias's rows the canary answers")
    if a.version:
        version_ref(a.version, alias_ref(a.alias), "VERSION_REF")


def cmd_live(a: argparse.Namespace, c: Client) -> int:  # noqa: C901 - a flat dispatch reads best
    act, ref = a.action, str(alias_ref(a.alias))
    if act == "rollout":
        r = c.rollout(a.alias)
        emit(r, True) if a.json else print("\n".join(rollout_lines(ref, r)))
    elif act == "shadow":
        _side(a, "shadow")
        r = c.clear_shadow(a.alias) if a.clear else c.set_shadow(a.alias, a.version, a.fraction)
        emit(r, True) if a.json else print(f"{ref}: " + (
            "shadow cleared" if not r.shadow_version else
            f"shadow {r.shadow_version} on {r.shadow_fraction or 1:g} of rows"))
    elif act == "canary":
        _side(a, "canary")
        r = c.clear_canary(a.alias) if a.clear else c.set_canary(a.alias, a.version, a.fraction)
        emit(r, True) if a.json else print(f"{ref}: " + (
            "canary cleared" if not r.canary_version else
            f"canary {r.canary_version} on {r.canary_fraction:g} of rows"))
    elif act == "policy":
        r = c.set_policy(a.alias, a.auto, a.margin, a.min_rows)
        emit(r, True) if a.json else print(f"{ref}: {rollout_lines(ref, r)[3]}")
    elif act == "compare":
        version_ref(a.candidate, alias_ref(a.alias), "CANDIDATE")
        cmp = c.compare(a.alias, a.candidate, a.margin)
        emit(cmp, True) if a.json else print("\n".join(comparison_lines(cmp)))
    elif act == "promote":
        return _promote(a, c, ref)
    return 0


def comparison_lines(cmp: lv.Comparison) -> list[str]:
    out = [comparison_line(cmp)]
    if cmp.method == "paired":
        out.append(f"paired rows: both right {cmp.both_correct}, only primary {cmp.primary_only}, only candidate "
                   f"{cmp.candidate_only}, neither {cmp.neither_correct}")
    out.append(f"verdict: {'clears' if cmp.clears else 'does not clear'} the margin -{cmp.margin:g}")
    return out


def _promote(a: argparse.Namespace, c: Client, ref: str) -> int:
    version_ref(a.candidate, alias_ref(a.alias), "--candidate")
    if not a.json:  # the evidence first: a refusal below then reads as its consequence
        print("\n".join(comparison_lines(c.compare(a.alias, a.candidate, a.margin))))
    done = c.promote(a.alias, a.candidate, a.margin, a.force)
    if a.json:
        emit(done, True)
        return 0
    forced = " (forced: the evidence does not clear the margin)" if done.forced else ""
    print(f"promoted {ref} -> {done.rollout.version}{forced}")
    return 0


# ------------------------------------------------------------ prompts show


def _window(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def accuracy_line(what: str, acc: lv.Accuracy) -> str:
    if not acc.labelled:
        return f"live ({what}): {plural(acc.served, 'row')} served, no outcomes yet"
    return (f"live ({what}): {plural(acc.served, 'row')} served, {acc.labelled} with outcomes, accuracy "
            f"{acc.accuracy:.4f} (95% interval {acc.low:.4f}-{acc.high:.4f})")


def confusion_lines(acc: lv.Accuracy) -> list[str]:
    """The confusion table: a row per true label, a column per predicted label."""
    labels = sorted({x.label for x in acc.confusion} | {x.predicted for x in acc.confusion})
    cells = {(x.label, x.predicted): x.count for x in acc.confusion}
    width = max(len("true \\ predicted"), *(len(lab) for lab in labels))
    cols = [max(len(lab), *(len(str(cells.get((t, lab), 0))) for t in labels)) for lab in labels]
    out = ["  ".join(["true \\ predicted".ljust(width), *(lab.rjust(w) for lab, w in zip(labels, cols, strict=True))])]
    for t in labels:
        out.append("  ".join([t.ljust(width), *(str(cells.get((t, lab), 0)).rjust(w)
                                                 for lab, w in zip(labels, cols, strict=True))]))
    return out


def live_lines(live: lv.LiveStats) -> list[str]:
    out = [accuracy_line("all time", live.all_time),
           accuracy_line(f"last {_window(live.window_seconds)}" if live.window_seconds else "recent", live.recent)]
    if live.all_time.labelled:
        out += ["confusion (all time):", *(f"  {line}" for line in confusion_lines(live.all_time))]
    return out


def show_version(v: cat.PromptVersion, as_json: bool) -> None:
    """`prompts show`: the version's fields, then its live accuracy (with --json: all in one object)."""
    if as_json:
        emit(v, True)
        return
    data = to_data(v)
    data.pop("live", None)
    emit(data, False)
    if v.HasField("live"):
        print("\n".join(live_lines(v.live)))
