"""Index prompt_versions (backbone_id, prompt_id): list_prompts' backbone filter probes it per prompt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Without it, "has a version on backbone B" read every version row of every prompt (SQLite: 16 ms for a
filtered page of a 100k-version catalog; with it under 1 ms, bench/catalog.py).
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_prompt_versions_backbone_prompt", "prompt_versions", ["backbone_id", "prompt_id"])


def downgrade() -> None:
    op.drop_index("ix_prompt_versions_backbone_prompt", table_name="prompt_versions")
