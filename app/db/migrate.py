"""Alembic, configured in code: the migration scripts ship inside the package (no alembic.ini).

    upgrade("sqlite:////srv/data/mnist-canvas.sqlite3")      # to the newest schema
    upgrade(url, "0001_corrections")                          # to one revision

Several processes may call `upgrade` at once (every worker migrates at startup): PostgreSQL
serialises them with a transaction-scoped advisory lock taken in `migrations/env.py`, SQLite
with a lock file beside the database; the second finds the schema current and does nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Connection, Engine

from app.db.engine import create_db_engine, normalize_url, redact, sqlite_path

logger = logging.getLogger(__name__)

#: Where the scripts live, as a package resource (so an installed wheel finds them).
SCRIPT_LOCATION = "app.db:migrations"
#: PostgreSQL advisory-lock key that serialises concurrent migrations ("mnistcv" in ASCII).
MIGRATION_LOCK_KEY = 0x6D6E69737463_76
#: How long a process waits for another's migration to finish (s).
MIGRATION_LOCK_TIMEOUT_S = 120
#: Alembic's `context` is one module-level object: one migration at a time in a process.
_PROCESS_LOCK = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration object, built in code; `url` is the database to migrate."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision the code knows."""
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001_corrections
        raise RuntimeError("no migrations found in app/db/migrations/versions")
    return head


def revisions() -> list[str]:
    """Every revision id, oldest first (a single line of history)."""
    return [script.revision for script in reversed(list(script_directory().walk_revisions()))]


def current_revision_of(connection: Connection) -> str | None:
    """The revision of the database behind `connection`; None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at; None for an empty database."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return current_revision_of(connection)
    finally:
        engine.dispose()


@contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".migrate.lock", timeout=MIGRATION_LOCK_TIMEOUT_S):
        yield


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision` on `engine`'s database, in one transaction."""
    url = engine.url.render_as_string(hide_password=False)
    lock = _sqlite_lock(url) if engine.dialect.name == "sqlite" else _nothing()
    with _PROCESS_LOCK, lock, engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("database %s is at revision %s", redact(url), revision)


def upgrade(url: str, revision: str = "head") -> None:
    """Create or upgrade the schema of the database at `url` to `revision` (default: newest)."""
    engine = create_db_engine(url)
    try:
        upgrade_engine(engine, revision)
    finally:
        engine.dispose()


@contextmanager
def _nothing() -> Iterator[None]:
    yield
