"""Deep prompts: a version records its prompt kind ("input" or "deep"), a backbone the shape of its deep
prompts (self-attention layers, key/value heads, head width; 0s: it cannot carry them), so the bank checks a
deep prompt's width as it checks an input prompt's and can export it in PEFT's PREFIX_TUNING terms.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None
DEEP_COLUMNS = ("deep_layers", "deep_kv_heads", "deep_head_dim")


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy): SQLite adds and drops these columns in place, and copying the tables
    # would trip the foreign keys that point at them.
    op.add_column("prompt_versions", sa.Column("kind", sa.String(length=16), server_default="input", nullable=False))
    for name in DEEP_COLUMNS:
        op.add_column("backbones", sa.Column(name, sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    for name in DEEP_COLUMNS:
        op.drop_column("backbones", name)
    op.drop_column("prompt_versions", "kind")
