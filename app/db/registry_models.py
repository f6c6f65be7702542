"""The model registry's tables: every version's weights and record, exactly one current one.

- `model_versions`: the safetensors bytes (verified by SHA-256 when read), the checkpoint's
  metadata, the parent version, metrics, the gate's report, where it came from.
- `model_current`: one row (id = 1) naming the version every worker serves.
- `model_promotions`: the log of promotions and rollbacks (who/what, when, from which version).
- `finetune_runs`: background fine-tunes started by a server (one per batch of new corrections).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, utcnow


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The checkpoint's own id: the first 12 hex digits of the weights' SHA-256.
    model_version: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: "shipped", "finetune", "import" ...
    source: Mapped[str] = mapped_column(String(32))
    #: The whole safetensors file (about 54 KB) and the SHA-256 of those bytes.
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gate_report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: The newest correction id the version was trained with (None: no corrections).
    corrections_seen: Mapped[int | None] = mapped_column(Integer)


class ModelCurrent(Base):
    __tablename__ = "model_current"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelPromotion(Base):
    __tablename__ = "model_promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    #: "register" (the first version), "promote" or "rollback".
    action: Mapped[str] = mapped_column(String(16))
    #: Who or what: "finetune (gate)", "cli", "startup" ...
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FinetuneRun(Base):
    """A background fine-tune one worker claimed; `after_correction` is unique, so when every
    worker of every replica sees the same new corrections, exactly one claims the run."""

    __tablename__ = "finetune_runs"
    __table_args__ = (UniqueConstraint("after_correction", name="uq_finetune_runs_after"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The newest correction id the previous run (or the current version) had seen.
    after_correction: Mapped[int] = mapped_column(Integer)
    #: The newest correction id when this run was claimed.
    newest_correction: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exit_code: Mapped[int | None] = mapped_column(Integer)
