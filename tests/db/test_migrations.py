"""Migrations on real databases (SQLite and PostgreSQL): from empty, and revision by revision."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from app.db import (
    Base,
    DatabaseConfigError,
    create_db_engine,
    current_revision,
    head_revision,
    normalize_url,
    revisions,
    upgrade,
)

REPO = Path(__file__).resolve().parents[2]


def insert_correction(url: str, label: int) -> None:
    """A row written with plain SQL, as the oldest schema (0001) has it."""
    image = bytes([label]) * 784
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO corrections (created_at, label, image, image_sha256) "
                "VALUES (:at, :label, :image, :sha)"),
                {"at": datetime.now(UTC), "label": label, "image": image,
                 "sha": hashlib.sha256(image).hexdigest()})
    finally:
        engine.dispose()


def labels_in(url: str) -> list[int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT label FROM corrections ORDER BY id"))]
    finally:
        engine.dispose()


def test_first_revision_is_0001_corrections() -> None:
    assert revisions()[0] == "0001_corrections"
    assert revisions()[-1] == head_revision()


def test_upgrade_creates_the_schema_in_an_empty_database(database_url: str) -> None:
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()
    engine = create_db_engine(database_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("corrections")}
    finally:
        engine.dispose()
    assert {"id", "created_at", "label", "predicted", "probabilities", "model_version",
            "client_id", "image", "image_sha256", "canvas_png"} <= columns


def test_upgrade_walks_every_revision_and_keeps_the_rows(database_url: str) -> None:
    """From each revision to the next (0001 -> ... -> head), with data written at 0001."""
    for step, revision in enumerate(revisions()):
        upgrade(database_url, revision)
        assert current_revision(database_url) == revision
        if step == 0:
            insert_correction(database_url, 7)
    upgrade(database_url)  # at head already: nothing to do, no error
    assert current_revision(database_url) == head_revision()
    assert labels_in(database_url) == [7]


@pytest.mark.slow
def test_concurrent_upgrades_run_one_after_the_other(database_url: str) -> None:
    """Every worker process migrates at startup; several at once must not collide."""
    command = [sys.executable, "-m", "app.cli", "db", "upgrade", "--database-url", database_url]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert current_revision(database_url) == head_revision()
    assert all(f"at revision {head_revision()}" in out for out in outputs), outputs


def test_models_match_the_migrations(database_url: str) -> None:
    """The SQLAlchemy models and the schema the migrations build do not drift apart."""
    upgrade(database_url)
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'db.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u:p@db:5432/mnist", "postgresql+psycopg://u:p@db:5432/mnist"),
    ("postgres://u@db/mnist", "postgresql+psycopg://u@db/mnist"),
    ("postgresql+psycopg://u@db/mnist", "postgresql+psycopg://u@db/mnist"),
    ("sqlite:////srv/data/x.sqlite3", "sqlite:////srv/data/x.sqlite3"),
])
def test_standard_urls_get_the_psycopg_dialect(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("bad", ["mysql://u@db/x", "postgresql+asyncpg://u@db/x", "/tmp/x.db"])
def test_unsupported_urls_name_the_setting(bad: str) -> None:
    with pytest.raises(DatabaseConfigError, match="MNIST_CANVAS_DATABASE_URL"):
        normalize_url(bad)
