"""The app's database: corrections people send, kept by SQLAlchemy 2 and migrated by Alembic.

SQLite in WAL mode (a file in the data directory) unless MNIST_CANVAS_DATABASE_URL is a
`postgresql://` URL, then PostgreSQL through psycopg 3. The schema is created and upgraded only
by the migrations in `app/db/migrations/` (at startup or with `mnist-canvas db upgrade`).

Importing this package costs nothing: its names load SQLAlchemy and Alembic (about 0.3 s) on
first use, all at once as an eager import did, so `mnist-canvas train` and `--help`, whose
`db` commands live in `app.db.cli`, never pay for a database they do not open.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

# Alembic announces each of its built-in plugins at INFO when it is first imported. Imported on
# first use, that is now after the command line has configured logging, where the lines would
# reach the terminal (before, the eager import ran before logging was configured, unheard).
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

if TYPE_CHECKING:
    from app.db.database import Database, DatabaseUnavailable, make_session_factory
    from app.db.engine import (
        DatabaseConfigError,
        create_db_engine,
        database_url,
        default_url,
        is_sqlite,
        normalize_url,
        redact,
        sqlite_url,
    )
    from app.db.migrate import (
        alembic_config,
        current_revision,
        head_revision,
        revisions,
        upgrade,
        upgrade_engine,
    )
    from app.db.models import Base, Correction
    from app.db.registry_models import (  # issue 13
        FinetuneRun,
        ModelCurrent,
        ModelPromotion,
        ModelVersion,
    )

#: The modules the names below come from, imported together on the first use of any of them.
_SOURCES = ("database", "engine", "migrate", "models", "registry_models")

__all__ = [
    "Base",
    "Correction",
    "Database",
    "DatabaseConfigError",
    "DatabaseUnavailable",
    "FinetuneRun",
    "ModelCurrent",
    "ModelPromotion",
    "ModelVersion",
    "alembic_config",
    "create_db_engine",
    "current_revision",
    "database_url",
    "default_url",
    "head_revision",
    "is_sqlite",
    "make_session_factory",
    "normalize_url",
    "redact",
    "revisions",
    "sqlite_url",
    "upgrade",
    "upgrade_engine",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for source in _SOURCES:
        module = importlib.import_module(f"{__name__}.{source}")
        for export in __all__:
            if export in vars(module):
                globals()[export] = vars(module)[export]
    return globals()[name]
