"""The prompt catalog over one SQLAlchemy session: backbones, prompts, immutable versions, aliases, request ids.

Every function takes the caller's session (one per RPC); the caller commits. Public functions take names and
domain types and return read models (bank/reads.py builds them): no ORM row leaves the bank. The `_row`
helpers below are the bank's own. Functions raise the domain errors of :mod:`promptbank_api.errors` with
messages that name the bad value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import cast, func, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

import promptbank_kinds as kinds
from bank import reads
from bank.codec import read_prompt, sha256_hex
from bank.models import (
    Alias,
    AliasEvent,
    Backbone,
    CatalogState,
    IdempotencyKey,
    Prompt,
    PromptVersion,
    utcnow,
)
from promptbank_api.errors import AlreadyExists, FailedPrecondition, NotFound
from promptbank_api.names import PromptRef, check_name, parse_ref, version_name
from promptbank_domain.catalog import (
    AliasEventRecord,
    BackboneRecord,
    PromptRecord,
    ServedVersion,
    VersionRecord,
)
from promptbank_domain.task import TaskSpec

# ---------------------------------------------------------------- the generation (cache invalidation)

RESOLVING = (Prompt, PromptVersion, Alias, Backbone)  # what a reference's resolution depends on


def bump_generation(s: Session, _context: object = None, _instances: object = None) -> None:
    """A `before_flush` hook (bank.db.make_sessionmaker): when the flush changes anything a resolution depends
    on, bump the catalog generation in the same transaction."""
    if any(isinstance(o, RESOLVING) for o in (*s.new, *s.dirty, *s.deleted)):
        s.execute(update(CatalogState).where(CatalogState.id == 1)
                  .values(generation=CatalogState.generation + 1).execution_options(synchronize_session=False))


def generation(s: Session) -> int:
    return int(s.scalar(select(CatalogState.generation).where(CatalogState.id == 1)) or 0)


def tensor_by_sha(s: Session, sha256: str) -> bytes:
    """A prompt's bytes by content hash (any version holding them)."""
    data = s.scalar(select(PromptVersion.tensor).where(PromptVersion.sha256 == sha256).limit(1))
    if data is None:
        raise NotFound(f"no stored prompt has sha256 {sha256[:12]}")
    return data


# ---------------------------------------------------------------- backbones


def upsert_backbone(
    s: Session, name: str, *, model: str, revision: str, architecture: str, hidden_size: int, fingerprint: str,
    deep: tuple[int, int, int] = (0, 0, 0),
) -> BackboneRecord:
    """Register a backbone or refresh its row (a changed fingerprint makes old versions refuse to run)."""
    check_name("backbone", name)
    bb = s.scalar(select(Backbone).where(Backbone.name == name))
    if bb is None:
        bb = Backbone(name=name)
        s.add(bb)
    bb.model, bb.revision, bb.architecture = model, revision, architecture
    bb.hidden_size, bb.fingerprint = hidden_size, fingerprint
    bb.deep_layers, bb.deep_kv_heads, bb.deep_head_dim = deep  # (layers, key/value heads, head width)
    s.flush()
    return reads.backbone(bb)


def _backbone_row(s: Session, name: str) -> Backbone:
    bb = s.scalar(select(Backbone).where(Backbone.name == name))
    if bb is None:
        raise NotFound(f"backbone {name!r} not found")
    return bb


def get_backbone(s: Session, name: str) -> BackboneRecord:
    return reads.backbone(_backbone_row(s, name))


def list_backbones(s: Session, offset: int, limit: int) -> list[BackboneRecord]:
    return [reads.backbone(bb) for bb in
            s.scalars(select(Backbone).order_by(Backbone.name).offset(offset).limit(limit)).all()]


# ---------------------------------------------------------------- prompts


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


# ---------------------------------------------------------------- versions


def add_version(
    s: Session,
    prompt: str,
    backbone: str,
    tensor: bytes,
    *,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, str] | None = None,
    aliases: Sequence[str] = (),
    principal: str = "",
) -> VersionRecord:
    """Commit-ready new immutable version of prompt `prompt` on backbone `backbone` (tensor + metadata in the
    caller's one transaction); moves `latest` and `aliases` to it."""
    v = _add_version_row(s, _prompt_row(s, prompt), _backbone_row(s, backbone), tensor, metrics=metrics,
                         lineage=lineage, aliases=aliases, principal=principal)
    return reads.version(s, v)


def _add_version_row(
    s: Session,
    prompt: Prompt,
    backbone: Backbone,
    tensor: bytes,
    *,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, str] | None = None,
    aliases: Sequence[str] = (),
    principal: str = "",
) -> PromptVersion:
    t, kind = read_prompt(tensor)
    misfit = kinds.misfit(kind, int(t.shape[1]), reads.backbone(backbone).geometry, backbone.name)
    if misfit:
        raise FailedPrecondition(misfit)
    # One atomic bump, not read-then-write: it row-locks the prompt (PostgreSQL) or takes the write lock
    # (SQLite) before anything else is written, so coordinators publishing to one prompt at once queue up
    # instead of both taking the same number and one failing on the unique (prompt, version).
    number = s.execute(
        update(Prompt).where(Prompt.id == prompt.id)
        .values(latest_version=Prompt.latest_version + 1).returning(Prompt.latest_version),
        execution_options={"synchronize_session": False},
    ).scalar_one()
    set_committed_value(prompt, "latest_version", number)  # the loaded object may predate the other's bump
    v = PromptVersion(
        prompt=prompt,
        version=number,
        backbone=backbone,
        backbone_fingerprint=backbone.fingerprint,
        tensor=tensor,
        sha256=sha256_hex(tensor),
        shape=list(t.shape),
        kind=kind,
        dtype=str(t.dtype).removeprefix("torch."),
        metrics=dict(metrics or {}),
        lineage={**(lineage or {}), **({"principal": principal} if principal else {})},
    )
    s.add(v)
    s.flush()
    for alias in ["latest", *aliases]:
        _set_alias_row(s, prompt, alias, v, principal)
    return v


def _version_row(s: Session, prompt: Prompt, number: int) -> PromptVersion:
    v = s.scalar(select(PromptVersion).where(PromptVersion.prompt_id == prompt.id, PromptVersion.version == number))
    if v is None:
        raise NotFound(f"version {number} of prompt {prompt.name!r} not found")
    return v


def get_version(s: Session, prompt: str, number: int) -> VersionRecord:
    return reads.version(s, _version_row(s, _prompt_row(s, prompt), number))


def resolve(s: Session, ref: str | PromptRef, *, tensor: bool = False) -> VersionRecord:
    """Resolve a prompt reference to its immutable version (`tensor`: with its bytes)."""
    return reads.version(s, _resolve_row(s, ref), tensor=tensor)


def resolve_served(s: Session, ref: str | PromptRef) -> ServedVersion:
    """What serving needs of the version a reference names (no aliases, no bytes: the caller caches those)."""
    return reads.served(_resolve_row(s, ref))


def version_tensor(s: Session, ref: str | PromptRef) -> bytes:
    """The safetensors bytes of the version a reference names."""
    return _resolve_row(s, ref).tensor


def _resolve_row(s: Session, ref: str | PromptRef) -> PromptVersion:
    r = parse_ref(ref) if isinstance(ref, str) else ref
    p = _prompt_row(s, r.prompt)
    if r.version is not None:
        return _version_row(s, p, r.version)
    a = s.scalar(select(Alias).where(Alias.prompt_id == p.id, Alias.name == r.alias))
    if a is None:
        if r.alias == "latest":
            raise NotFound(f"prompt {p.name!r} has no versions yet")
        raise NotFound(f"alias {r.alias!r} of prompt {p.name!r} not found")
    return a.version


def list_versions(
    s: Session, prompt_name: str, offset: int, limit: int, backbone: str = "", tag: str = "",
    created_after: datetime | None = None,
) -> list[VersionRecord]:
    """A page of one prompt's versions, newest first, optionally filtered."""
    prompt = _prompt_row(s, prompt_name)
    q = select(PromptVersion).where(PromptVersion.prompt_id == prompt.id).order_by(PromptVersion.version.desc())
    if backbone:
        q = q.where(PromptVersion.backbone_id == select(Backbone.id).where(Backbone.name == backbone).scalar_subquery())
    if created_after is not None:
        q = q.where(PromptVersion.created_at > created_after)
    if tag:
        cond = _json_list_has(s, PromptVersion.tags, tag)
        if cond is None:
            rows = [v for v in s.scalars(q).all() if tag in (v.tags or [])]
            return [reads.version(s, v) for v in rows[offset : offset + limit]]
        q = q.where(cond)
    return [reads.version(s, v) for v in s.scalars(q.offset(offset).limit(limit)).all()]


def set_version_tags(s: Session, ref: str, tags: list[str]) -> VersionRecord:
    """A version is immutable but for its tags."""
    v = _resolve_row(s, ref)
    v.tags = sorted(set(tags))
    s.flush()
    return reads.version(s, v)


def nearest_candidates(s: Session, backbone: str, exclude_prompt: str, limit: int, kind: str = kinds.UNMARKED
                       ) -> dict[str, bytes]:
    """The latest version of up to `limit` other prompts of `kind` on this backbone (and its current weights),
    newest first, by version name: the stored prompts a new task may start from (`init=nearest`)."""
    bb = _backbone_row(s, backbone)
    rows = s.scalars(
        select(PromptVersion).join(Prompt).where(
            PromptVersion.backbone_id == bb.id, PromptVersion.backbone_fingerprint == bb.fingerprint,
            PromptVersion.version == Prompt.latest_version, Prompt.name != exclude_prompt, PromptVersion.kind == kind,
        ).order_by(PromptVersion.created_at.desc()).limit(limit)
    ).all()
    return {version_name(v.prompt.name, v.version): v.tensor for v in rows}


def delete_version(s: Session, ref: str, force: bool) -> None:
    v = _resolve_row(s, ref)
    names = reads.version_aliases(s, v.id)
    if names and not force:
        raise FailedPrecondition(
            f"version {v.version} of prompt {v.prompt.name!r} is pointed at by alias{'' if len(names) == 1 else 'es'} "
            f"{names}; move {'it' if len(names) == 1 else 'them'} or delete with force (the CLI's --force)"
        )
    for name in names:
        _delete_alias_row(s, v.prompt, name)
    s.delete(v)
    s.flush()


# ---------------------------------------------------------------- aliases


def set_alias(s: Session, prompt: str, name: str, version: int, principal: str = "") -> VersionRecord:
    """Point alias `name` of `prompt` at its version number `version`; returns that version."""
    p = _prompt_row(s, prompt)
    v = _version_row(s, p, version)
    _set_alias_row(s, p, name, v, principal)
    return reads.version(s, v)


def _set_alias_row(s: Session, prompt: Prompt, name: str, v: PromptVersion, principal: str = "") -> Alias:
    check_name("alias", name)
    a = s.scalar(select(Alias).where(Alias.prompt_id == prompt.id, Alias.name == name))
    before = a.version.version if a is not None else 0
    if a is None:
        a = Alias(prompt=prompt, name=name, version=v)
        s.add(a)
    else:
        a.version = v
    if before != v.version:
        s.add(AliasEvent(prompt_id=prompt.id, alias=name, from_version=before, to_version=v.version, at=utcnow(),
                         principal=principal))
    s.flush()
    return a


def delete_alias(s: Session, prompt: str, name: str, principal: str = "") -> None:
    _delete_alias_row(s, _prompt_row(s, prompt), name, principal)


def _delete_alias_row(s: Session, prompt: Prompt, name: str, principal: str = "") -> None:
    a = s.scalar(select(Alias).where(Alias.prompt_id == prompt.id, Alias.name == name))
    if a is None:
        raise NotFound(f"alias {name!r} of prompt {prompt.name!r} not found")
    s.add(AliasEvent(prompt_id=prompt.id, alias=name, from_version=a.version.version, to_version=0, at=utcnow(),
                     principal=principal))
    s.delete(a)
    s.flush()


def alias_history(s: Session, prompt: str, offset: int, limit: int) -> list[AliasEventRecord]:
    q = select(AliasEvent).where(AliasEvent.prompt_id == _prompt_row(s, prompt).id).order_by(AliasEvent.id.desc())
    return [reads.alias_event(e) for e in s.scalars(q.offset(offset).limit(limit)).all()]


# ---------------------------------------------------------------- idempotency (AIP-155)


def seen_request(s: Session, request_id: str, method: str, request_hash: str, *, principal: str) -> str | None:
    """The resource a previous call by `principal` with this request_id created, or None (another principal's
    use of the same id is none of this one's business). Another payload is ALREADY_EXISTS."""
    if not request_id:
        return None
    key = s.get(IdempotencyKey, (principal, request_id))
    if key is None:
        return None
    if key.method != method or key.request_hash != request_hash:
        raise AlreadyExists(f"request_id {request_id!r} was already used for a different {key.method} request")
    return key.resource


def remember_request(s: Session, request_id: str, method: str, request_hash: str, resource: str, *,
                     principal: str) -> None:
    """Record the result in the same transaction as the create it belongs to, as `principal`'s key."""
    if request_id:
        s.add(IdempotencyKey(principal=principal, request_id=request_id, method=method, request_hash=request_hash,
                             resource=resource, created_at=utcnow()))
        s.flush()
