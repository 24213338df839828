"""Job leases: the coordinator running a job holds a lease on it (owner + expiry, renewed by a heartbeat), so a
second coordinator on the same bank takes over only a job whose lease has expired, never one still running.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))
    # a RUNNING job from before leases has no owner: expired at once, so the next coordinator takes it over
    op.execute("UPDATE jobs SET lease_expires_at = created_at WHERE state = 'RUNNING'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
