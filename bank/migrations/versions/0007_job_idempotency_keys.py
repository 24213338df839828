"""Train jobs use the one idempotency table (AIP-155) that every other create uses: their request ids move
from `jobs.request_id`/`request_hash` into `idempotency_keys`, and the two columns go.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

METHOD = "CreateTrainJob"
_keys = sa.table("idempotency_keys", sa.column("request_id", sa.String), sa.column("method", sa.String),
                 sa.column("request_hash", sa.String), sa.column("resource", sa.String),
                 sa.column("created_at", sa.DateTime))


def upgrade() -> None:
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("request_id", sa.String),
                    sa.column("request_hash", sa.String), sa.column("created_at", sa.DateTime))
    rows = conn.execute(sa.select(jobs.c.id, jobs.c.request_id, jobs.c.request_hash, jobs.c.created_at)
                        .where(jobs.c.request_id.is_not(None))).all()
    for job_id, request_id, request_hash, created in rows:
        conn.execute(_keys.insert().values(request_id=request_id, method=METHOD, request_hash=request_hash or "",
                                           resource=f"jobs/{job_id}", created_at=created))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("uq_jobs_request_id"), type_="unique")
        batch.drop_column("request_id")
        batch.drop_column("request_hash")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=False, server_default=""))
        batch.create_unique_constraint(op.f("uq_jobs_request_id"), ["request_id"])
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("request_id", sa.String),
                    sa.column("request_hash", sa.String))
    keys = conn.execute(sa.select(_keys.c.request_id, _keys.c.request_hash, _keys.c.resource)
                        .where(_keys.c.method == METHOD)).all()
    for request_id, request_hash, resource in keys:
        conn.execute(jobs.update().where(jobs.c.id == resource.removeprefix("jobs/"))
                     .values(request_id=request_id, request_hash=request_hash))
    conn.execute(_keys.delete().where(_keys.c.method == METHOD))
