"""Backbones in the catalog: the frozen models prompts are trained on, identified by a fingerprint that a
prompt version pins."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bank import reads
from bank.models import Backbone, PromptVersion
from promptbank_api.errors import NotFound
from promptbank_api.names import check_name
from promptbank_domain.catalog import BackboneRecord


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
    bb = _find_backbone_row(s, name)
    if bb is None:
        raise NotFound(f"backbone {name!r} not found")
    return bb


def _find_backbone_row(s: Session, name: str) -> Backbone | None:
    return s.scalar(select(Backbone).where(Backbone.name == name))


def get_backbone(s: Session, name: str) -> BackboneRecord:
    return reads.backbone(_backbone_row(s, name))


def find_backbone(s: Session, name: str) -> BackboneRecord | None:
    bb = _find_backbone_row(s, name)
    return None if bb is None else reads.backbone(bb)


def remove_backbone(s: Session, name: str) -> tuple[BackboneRecord | None, bool]:
    """A deregistered backbone's entry: removed when no stored version pins it, else kept (its versions name it
    and keep its fingerprint). Returns the backbone as it was (None: the catalog had no entry) and whether it
    was removed."""
    bb = _find_backbone_row(s, name)
    if bb is None:
        return None, False
    record = reads.backbone(bb)
    pinned = s.scalar(select(func.count()).select_from(PromptVersion).where(PromptVersion.backbone_id == bb.id))
    if pinned:
        return record, False
    s.delete(bb)
    s.flush()
    return record, True


def list_backbones(s: Session, offset: int, limit: int) -> list[BackboneRecord]:
    return [reads.backbone(bb) for bb in
            s.scalars(select(Backbone).order_by(Backbone.name).offset(offset).limit(limit)).all()]
