"""Prompts in the catalog: a named task (labels, description, tags) whose trained weights are its versions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import cast, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from bank import reads
from bank.models import Backbone, Prompt, PromptVersion
from promptbank_api.errors import AlreadyExists, FailedPrecondition, NotFound
from promptbank_api.names import check_name
from promptbank_domain.catalog import PromptRecord
from promptbank_domain.task import TaskSpec


def create_prompt(s: Session, name: str, task: TaskSpec, tags: list[str] | None = None, owner: str = "",
                  created_by: str = "") -> PromptRecord:
    """A new prompt; `created_by` is the principal creating it (its trainer-owner), `owner` a display field."""
    check_name("prompt", name)
    if s.scalar(select(Prompt.id).where(Prompt.name == name)) is not None:
        raise AlreadyExists(f"prompt {name!r} already exists")
    p = Prompt(name=name, task=task.to_dict(), tags=sorted(set(tags or [])), owner=owner, created_by=created_by)
    s.add(p)
    s.flush()
    return reads.prompt(s, p)


def _find_prompt_row(s: Session, name: str) -> Prompt | None:
    return s.scalar(select(Prompt).where(Prompt.name == name))


def _prompt_row(s: Session, name: str) -> Prompt:
    p = _find_prompt_row(s, name)
    if p is None:
        raise NotFound(f"prompt {name!r} not found")
    return p


def find_prompt(s: Session, name: str) -> PromptRecord | None:
    p = _find_prompt_row(s, name)
    return None if p is None else reads.prompt(s, p)


def get_prompt(s: Session, name: str) -> PromptRecord:
    return reads.prompt(s, _prompt_row(s, name))


def _json_list_has(s: Session, column: Any, value: str, path: str = "") -> Any | None:
    """A SQL condition "the JSON list in `column` (at `path`, e.g. '$.labels') holds `value`", or None where
    the dialect cannot say it (the caller then filters in Python)."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        each = (func.json_each(column, path) if path else func.json_each(column)).table_valued("value")
        return select(each.c.value).where(each.c.value == value).exists()
    if dialect == "postgresql":
        doc = cast(column, JSONB)
        return (doc[path.removeprefix("$.")] if path else doc).contains([value])
    return None


def list_prompts(
    s: Session, offset: int, limit: int, tag: str = "", backbone: str = "", label: str = "",
    created_after: datetime | None = None,
) -> list[PromptRecord]:
    """A page of prompts by name; `tag`/`label` keep those whose tags/labels hold it, `backbone` those with a
    version on it, `created_after` those created later."""
    q = select(Prompt).order_by(Prompt.name)
    if backbone:
        backbone_id = select(Backbone.id).where(Backbone.name == backbone).scalar_subquery()
        q = q.where(  # an index probe per candidate prompt, not a scan of its versions
            select(PromptVersion.id).where(PromptVersion.backbone_id == backbone_id, PromptVersion.prompt_id == Prompt.id).exists()
        )
    if created_after is not None:
        q = q.where(Prompt.created_at > created_after)
    python_filters: list[tuple[str, Callable[[Prompt], list[str]]]] = []
    filters: tuple[tuple[str, Any, str, Callable[[Prompt], list[str]]], ...] = (
        (tag, Prompt.tags, "", lambda p: p.tags or []),
        (label, Prompt.task, "$.labels", lambda p: (p.task or {}).get("labels", [])),
    )
    for value, column, path, get in filters:
        if not value:
            continue
        cond = _json_list_has(s, column, value, path)
        if cond is None:
            python_filters.append((value, get))
        else:
            q = q.where(cond)
    if python_filters:
        rows = [p for p in s.scalars(q).all() if all(v in get(p) for v, get in python_filters)]
        return [reads.prompt(s, p) for p in rows[offset : offset + limit]]
    return [reads.prompt(s, p) for p in s.scalars(q.offset(offset).limit(limit)).all()]


def update_prompt(s: Session, name: str, *, tags: list[str] | None = None, owner: str | None = None,
                  description: str | None = None) -> PromptRecord:
    """Change what a prompt's update_mask names (None: leave it)."""
    p = _prompt_row(s, name)
    if tags is not None:
        p.tags = sorted(set(tags))
    if owner is not None:
        p.owner = owner
    if description is not None:
        p.task = {**p.task, "description": description}
    s.flush()
    return reads.prompt(s, p)


def delete_prompt(s: Session, name: str, force: bool) -> None:
    p = _prompt_row(s, name)
    if p.versions and not force:
        n = len(p.versions)
        raise FailedPrecondition(f"prompt {name!r} has {n} version{'' if n == 1 else 's'}; delete with force "
                                 f"(the CLI's --force) to delete {'it' if n == 1 else 'them'} too")
    s.delete(p)
    s.flush()
