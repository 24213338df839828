"""Tasks gain `pooling` (which encoder outputs are compared with the label texts). New prompts pool their
prompt positions; prompts and queued jobs stored before this keep the text pooling they were trained with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_prompts = sa.table("prompts", sa.column("id", sa.Integer), sa.column("task", sa.JSON))
_jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("spec", sa.JSON))


def _rewrite(table: Any, column: str, change: Any) -> None:
    """Apply `change(value) -> value | None` to every row's JSON column (None: leave the row as it is)."""
    conn = op.get_bind()
    for row_id, value in conn.execute(sa.select(table.c.id, table.c[column])).all():
        new = change(value or {})
        if new is not None:
            conn.execute(table.update().where(table.c.id == row_id).values({column: new}))


def _text_pooling(task: dict[str, Any]) -> dict[str, Any] | None:
    return {**task, "pooling": "text"} if task and "pooling" not in task else None


def _job_text_pooling(spec: dict[str, Any]) -> dict[str, Any] | None:
    task = _text_pooling(spec.get("task") or {})
    return {**spec, "task": task} if task is not None else None


def upgrade() -> None:
    _rewrite(_prompts, "task", _text_pooling)
    _rewrite(_jobs, "spec", _job_text_pooling)


def downgrade() -> None:
    """Nothing to undo: code before 0006 ignores the key, and keeping it makes a later upgrade lossless."""
