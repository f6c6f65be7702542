"""Model registry: every version's weights and record, and exactly one current version.

Revision ID: 0002_model_registry
Revises: 0001_corrections
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_model_registry"
down_revision = "0001_corrections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("gate_report", sa.JSON(), nullable=True),
        sa.Column("corrections_seen", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_version", name="uq_model_versions_model_version"),
        sa.ForeignKeyConstraint(["parent_id"], ["model_versions.id"],
                                name="fk_model_versions_parent_id_model_versions"),
    )
    op.create_table(
        "model_current",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_current"),
        sa.CheckConstraint("id = 1", name="ck_model_current_single_row"),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"],
                                name="fk_model_current_version_id_model_versions"),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("previous_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_promotions"),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"],
                                name="fk_model_promotions_version_id_model_versions"),
        sa.ForeignKeyConstraint(["previous_id"], ["model_versions.id"],
                                name="fk_model_promotions_previous_id_model_versions"),
    )
    op.create_table(
        "finetune_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("after_correction", sa.Integer(), nullable=False),
        sa.Column("newest_correction", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_finetune_runs"),
        sa.UniqueConstraint("after_correction", name="uq_finetune_runs_after"),
    )


def downgrade() -> None:
    op.drop_table("finetune_runs")
    op.drop_table("model_promotions")
    op.drop_table("model_current")
    op.drop_table("model_versions")
