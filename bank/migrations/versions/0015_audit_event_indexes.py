"""Indexes for reading the audit log (ListAuditEvents): its time, method and resource filters, and the retention
that deletes rows by time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = ("at", "rpc", "resource")


def upgrade() -> None:
    for column in COLUMNS:
        op.create_index(op.f(f"ix_audit_events_{column}"), "audit_events", [column])


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(op.f(f"ix_audit_events_{column}"), table_name="audit_events")
