"""Per-principal ownership: a prompt records the principal that created it (`created_by`: a trainer's jobs
publish only there), idempotency keys belong to the principal that sent them (primary key (principal,
request_id)), and a job records the bytes of inline examples it stores (`inline_bytes`, counted against its
principal's storage quota until it ends), with an index on the job's principal for that sum.

Prompts from before take the principal of their first train job (who could publish there before); a prompt
no job trained (created or imported by an admin) is owned by no trainer. Old keys take the principal of the
job or upload they made; keys of CreatePrompt/ImportPromptVersion (admin calls) keep an empty principal.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE for the tables foreign keys point at (a batch copy would trip them).
    op.add_column("prompts", sa.Column("created_by", sa.String(length=64), server_default="", nullable=False))
    op.execute("UPDATE prompts SET created_by = COALESCE((SELECT j.principal FROM jobs j WHERE j.prompt_name = "
               "prompts.name ORDER BY j.created_at, j.id LIMIT 1), '')")
    op.add_column("jobs", sa.Column("inline_bytes", sa.BigInteger(), server_default="0", nullable=False))
    op.create_index(op.f("ix_jobs_principal"), "jobs", ["principal"])
    with op.batch_alter_table("idempotency_keys", recreate="always") as batch:  # nothing points at it
        batch.add_column(sa.Column("principal", sa.String(length=64), server_default="", nullable=False))
        batch.drop_constraint(op.f("pk_idempotency_keys"), type_="primary")
        batch.create_primary_key(op.f("pk_idempotency_keys"), ["principal", "request_id"])
    for table, prefix in (("jobs", "jobs/"), ("datasets", "datasets/")):
        op.execute(f"UPDATE idempotency_keys SET principal = COALESCE((SELECT t.principal FROM {table} t WHERE "
                   f"'{prefix}' || t.id = idempotency_keys.resource), '') WHERE resource LIKE '{prefix}%'")


def downgrade() -> None:
    # a request_id two principals both used keeps the first one's key (ids were global before)
    conn = op.get_bind()
    keys = sa.table("idempotency_keys", sa.column("principal", sa.String), sa.column("request_id", sa.String),
                    sa.column("created_at", sa.DateTime))
    seen: set[str] = set()
    for principal, request_id in conn.execute(sa.select(keys.c.principal, keys.c.request_id)
                                              .order_by(keys.c.created_at)).all():
        if request_id in seen:
            conn.execute(keys.delete().where(keys.c.principal == principal, keys.c.request_id == request_id))
        seen.add(request_id)
    with op.batch_alter_table("idempotency_keys", recreate="always") as batch:
        batch.drop_constraint(op.f("pk_idempotency_keys"), type_="primary")
        batch.create_primary_key(op.f("pk_idempotency_keys"), ["request_id"])
        batch.drop_column("principal")
    op.drop_index(op.f("ix_jobs_principal"), table_name="jobs")
    op.drop_column("jobs", "inline_bytes")
    op.drop_column("prompts", "created_by")
