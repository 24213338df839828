"""`promptbank prompts ...` and `promptbank backbones ...`: the catalog from the command line.

Each action is a subcommand with its own arguments and help (`promptbank prompts export --help`).
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from promptbank import cli_args, cli_live
from promptbank.client import Client
from promptbank.output import emit, enum_text, plural, table
from promptbank.peft_files import read_adapter, write_adapter
from promptbank_api.names import parse_ref
from promptbank_api.v1 import catalog_pb2 as cat
from promptbank_domain.precision import SERVING_DTYPES


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (one object a line) instead of a table")


def _task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", nargs="+", default=[], help="class labels, in order")
    p.add_argument("--label-texts", nargs="+", default=[], help="texts embedded for each label (encoders)")
    p.add_argument("--label-words", nargs="+", default=[], help="words scored for each label (LMs)")
    p.add_argument("--pooling", default="", choices=["all", "prompt", "text"],
                   help="encoder backbones: 'all' (default), 'prompt' or 'text'")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="", help="only those with a version on this backbone")
    p.add_argument("--tag", default="", help="only those with this tag")
    p.add_argument("--created-after", type=datetime.fromisoformat, help="ISO time (UTC if naive)")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prompts = sub.add_parser("prompts", help="the prompt catalog: list, show, versions, history, create, update, "
                                             "alias, unalias, tag, delete, export, import, rollout, shadow, "
                                             "canary, policy, compare, promote")
    ps = prompts.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ps.add_parser("list", help="list prompts (tasks)")
    _filters(p)
    p.add_argument("--label", default="", help="only prompts whose task has this label")
    _json(p)
    p = ps.add_parser("show", help="show one version: REF is task, task@alias or task/versions/N")
    p.add_argument("ref")
    _json(p)
    p = ps.add_parser("versions", help="list a prompt's versions, newest first")
    p.add_argument("prompt")
    _filters(p)
    _json(p)
    p = ps.add_parser("history", help="a prompt's alias moves, newest first")
    p.add_argument("prompt")
    _json(p)
    p = ps.add_parser("create", help="create a prompt (task) without training it")
    p.add_argument("prompt")
    _task_flags(p)
    p.add_argument("--description", default="")
    p.add_argument("--owner", default="")
    p.add_argument("--tags", nargs="*", default=[])
    p.add_argument("--request-id", default="", help="makes a retried create safe (the first result comes back)")
    _json(p)
    p = ps.add_parser("update", help="change a prompt's tags, owner or description")
    p.add_argument("prompt")
    p.add_argument("--tags", nargs="*", help="the full tag list")
    p.add_argument("--owner")
    p.add_argument("--description")
    _json(p)
    p = ps.add_parser("alias", help="point ALIAS at the version REF names")
    p.add_argument("ref")
    p.add_argument("alias")
    _json(p)
    p = ps.add_parser("unalias", help="remove an alias")
    p.add_argument("prompt")
    p.add_argument("alias")
    _json(p)
    p = ps.add_parser("tag", help="set a version's tags")
    p.add_argument("ref")
    p.add_argument("--tags", nargs="*", required=True, help="the full tag list")
    _json(p)
    p = ps.add_parser("delete", help="delete a prompt or one version (task/versions/N)")
    p.add_argument("ref")
    p.add_argument("--force", action="store_true", help="also delete its versions / the aliases on it")
    _json(p)
    p = ps.add_parser("export", help="write a version as a PEFT adapter folder")
    p.add_argument("ref")
    p.add_argument("dir", type=Path)
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    _json(p)
    p = ps.add_parser("import", help="add a PEFT prompt-tuning adapter folder as a new version")
    p.add_argument("dir", type=Path)
    p.add_argument("--task", required=True, help="the prompt (task) to add the version to; created if new")
    p.add_argument("--backbone", default="minilm")
    _task_flags(p)
    p.add_argument("--request-id", default="", help="makes a retried import safe")
    _json(p)
    cli_live.add_prompt_actions(ps)

    backbones = sub.add_parser("backbones", help="list, register or deregister backbones")
    bs = backbones.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = bs.add_parser("list", help="the backbones this server knows")
    _json(b)
    b = bs.add_parser("register", help="load a model on new replicas and serve it (admin)")
    b.add_argument("name")
    b.add_argument("model", help="model id or a path on the workers")
    b.add_argument("--revision", default="")
    b.add_argument("--replicas", type=int, default=None, help="Ray actors to start (default 1)")
    b.add_argument("--dtype", choices=list(SERVING_DTYPES), default="auto",
                   help="serving precision: auto (bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPUs; "
                        "default), bf16, fp16 or fp32. Prompts stay fp32 and serve in any")
    _json(b)
    b = bs.add_parser("deregister", help="stop this server's replicas of a backbone and free their resources "
                                         "(admin); one that stored versions pin stays listed, with no replicas")
    b.add_argument("name", type=cli_args.nonempty, help="backbones/NAME or NAME")
    b.add_argument("--force", action="store_true",
                   help="also while train jobs on it are queued or running: they end FAILED")
    _json(b)


def said(a: argparse.Namespace, line: str, data: dict[str, str]) -> None:
    """What an action did: one line for people, one JSON object with --json."""
    emit(data, True) if a.json else print(line)


def _aliases(p: cat.Prompt) -> str:
    return ",".join(f"{k}->{v}" for k, v in sorted(p.aliases.items())) or "-"


def _metric(v: cat.PromptVersion) -> str:
    acc = v.metrics.get("eval_accuracy")
    return "-" if acc is None else f"{acc:.4f}"


# The API's prompt kinds by the names the CLI takes and prints ("input", "deep", ...), read off the enum so a new
# kind needs no CLI change (the SDK does not load the server's promptbank_kinds; tests/test_kinds.py ties them).
PROMPT_KINDS = {cat.PromptKind.Name(v).removeprefix("PROMPT_KIND_").lower(): v for v in cat.PromptKind.values() if v}


def kind_name(kind: int) -> str:
    """A `PromptKind` as the CLI prints it; a version always names its kind, a job echoes the one it resolved
    (unset only from a server older than kinds, whose prompts were all of the first kind)."""
    return next((name for name, v in PROMPT_KINDS.items() if v == kind), next(iter(PROMPT_KINDS)))


def cmd_prompts(a: argparse.Namespace, c: Client) -> int:  # noqa: C901 - a flat dispatch reads best
    act = a.action
    if act in cli_live.ACTIONS:
        return cli_live.cmd_live(a, c)
    if act == "list":
        rows = c.list_prompts(tag=a.tag, backbone=a.backbone, label=a.label, created_after=a.created_after)
        table(rows, [("NAME", lambda p: p.name), ("LABELS", lambda p: ",".join(p.task.labels)),
                     ("LATEST", lambda p: p.latest_version or "-"), ("ALIASES", _aliases),
                     ("TAGS", lambda p: ",".join(p.tags) or "-")], a.json, "prompts")
    elif act == "show":
        cli_live.show_version(c.get_version(a.ref), a.json)
    elif act == "versions":
        versions = c.list_versions(a.prompt, backbone=a.backbone, tag=a.tag, created_after=a.created_after)
        table(versions, [("NAME", lambda v: v.name), ("KIND", lambda v: kind_name(v.kind)), ("ALIASES", lambda v: ",".join(v.aliases) or "-"),
                     ("EVAL_ACCURACY", _metric), ("TAGS", lambda v: ",".join(v.tags) or "-")], a.json, "versions")
    elif act == "history":
        table(c.alias_history(a.prompt), [("TIME", lambda e: e.time.ToJsonString()), ("ALIAS", lambda e: e.alias),
                                          ("ACTION", lambda e: e.action or "move"),
                                          ("FROM", lambda e: e.from_version or "-"),
                                          ("TO", lambda e: e.to_version or "-"),
                                          ("BY", lambda e: e.principal or "-")], a.json, "alias moves")
    elif act == "create":
        emit(c.create_prompt(a.prompt, a.labels, label_texts=a.label_texts, label_words=a.label_words,
                             description=a.description, tags=a.tags, owner=a.owner, pooling=a.pooling,
                             request_id=a.request_id or None), a.json)
    elif act == "update":
        if a.tags is None and a.owner is None and a.description is None:
            raise ValueError("prompts update: give --tags, --owner and/or --description")
        emit(c.update_prompt(a.prompt, tags=a.tags, owner=a.owner, description=a.description), a.json)
    elif act == "alias":
        r = parse_ref(c.get_version(a.ref).name)  # an alias names a version: resolve it first
        moved = c.set_alias(r.prompt, a.alias, r.version or 0)
        emit(moved, True) if a.json else print(f"{r.prompt}@{a.alias} -> {moved.version}")
    elif act == "unalias":
        c.delete_alias(a.prompt, a.alias)
        said(a, f"removed {a.prompt}@{a.alias}", {"removed": f"prompts/{a.prompt}/aliases/{a.alias}"})
    elif act == "tag":
        emit(c.tag_version(c.get_version(a.ref).name, a.tags), a.json)
    elif act == "delete":
        if "/versions/" in a.ref:
            c.delete_version(a.ref, force=a.force)
        else:
            c.delete_prompt(a.ref, force=a.force)
        said(a, f"deleted {a.ref}", {"deleted": a.ref})
    elif act == "export":
        if a.dir.exists() and not a.dir.is_dir():  # --force writes into a folder; it never replaces a file
            raise ValueError(f"{a.dir} is a file; name a new folder or an existing one")
        if a.dir.is_dir() and any(a.dir.iterdir()) and not a.force:
            raise ValueError(f"{a.dir} is a folder that is not empty; choose a new folder or pass --force to "
                             f"write into it")
        resp = c.export_version(a.ref)
        out = write_adapter(a.dir, resp.adapter_config, resp.adapter_model)
        said(a, str(out), {"exported": a.ref, "dir": str(out)})
    elif act == "import":
        config, weights = read_adapter(a.dir)
        v = c.import_version(a.task, a.backbone, config, weights, labels=a.labels, label_texts=a.label_texts,
                             label_words=a.label_words, pooling=a.pooling, request_id=a.request_id or None)
        emit(v, True) if a.json else print(v.name)
    return 0


def cmd_backbones(a: argparse.Namespace, c: Client) -> int:
    if a.action == "register":
        emit(c.register_backbone(a.name, a.model, a.revision, a.replicas, dtype=a.dtype), a.json)
        return 0
    if a.action == "deregister":
        gone = c.deregister_backbone(a.name, force=a.force)
        if a.json:
            emit(gone, True)
            return 0
        kept = "removed from the catalog" if gone.removed else "kept in the catalog (stored versions pin it)"
        print(f"deregistered {gone.backbone.name}: stopped {plural(gone.stopped_replicas, 'replica')}; {kept}")
        if gone.failed_jobs:
            print(f"ended FAILED: {', '.join(gone.failed_jobs)}")
        return 0
    arch = cat.Architecture.DESCRIPTOR
    table(c.list_backbones(), [("NAME", lambda b: b.name), ("ARCHITECTURE", lambda b: enum_text(arch, b.architecture)),
                               ("HIDDEN", lambda b: b.hidden_size), ("DTYPE", lambda b: b.dtype or "-"),
                               ("REPLICAS", _replicas),
                               ("MODEL", lambda b: b.model)], a.json, "backbones")
    return 0


def _replicas(b: cat.Backbone) -> str:
    """`2 (live@3f2a9c1d, restarting@77b0e412)`: how many, and each one's state and Ray node."""
    if not b.serving:
        return str(b.replicas)
    return f"{b.replicas} ({', '.join(f'{r.state}@{r.node_id[:8]}' for r in b.serving)})"
