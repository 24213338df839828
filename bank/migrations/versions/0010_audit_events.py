"""An audit log of writes: who (principal) called which write RPC on what, and when.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("rpc", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_principal"), "audit_events", ["principal"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_principal"), table_name="audit_events")
    op.drop_table("audit_events")
