"""Engines for the corrections database: SQLite (WAL) by default, PostgreSQL by URL.

`database_url` picks the URL from settings; `normalize_url` turns the standard `postgresql://`
form into SQLAlchemy's psycopg 3 dialect; `create_db_engine` sets up each backend so that
several worker processes can write at once without corrupting or blocking one another for long.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

#: The SQLite file's name inside the data directory when no URL is configured.
SQLITE_FILENAME = "mnist-canvas.sqlite3"
#: How long a SQLite writer waits for another writer's lock before giving up (ms).
SQLITE_BUSY_TIMEOUT_MS = 5000
#: How long a PostgreSQL connection attempt may take before the database counts as down (s).
PG_CONNECT_TIMEOUT_S = 3
#: The longest any one statement may run on PostgreSQL (ms): a stuck lock becomes an error.
PG_STATEMENT_TIMEOUT_MS = 10_000


class DatabaseConfigError(ValueError):
    """The database URL names a backend this app does not support."""


def sqlite_url(path: Path | str) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def default_url(data_dir: Path) -> str:
    """SQLite in the data directory: embedded, zero setup."""
    return sqlite_url(Path(data_dir) / SQLITE_FILENAME)


def normalize_url(url: str) -> str:
    """A standard `postgresql://` (or `postgres://`) URL in psycopg 3's dialect; SQLite as is.

    Raises DatabaseConfigError for any other backend or driver, naming the setting.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise DatabaseConfigError(
            f"MNIST_CANVAS_DATABASE_URL {url!r} is not a URL: use postgresql://user:password@host"
            "/name or sqlite:////absolute/path.sqlite3."
        )
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return f"sqlite://{rest}"
    raise DatabaseConfigError(
        f"MNIST_CANVAS_DATABASE_URL uses {scheme!r}: only postgresql:// (driven by psycopg 3) "
        "and sqlite:// are supported."
    )


def database_url(configured: str | None, data_dir: Path) -> str:
    """The normalised URL to use: the setting when given, else SQLite in the data directory."""
    return normalize_url(configured) if configured else default_url(data_dir)


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout and foreign keys on every connection; explicit BEGIN.

    pysqlite's own transaction handling issues BEGIN lazily and behind SQLAlchemy's back; taking
    it over (isolation_level=None, BEGIN on SQLAlchemy's begin) is what SQLAlchemy's docs advise
    so that transactions, savepoints and Alembic's DDL behave as on other databases.
    """

    path = sqlite_path(engine.url.render_as_string(hide_password=False))

    @event.listens_for(engine, "do_connect")
    def _make_directory(*_args: Any) -> None:
        if path is not None:  # on first use, not when the app is built
            path.parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # WAL's durable-on-checkpoint default
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url` (already normalised or standard); nothing is connected yet."""
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(url, echo=echo,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                             "check_same_thread": False})
        _sqlite_setup(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,  # a server restart shows up as one retry, not an error per worker
        pool_size=5,
        max_overflow=10,
        pool_timeout=PG_CONNECT_TIMEOUT_S,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}",
            "application_name": "mnist-canvas",
        },
    )
