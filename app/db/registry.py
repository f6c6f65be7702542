"""The model registry: store versions, name the current one, promote, roll back, read back.

Every function takes a SQLAlchemy session (one transaction, see `Database.session`). What is read
back is verified before anyone serves it: the SHA-256 of the stored bytes, then the checkpoint's
own checks (`model.checkpoint.from_bytes`: shapes, finite weights, the weights' hash).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import utcnow
from app.db.registry_models import ModelCurrent, ModelPromotion, ModelVersion
from model.checkpoint import Checkpoint, CheckpointError, from_bytes, to_bytes

logger = logging.getLogger(__name__)

#: Metadata too large or too internal for the registry's JSON column (the weights hold it all).
META_SKIPPED = ("history",)


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and what to do."""


def metrics_of(ckpt: Checkpoint) -> dict[str, Any]:
    """The numbers shown in the history: validation and test accuracy, training size."""
    meta = ckpt.meta
    return {
        "valid_accuracy": (meta.get("valid") or {}).get("accuracy"),
        "test_accuracy": (meta.get("test") or {}).get("accuracy"),
        "train_size": meta.get("train_size"),
    }


def add_version(session: Session, ckpt: Checkpoint, *, source: str,
                parent_id: int | None = None, gate_report: dict[str, Any] | None = None,
                corrections_seen: int | None = None) -> ModelVersion:
    """Store a checkpoint as a version (not current); the same weights are stored once."""
    existing = find_by_hash(session, ckpt.model_version)
    if existing is not None:
        return existing
    payload = to_bytes(ckpt)
    meta = {k: v for k, v in ckpt.meta.items() if k not in META_SKIPPED}
    meta.update(arch=ckpt.arch, transforms=list(ckpt.transforms))
    row = ModelVersion(
        model_version=ckpt.model_version, parent_id=parent_id, source=source, weights=payload,
        weights_sha256=hashlib.sha256(payload).hexdigest(), meta=meta,
        metrics=metrics_of(ckpt), gate_report=gate_report, corrections_seen=corrections_seen,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def find_by_hash(session: Session, model_version: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.model_version == model_version)).first()


def find(session: Session, ref: str) -> ModelVersion:
    """A version by its number (`3`) or its model version (`05cb4d213bf3`, or a prefix)."""
    ref = ref.strip()
    row: ModelVersion | None = None
    if ref.isdigit():
        row = session.get(ModelVersion, int(ref))
    if row is None and ref:
        matches = session.scalars(
            select(ModelVersion).where(ModelVersion.model_version.startswith(ref))).all()
        if len(matches) > 1:
            raise RegistryError(f"{ref!r} matches {len(matches)} versions; give more digits.")
        row = matches[0] if matches else None
    if row is None:
        raise RegistryError(f"no model version {ref!r} in the registry; "
                            "`mnist-canvas models list` shows them.")
    return row


def current_id(session: Session) -> int | None:
    """The id of the current version: the one cheap query every worker polls."""
    return session.scalar(select(ModelCurrent.version_id).where(ModelCurrent.id == 1))


def current(session: Session) -> ModelVersion | None:
    version_id = current_id(session)
    return session.get(ModelVersion, version_id) if version_id is not None else None


def set_current(session: Session, row: ModelVersion, *, action: str, actor: str
                ) -> ModelVersion:
    """Make `row` the current version and log who did it; `action` is register/promote/
    rollback. Locks the single `model_current` row, so concurrent promotions queue."""
    now = utcnow()
    pointer = session.scalars(select(ModelCurrent).where(ModelCurrent.id == 1)
                              .with_for_update()).first()
    previous = pointer.version_id if pointer is not None else None
    if pointer is None:
        session.add(ModelCurrent(id=1, version_id=row.id, changed_at=now))
    else:
        pointer.version_id, pointer.changed_at = row.id, now
    session.add(ModelPromotion(version_id=row.id, previous_id=previous, action=action,
                               actor=actor[:64], at=now))
    session.flush()
    logger.info("model registry: %s version %d (%s) by %s", action, row.id, row.model_version,
                actor)
    return row


def promote(session: Session, ref: str, *, actor: str) -> ModelVersion:
    """Make a stored version current after checking that it loads."""
    row = find(session, ref)
    checkpoint_of(row)  # never point every worker at something that cannot be served
    return set_current(session, row, action="promote", actor=actor)


def served_stack(session: Session) -> list[int]:
    """The versions current one after another, replaying the log: a promotion pushes, a
    rollback pops. The last is current; rollback goes to the one before it."""
    stack: list[int] = []
    for event in session.scalars(select(ModelPromotion).order_by(ModelPromotion.id)):
        if event.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != event.version_id:
                stack.append(event.version_id)
        else:
            stack.append(event.version_id)
    return stack


def rollback(session: Session, *, actor: str) -> ModelVersion:
    """Serve the version that was current before the current one."""
    stack = served_stack(session)
    if len(stack) < 2:
        raise RegistryError("nothing to roll back to: only one version has been current.")
    row = session.get(ModelVersion, stack[-2])
    assert row is not None
    checkpoint_of(row)
    return set_current(session, row, action="rollback", actor=actor)


def checkpoint_of(row: ModelVersion) -> Checkpoint:
    """The stored checkpoint, verified: bytes' SHA-256, then every checkpoint check, then that
    its weights are the version the row names. Raises CheckpointError."""
    source = f"registry version {row.id} ({row.model_version})"
    payload = bytes(row.weights)
    if hashlib.sha256(payload).hexdigest() != row.weights_sha256:
        raise CheckpointError(f"{source}: the stored bytes do not match their SHA-256; "
                              "the entry was altered or corrupted.")
    ckpt = from_bytes(payload, source)
    if ckpt.model_version != row.model_version:
        raise CheckpointError(f"{source}: the weights are version {ckpt.model_version}.")
    return ckpt


def ensure_registered(session: Session, ckpt: Checkpoint, *, actor: str) -> ModelVersion:
    """On first start: the served (shipped) model becomes version 1 and current. Returns the
    current version. Safe when several workers race: the loser's transaction fails with an
    IntegrityError and the caller reads the winner's."""
    found = current(session)
    if found is not None:
        return found
    row = add_version(session, ckpt, source="shipped")
    return set_current(session, row, action="register", actor=actor)


def history(session: Session) -> list[dict[str, Any]]:
    """Every version, newest first, with its parent, numbers, report and promotions."""
    now_id = current_id(session)
    events: dict[int, list[dict[str, Any]]] = {}
    for event in session.scalars(select(ModelPromotion).order_by(ModelPromotion.id)):
        events.setdefault(event.version_id, []).append(
            {"action": event.action, "actor": event.actor, "at": _iso(event.at)})
    rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).all()
    by_id = {r.id: r.model_version for r in rows}
    return [
        {
            "id": r.id,
            "model_version": r.model_version,
            "parent": by_id.get(r.parent_id) if r.parent_id is not None else None,
            "created_at": _iso(r.created_at),
            "source": r.source,
            "current": r.id == now_id,
            "size_bytes": len(r.weights),
            "metrics": r.metrics or {},
            "gate_report": r.gate_report,
            "corrections_seen": r.corrections_seen,
            "promotions": events.get(r.id, []),
        }
        for r in rows
    ]


def count_versions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ModelVersion)) or 0)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")

