"""Corrections: one row per digit a person labelled.

Revision ID: 0001_corrections
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_corrections"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.SmallInteger(), nullable=False),
        sa.Column("predicted", sa.SmallInteger(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("canvas_png", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_corrections"),
        sa.CheckConstraint("label BETWEEN 0 AND 9", name="ck_corrections_label_digit"),
        sa.CheckConstraint("predicted IS NULL OR predicted BETWEEN 0 AND 9",
                           name="ck_corrections_predicted_digit"),
        sa.UniqueConstraint("image_sha256", "label", name="uq_corrections_image_label"),
    )
    op.create_index("ix_corrections_created_at", "corrections", ["created_at"])
    op.create_index("ix_corrections_label", "corrections", ["label"])
    op.create_index("ix_corrections_predicted", "corrections", ["predicted"])
    op.create_index("ix_corrections_model_version", "corrections", ["model_version"])


def downgrade() -> None:
    op.drop_table("corrections")
