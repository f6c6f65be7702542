"""Corrections in the database: store one (deduplicated), page through, count, delete.

Every function takes the app's `Database` and runs one transaction; the routes and the CLI
call these, never SQL of their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Select, and_, case, delete, func, select
from sqlalchemy.exc import IntegrityError

from app.db.database import Database
from app.db.models import Correction


@dataclass(frozen=True)
class NewCorrection:
    """What one correction stores; `image` is (28, 28) uint8 in MNIST form."""

    image: np.ndarray
    label: int
    predicted: int | None = None
    probabilities: list[float] | None = None
    model_version: str | None = None
    client_id: str | None = None
    canvas_png: bytes | None = None


@dataclass(frozen=True)
class CorrectionFilter:
    label: int | None = None
    predicted: int | None = None
    model_version: str | None = None
    wrong: bool | None = None  # True: only what the model got wrong

    def apply(self, query: Select[Any]) -> Select[Any]:
        conditions = []
        if self.label is not None:
            conditions.append(Correction.label == self.label)
        if self.predicted is not None:
            conditions.append(Correction.predicted == self.predicted)
        if self.model_version is not None:
            conditions.append(Correction.model_version == self.model_version)
        if self.wrong:
            conditions.append(and_(Correction.predicted.is_not(None),
                                   Correction.predicted != Correction.label))
        return query.where(*conditions) if conditions else query


def image_bytes(image: np.ndarray) -> bytes:
    """784 bytes, row-major: how an image is stored and hashed."""
    array = np.asarray(image)
    if array.shape != (28, 28) or array.dtype != np.uint8:
        raise ValueError(f"a stored image is (28, 28) uint8, not {array.shape} {array.dtype}")
    return array.tobytes()


def image_from_row(row: Correction) -> np.ndarray:
    return np.frombuffer(row.image, dtype=np.uint8).reshape(28, 28)


def store(database: Database, new: NewCorrection) -> tuple[int, bool]:
    """Insert one correction; (id, True), or (existing id, False) for an exact duplicate.

    The unique (image hash, label) constraint decides duplicates, so two workers sending the
    same correction at once still store it once.
    """
    raw = image_bytes(new.image)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        with database.session() as session:
            row = Correction(
                label=new.label, predicted=new.predicted, probabilities=new.probabilities,
                model_version=new.model_version, client_id=new.client_id, image=raw,
                image_sha256=digest, canvas_png=new.canvas_png,
            )
            session.add(row)
            session.flush()
            return row.id, True
    except IntegrityError:
        pass  # the same image with the same label is already stored
    with database.session() as session:
        found = session.scalar(select(Correction.id).where(
            Correction.image_sha256 == digest, Correction.label == new.label))
    if found is None:  # deleted between the two transactions: store it after all
        return store(database, new)
    return found, False


def page(database: Database, where: CorrectionFilter, *, limit: int,
         before_id: int | None = None) -> tuple[list[Correction], int]:
    """Newest first, `limit` rows older than `before_id`; and how many match in all."""
    with database.session() as session:
        query = where.apply(select(Correction)).order_by(Correction.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(Correction.id < before_id)
        rows = list(session.scalars(query))
        total = session.scalar(where.apply(select(func.count(Correction.id)))) or 0
    return rows, int(total)


def get(database: Database, correction_id: int) -> Correction | None:
    with database.session() as session:
        return session.get(Correction, correction_id)


def remove(database: Database, correction_id: int) -> bool:
    """Delete one correction; False when there was none with that id."""
    with database.session() as session:
        result = session.execute(delete(Correction).where(Correction.id == correction_id))
        return bool(getattr(result, "rowcount", 0))


def stats(database: Database) -> dict[str, Any]:
    """Counts per label and per model version, and the share the model got wrong."""
    wrong = case((and_(Correction.predicted.is_not(None),
                       Correction.predicted != Correction.label), 1), else_=0)
    judged = case((Correction.predicted.is_not(None), 1), else_=0)
    with database.session() as session:
        by_label: dict[int, int] = {}
        for label, count in session.execute(
                select(Correction.label, func.count()).group_by(Correction.label)):
            by_label[label] = count
        versions = session.execute(
            select(Correction.model_version, func.count(), func.sum(judged), func.sum(wrong))
            .group_by(Correction.model_version).order_by(Correction.model_version)).all()
    total = sum(by_label.values())
    judged_total = sum(int(v[2] or 0) for v in versions)
    wrong_total = sum(int(v[3] or 0) for v in versions)
    return {
        "total": total,
        "per_label": [int(by_label.get(d, 0)) for d in range(10)],
        "per_model_version": [
            {"model_version": version, "count": int(count), "judged": int(j or 0),
             "wrong": int(w or 0), "wrong_share": round(int(w or 0) / int(j), 6) if j else None}
            for version, count, j, w in versions
        ],
        "wrong": wrong_total,
        "wrong_share": round(wrong_total / judged_total, 6) if judged_total else None,
    }


def iterate(database: Database, where: CorrectionFilter,
            batch: int = 1000) -> Iterator[Correction]:
    """Every matching correction, oldest first, read in batches (for exports)."""
    last = 0
    while True:
        with database.session() as session:
            rows = list(session.scalars(where.apply(select(Correction))
                                        .where(Correction.id > last)
                                        .order_by(Correction.id).limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].id
