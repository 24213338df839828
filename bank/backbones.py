"""Backbones in the catalog: the frozen models prompts are trained on, identified by a fingerprint that a
prompt version pins."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bank import reads
from bank.models import Backbone
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
    bb = s.scalar(select(Backbone).where(Backbone.name == name))
    if bb is None:
        raise NotFound(f"backbone {name!r} not found")
    return bb


def get_backbone(s: Session, name: str) -> BackboneRecord:
    return reads.backbone(_backbone_row(s, name))


def list_backbones(s: Session, offset: int, limit: int) -> list[BackboneRecord]:
    return [reads.backbone(bb) for bb in
            s.scalars(select(Backbone).order_by(Backbone.name).offset(offset).limit(limit)).all()]
