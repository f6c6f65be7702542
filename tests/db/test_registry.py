"""The model registry on real databases (SQLite and PostgreSQL): store, promote, roll back, and
verify what is read back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from sqlalchemy import update

from app.db import Database, ModelVersion
from app.db import registry as model_registry
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from tests.conftest import SHIPPED_MODEL


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    assert db.prepare(force=True), db.error
    yield db
    db.dispose()


def variant(step: float) -> Checkpoint:
    """The shipped model with its bias nudged: a different, valid version."""
    ckpt = load_checkpoint(SHIPPED_MODEL)
    ckpt.bias = ckpt.bias + torch.full((10,), step)
    return ckpt


def test_first_start_registers_the_served_model_once(database: Database) -> None:
    shipped = load_checkpoint(SHIPPED_MODEL)
    with database.session() as session:
        first = model_registry.ensure_registered(session, shipped, actor="startup")
        again = model_registry.ensure_registered(session, variant(0.1), actor="startup")
        assert first.id == again.id and first.source == "shipped"
        assert model_registry.count_versions(session) == 1
        assert model_registry.checkpoint_of(first).model_version == shipped.model_version


def test_promote_and_rollback_walk_the_history(database: Database) -> None:
    with database.session() as session:
        v1 = model_registry.ensure_registered(session, load_checkpoint(SHIPPED_MODEL),
                                              actor="startup")
        v2 = model_registry.add_version(session, variant(0.1), source="finetune",
                                        parent_id=v1.id, gate_report={"promoted": True})
        v3 = model_registry.add_version(session, variant(0.2), source="finetune",
                                        parent_id=v2.id)
        assert model_registry.current_id(session) == v1.id  # stored is not current
        model_registry.promote(session, str(v2.id), actor="test")
        model_registry.promote(session, v3.model_version[:8], actor="test")
        assert model_registry.current_id(session) == v3.id
        assert model_registry.rollback(session, actor="test").id == v2.id
        assert model_registry.rollback(session, actor="test").id == v1.id
        with pytest.raises(model_registry.RegistryError, match="nothing to roll back"):
            model_registry.rollback(session, actor="test")
        history = model_registry.history(session)
    assert [h["id"] for h in history] == [v3.id, v2.id, v1.id]
    assert [h["current"] for h in history] == [False, False, True]
    assert history[1]["parent"] == v1.model_version
    assert history[1]["gate_report"] == {"promoted": True}
    assert [p["action"] for p in history[0]["promotions"]] == ["promote"]
    assert [p["action"] for p in history[2]["promotions"]] == ["register", "rollback"]


def test_promote_refuses_unknown_and_broken_versions(database: Database) -> None:
    with database.session() as session:
        v1 = model_registry.ensure_registered(session, load_checkpoint(SHIPPED_MODEL),
                                              actor="startup")
        v2 = model_registry.add_version(session, variant(0.1), source="finetune")
        with pytest.raises(model_registry.RegistryError, match="no model version"):
            model_registry.promote(session, "999", actor="test")
        # A flipped byte in the stored weights.
        damaged = bytearray(v2.weights)
        damaged[-5] ^= 0xFF
        session.execute(update(ModelVersion).where(ModelVersion.id == v2.id)
                        .values(weights=bytes(damaged)))
        session.expire_all()
        with pytest.raises(CheckpointError, match="SHA-256"):
            model_registry.promote(session, str(v2.id), actor="test")
        assert model_registry.current_id(session) == v1.id


def test_same_weights_are_stored_once(database: Database) -> None:
    with database.session() as session:
        a = model_registry.add_version(session, variant(0.3), source="finetune")
        b = model_registry.add_version(session, variant(0.3), source="finetune")
        assert a.id == b.id
