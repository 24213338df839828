"""Uploads are stored in pieces as they stream in (never whole in memory) and carry their uploader and
size, so storage per principal can be bounded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_chunks_dataset_id_datasets"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_chunks")),
        sa.UniqueConstraint("dataset_id", "seq", name=op.f("uq_dataset_chunks_dataset_id")),
    )
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("principal", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index(op.f("ix_datasets_principal"), ["principal"])


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index(op.f("ix_datasets_principal"))
        batch.drop_column("size")
        batch.drop_column("principal")
    op.drop_table("dataset_chunks")
