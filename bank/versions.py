"""Prompt versions and their aliases: immutable trained weights of a prompt on one backbone, and the movable
names (`latest`, `prod`, ...) that point at them. A reference (`sentiment@prod`, `sentiment/versions/3`)
resolves here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

import promptbank_kinds as kinds
from bank import reads
from bank.backbones import _backbone_row
from bank.codec import read_prompt, sha256_hex
from bank.models import Alias, AliasEvent, Backbone, Prompt, PromptVersion, utcnow
from bank.prompts import _json_list_has, _prompt_row
from promptbank_api.errors import FailedPrecondition, NotFound
from promptbank_api.names import PromptRef, check_name, parse_ref, version_name
from promptbank_domain.catalog import AliasEventRecord, ServedVersion, VersionRecord


def tensor_by_sha(s: Session, sha256: str) -> bytes:
    """A prompt's bytes by content hash (any version holding them)."""
    data = s.scalar(select(PromptVersion.tensor).where(PromptVersion.sha256 == sha256).limit(1))
    if data is None:
        raise NotFound(f"no stored prompt has sha256 {sha256[:12]}")
    return data


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
    return _alias_row(s, p, r.alias or "latest").version


def _alias_row(s: Session, p: Prompt, name: str) -> Alias:
    a = s.scalar(select(Alias).where(Alias.prompt_id == p.id, Alias.name == name))
    if a is None:
        if name == "latest":
            raise NotFound(f"prompt {p.name!r} has no versions yet")
        raise NotFound(f"alias {name!r} of prompt {p.name!r} not found")
    return a


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


def _set_alias_row(s: Session, prompt: Prompt, name: str, v: PromptVersion, principal: str = "", *,
                   action: str = "move", evidence: dict[str, object] | None = None) -> Alias:
    """Point the alias at `v`, recording the move (`action`, `evidence`: a promotion's) in its history. Its shadow
    and canary stay, but one that is `v` itself is cleared: a version is not its own candidate."""
    check_name("alias", name)
    a = s.scalar(select(Alias).where(Alias.prompt_id == prompt.id, Alias.name == name))
    before = a.version.version if a is not None else 0
    if a is None:
        a = Alias(prompt=prompt, name=name, version=v)
        s.add(a)
    else:
        a.version = v
        if a.shadow_version_id == v.id:
            a.shadow_version = None
        if a.canary_version_id == v.id:
            a.canary_version = None
    if before != v.version:
        s.add(AliasEvent(prompt_id=prompt.id, alias=name, from_version=before, to_version=v.version, at=utcnow(),
                         principal=principal, action=action, evidence=dict(evidence or {})))
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
