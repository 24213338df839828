"""`promptbank prompts ...` and `promptbank backbones ...`: the catalog from the command line."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from promptbank.client import Client
from promptbank.output import emit
from promptbank_api.names import parse_ref
from promptbank_api.v1 import catalog_pb2 as cat

PROMPT_ACTIONS = ["list", "show", "create", "update", "delete", "alias", "unalias", "history", "tag", "export",
                  "import", "versions"]


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("prompts", help="the prompt catalog: list, show, create, update, delete, alias, unalias, "
                                       "history, tag, export, import, versions")
    p.add_argument("action", choices=PROMPT_ACTIONS)
    p.add_argument("args", nargs="*", help="REF / PROMPT / ALIAS / DIR, depending on the action")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.add_argument("--tag", help="list: only prompts with this tag")
    p.add_argument("--backbone", default="", help="list/versions: only those on it; import: its backbone")
    p.add_argument("--label", default="", help="list: only prompts whose task has this label")
    p.add_argument("--created-after", type=datetime.fromisoformat, help="list/versions: ISO time (UTC if naive)")
    p.add_argument("--task", help="import: the prompt (task) to add the version to")
    p.add_argument("--labels", nargs="+", default=[], help="create/import: class labels")
    p.add_argument("--label-texts", nargs="+", default=[])
    p.add_argument("--label-words", nargs="+", default=[])
    p.add_argument("--pooling", default="", choices=["all", "prompt", "text"],
                   help="create/import, encoder backbones: 'all' (default), 'prompt' or 'text'")
    p.add_argument("--description")
    p.add_argument("--owner")
    p.add_argument("--tags", nargs="*", help="create/update/tag: the full tag list")
    p.add_argument("--force", action="store_true", help="delete: also versions / aliases")

    b = sub.add_parser("backbones", help="list or register backbones")
    b.add_argument("action", choices=["list", "register"])
    b.add_argument("args", nargs="*", help="register: NAME MODEL (model id or path)")
    b.add_argument("--revision", default="")
    b.add_argument("--replicas", type=int, default=1)
    b.add_argument("--json", action="store_true")


def need(a: argparse.Namespace, n: int, usage: str) -> list[str]:
    if len(a.args) != n:
        raise ValueError(f"usage: promptbank {usage}")
    return list(a.args)


def cmd_prompts(a: argparse.Namespace, c: Client) -> int:  # noqa: C901 - a flat dispatch reads best
    act = a.action
    if act == "list":
        for p in c.list_prompts(tag=a.tag or "", backbone=a.backbone, label=a.label, created_after=a.created_after):
            if a.json:
                emit(p, True)
            else:
                aliases = ",".join(f"{k}->{v}" for k, v in sorted(p.aliases.items()))
                print(f"{p.name}\tlabels={list(p.task.labels)}\tversions={p.latest_version}\t{aliases}\t"
                      f"tags={','.join(p.tags)}")
    elif act == "show":
        (ref,) = need(a, 1, "prompts show REF")
        emit(c.get_version(ref), a.json)
    elif act == "versions":
        (name,) = need(a, 1, "prompts versions PROMPT")
        for v in c.list_versions(name, backbone=a.backbone, tag=a.tag or "", created_after=a.created_after):
            emit(v, True) if a.json else print(f"{v.name}\t{','.join(v.aliases)}\t"
                                               f"eval_accuracy={v.metrics.get('eval_accuracy', float('nan')):.4f}")
    elif act == "create":
        (name,) = need(a, 1, "prompts create PROMPT --labels A B ...")
        emit(c.create_prompt(name, a.labels, label_texts=a.label_texts, label_words=a.label_words,
                             description=a.description or "", tags=a.tags or [], owner=a.owner or "",
                             pooling=a.pooling), a.json)
    elif act == "update":
        (name,) = need(a, 1, "prompts update PROMPT [--tags ...] [--owner O] [--description D]")
        if a.tags is None and a.owner is None and a.description is None:
            raise ValueError("prompts update: give --tags, --owner and/or --description")
        emit(c.update_prompt(name, tags=a.tags, owner=a.owner, description=a.description), a.json)
    elif act == "delete":
        (ref,) = need(a, 1, "prompts delete PROMPT | PROMPT/versions/N [--force]")
        if "/versions/" in ref:
            c.delete_version(ref, force=a.force)
        else:
            c.delete_prompt(ref, force=a.force)
        emit({"deleted": ref}, True) if a.json else print(f"deleted {ref}")
    elif act == "alias":
        ref, alias = need(a, 2, "prompts alias REF ALIAS")
        r = parse_ref(c.get_version(ref).name)  # an alias names a version: resolve it first
        task, number = r.prompt, r.version
        emit(c.set_alias(task, alias, number), a.json)
    elif act == "unalias":
        name, alias = need(a, 2, "prompts unalias PROMPT ALIAS")
        c.delete_alias(name, alias)
        emit({"deleted": f"prompts/{name}/aliases/{alias}"}, True) if a.json else print(f"removed {name}@{alias}")
    elif act == "history":
        (name,) = need(a, 1, "prompts history PROMPT")
        for e in c.alias_history(name):
            if a.json:
                emit(e, True)
            else:
                print(f"{e.time.ToJsonString()}\t{e.alias}\t{e.from_version or '-'} -> {e.to_version or '-'}")
    elif act == "tag":
        (ref,) = need(a, 1, "prompts tag REF --tags T ...")
        emit(c.tag_version(c.get_version(ref).name, a.tags or []), a.json)
    elif act == "export":
        ref, out = need(a, 2, "prompts export REF DIR")
        from promptbank.peft_files import write_adapter

        resp = c.export_version(ref)
        path = write_adapter(Path(out), resp.adapter_config, resp.adapter_model)
        emit({"exported": c.get_version(ref).name, "dir": str(path)}, True) if a.json else print(path)
    elif act == "import":
        (src,) = need(a, 1, "prompts import DIR --task NAME [--backbone B] [--labels ...]")
        if not a.task:
            raise ValueError("prompts import: --task NAME is required")
        from promptbank.peft_files import read_adapter

        config, weights = read_adapter(Path(src))
        v = c.import_version(a.task, a.backbone or "minilm", config, weights, labels=a.labels,
                             label_texts=a.label_texts, label_words=a.label_words, pooling=a.pooling)
        emit(v, True) if a.json else print(v.name)
    return 0


def cmd_backbones(a: argparse.Namespace, c: Client) -> int:
    if a.action == "register":
        name, model = need(a, 2, "backbones register NAME MODEL [--revision R] [--replicas N]")
        b = c.register_backbone(name, model, a.revision, a.replicas)
        emit(b, a.json)
        return 0
    for b in c.list_backbones():
        if a.json:
            emit(b, True)
        else:
            print(f"{b.name}\t{cat.Architecture.Name(b.architecture)}\thidden={b.hidden_size}\treplicas={b.replicas}\t{b.model}")
    return 0


