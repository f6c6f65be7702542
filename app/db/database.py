"""The app's handle on its database: engine, sessions, and whether the schema is ready.

The server starts whether or not the database is reachable: `start` prepares it (migrates, or
checks the revision) in a background thread, and `session` raises DatabaseUnavailable, with a
sentence for the client, while it is down, locked or not yet migrated. Prediction never waits
for the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from app.db.engine import create_db_engine, normalize_url, redact
from app.db.migrate import current_revision_of, head_revision, upgrade_engine

logger = logging.getLogger(__name__)

#: After a failed attempt to reach the database, wait this long before the next (s).
RETRY_AFTER_S = 5


class DatabaseUnavailable(RuntimeError):
    """The database cannot be used right now; the message is a sentence for the client."""

    retry_after = RETRY_AFTER_S


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded rows readable after commit (answers are built from them)."""
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """Engine, session factory and readiness of one database URL."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.migrate = migrate
        self.engine = create_db_engine(self.url)
        self.sessions = make_session_factory(self.engine)
        self.status = "starting"
        self.error: str | None = None
        self._lock = threading.Lock()
        self._last_attempt = -float("inf")

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def start(self) -> threading.Thread:
        """Prepare the schema in the background; the server answers meanwhile."""
        thread = threading.Thread(target=self.prepare, kwargs={"force": True},
                                  name="database-prepare", daemon=True)
        thread.start()
        return thread

    def prepare(self, *, force: bool = False) -> bool:
        """Migrate (or check the revision) once; True when the database is ready to use.

        Attempts are spaced by RETRY_AFTER_S, and only one runs at a time: a request that
        arrives while another attempt is in progress is not made to wait for it.
        """
        if self.ready:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.ready:
                return True
            if not force and time.monotonic() - self._last_attempt < RETRY_AFTER_S:
                return False
            self._last_attempt = time.monotonic()
            try:
                if self.migrate:
                    upgrade_engine(self.engine)
                else:
                    with self.engine.connect() as connection:
                        found, head = current_revision_of(connection), head_revision()
                    if found != head:
                        raise _NotMigrated(found, head)
            except _NotMigrated as exc:
                self._fail(str(exc), exc)
                return False
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                self._fail(f"The database {redact(self.url)} cannot be reached ({_reason(exc)}).",
                           exc)
                return False
            self.status, self.error = "ready", None
            logger.info("database ready (%s, %s)", self.backend, redact(self.url))
            return True
        finally:
            self._lock.release()

    def _fail(self, message: str, exc: BaseException) -> None:
        self.status, self.error = "unavailable", message
        logger.warning("database not ready: %s", message, exc_info=exc)

    def require_ready(self) -> None:
        if not self.prepare():
            reason = self.error or "it is still being prepared"
            raise DatabaseUnavailable(
                f"Corrections cannot be stored or read right now: {_sentence(reason)} "
                "Predictions still work; retry in a few seconds."
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error.

        Connection failures, lock timeouts and a down server become DatabaseUnavailable;
        IntegrityError passes through for the caller to interpret (a duplicate).
        """
        self.require_ready()
        try:
            with self.sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except (DBAPIError, PoolTimeout) as exc:
            logger.warning("database error: %s", _reason(exc))
            if self.backend != "sqlite" and isinstance(exc, (OperationalError, InterfaceError)):
                # The server is down or unreachable: answer at once until the next attempt
                # rather than let every request wait out a connect timeout in the thread pool
                # (which large predictions share).
                self.status = "unavailable"
                self.error = f"The database {redact(self.url)} cannot be reached ({_reason(exc)})."
                self._last_attempt = time.monotonic()
            raise DatabaseUnavailable(
                "The database did not answer in time or refused the connection "
                f"({_reason(exc)}); nothing was stored. Predictions still work; retry shortly."
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


class _NotMigrated(RuntimeError):
    def __init__(self, found: str | None, head: str) -> None:
        super().__init__(f"The database schema is at revision {found or '(empty)'} but this "
                         f"version needs {head}: run `mnist-canvas db upgrade`.")


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's links and SQL."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return text[:200]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
