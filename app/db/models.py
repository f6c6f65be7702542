"""The corrections schema as SQLAlchemy 2 models. Migrations create it; never `create_all`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed by convention, so migrations on SQLite and PostgreSQL agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Every table of the app's database (issue 13 adds the model registry here)."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Correction(Base):
    """One digit a person labelled: the 28x28 image the model saw and the right answer."""

    __tablename__ = "corrections"
    __table_args__ = (
        CheckConstraint("label BETWEEN 0 AND 9", name="label_digit"),
        CheckConstraint("predicted IS NULL OR predicted BETWEEN 0 AND 9", name="predicted_digit"),
        # The same image with the same label is stored once.
        UniqueConstraint("image_sha256", "label", name="uq_corrections_image_label"),
        Index("ix_corrections_created_at", "created_at"),
        Index("ix_corrections_label", "label"),
        Index("ix_corrections_predicted", "predicted"),
        Index("ix_corrections_model_version", "model_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    label: Mapped[int] = mapped_column(SmallInteger)
    predicted: Mapped[int | None] = mapped_column(SmallInteger)
    probabilities: Mapped[list[float] | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    #: 784 bytes, row-major, light digit on dark (MNIST form): what the model saw.
    image: Mapped[bytes] = mapped_column(LargeBinary)
    image_sha256: Mapped[str] = mapped_column(String(64))
    #: The drawing as sent, only when the person ticked "share the drawing" (size-capped).
    canvas_png: Mapped[bytes | None] = mapped_column(LargeBinary)

    @property
    def wrong(self) -> bool | None:
        return None if self.predicted is None else self.predicted != self.label

    def as_dict(self) -> dict[str, Any]:
        created = self.created_at
        if created.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
            created = created.replace(tzinfo=UTC)
        return {
            "id": self.id,
            "created_at": created.isoformat(),
            "label": self.label,
            "predicted": self.predicted,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "client_id": self.client_id,
            "has_canvas": self.canvas_png is not None,
        }
