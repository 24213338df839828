"""Live evaluation: served rows kept for their outcomes, per-version totals that outlive them (served, labelled,
right, confusion), paired totals of a primary and its shadow, an alias's shadow, canary and promotion policy,
and an alias event's action and evidence and an audit event's detail (what a promotion was decided on).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

def _version_fk(table: str, column: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], ["prompt_versions.id"], ondelete=ondelete,
                                   name=op.f(f"fk_{table}_{column}_prompt_versions"))


def upgrade() -> None:
    # Nothing points at these three tables, so SQLite may copy them (batch mode) to add foreign keys.
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("shadow_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shadow_fraction", sa.Double(), server_default="1.0", nullable=False))
        batch.add_column(sa.Column("canary_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("canary_fraction", sa.Double(), server_default="0.0", nullable=False))
        batch.add_column(sa.Column("policy", sa.JSON(), server_default="{}", nullable=False))
        for column in ("shadow_version_id", "canary_version_id"):
            batch.create_foreign_key(op.f(f"fk_aliases_{column}_prompt_versions"), "prompt_versions", [column],
                                     ["id"], ondelete="SET NULL")
    with op.batch_alter_table("alias_events") as batch:
        batch.add_column(sa.Column("action", sa.String(length=16), server_default="move", nullable=False))
        batch.add_column(sa.Column("evidence", sa.JSON(), server_default="{}", nullable=False))
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), server_default="", nullable=False))

    op.create_table(
        "served_rows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("result_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.SmallInteger(), nullable=False),
        sa.Column("alias", sa.String(length=64), server_default="", nullable=False),
        sa.Column("canary", sa.Boolean(), nullable=False),
        sa.Column("shadow_version_id", sa.Integer(), nullable=True),
        sa.Column("shadow_label", sa.SmallInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=True),
        sa.Column("outcome_at", sa.DateTime(), nullable=True),
        _version_fk("served_rows", "version_id", "CASCADE"),
        _version_fk("served_rows", "shadow_version_id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_served_rows")),
        sa.UniqueConstraint("result_id", name=op.f("uq_served_rows_result_id")),
    )
    op.create_index(op.f("ix_served_rows_at"), "served_rows", ["at"])
    op.create_index("ix_served_rows_version_at", "served_rows", ["version_id", "at"])
    op.create_index("ix_served_rows_shadow_at", "served_rows", ["shadow_version_id", "at"])
    op.create_table(
        "version_outcomes",
        sa.Column("version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("served", sa.BigInteger(), nullable=False),
        sa.Column("labelled", sa.BigInteger(), nullable=False),
        sa.Column("correct", sa.BigInteger(), nullable=False),
        _version_fk("version_outcomes", "version_id", "CASCADE"),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_version_outcomes")),
    )
    op.create_table(
        "confusion_counts",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("true_label_index", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("predicted_label_index", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _version_fk("confusion_counts", "version_id", "CASCADE"),
        sa.PrimaryKeyConstraint("version_id", "true_label_index", "predicted_label_index",
                                name=op.f("pk_confusion_counts")),
    )
    op.create_table(
        "paired_counts",
        sa.Column("primary_version_id", sa.Integer(), nullable=False),
        sa.Column("candidate_version_id", sa.Integer(), nullable=False),
        sa.Column("both", sa.BigInteger(), nullable=False),
        sa.Column("primary_only", sa.BigInteger(), nullable=False),
        sa.Column("candidate_only", sa.BigInteger(), nullable=False),
        sa.Column("neither", sa.BigInteger(), nullable=False),
        _version_fk("paired_counts", "primary_version_id", "CASCADE"),
        _version_fk("paired_counts", "candidate_version_id", "CASCADE"),
        sa.PrimaryKeyConstraint("primary_version_id", "candidate_version_id", name=op.f("pk_paired_counts")),
    )


def downgrade() -> None:
    for table in ("paired_counts", "confusion_counts", "version_outcomes"):
        op.drop_table(table)
    for index in ("ix_served_rows_shadow_at", "ix_served_rows_version_at", op.f("ix_served_rows_at")):
        op.drop_index(index, table_name="served_rows")
    op.drop_table("served_rows")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("alias_events") as batch:
        batch.drop_column("evidence")
        batch.drop_column("action")
    with op.batch_alter_table("aliases") as batch:
        for column in ("shadow_version_id", "canary_version_id"):
            batch.drop_constraint(op.f(f"fk_aliases_{column}_prompt_versions"), type_="foreignkey")
        for column in ("policy", "canary_fraction", "canary_version_id", "shadow_fraction", "shadow_version_id"):
            batch.drop_column(column)
