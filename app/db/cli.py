"""`mnist-canvas db ...` and `mnist-canvas feedback export`: the database from the shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.settings import Settings

EXPORT_FORMATS = ("csv", "ndjson", "idx")


def settings_url(args: argparse.Namespace) -> str:
    """--database-url, else the settings' URL, else SQLite in the data directory."""
    from app.db.engine import database_url

    settings = Settings()
    return database_url(args.database_url or settings.database_url, settings.data_dir)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.engine import DatabaseConfigError, redact
    from app.db.migrate import current_revision, upgrade

    try:
        url = settings_url(args)
        upgrade(url, args.revision)
        print(f"{redact(url)}: at revision {current_revision(url)}")
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: the database could not be upgraded: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.engine import DatabaseConfigError, redact
    from app.db.migrate import current_revision, head_revision

    try:
        url = settings_url(args)
        found = current_revision(url)
    except (DatabaseConfigError, SQLAlchemyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, DatabaseConfigError) else 1
    head = head_revision()
    state = "up to date" if found == head else f"needs `mnist-canvas db upgrade` to {head}"
    print(f"{redact(url)}: revision {found or '(empty)'}, {state}")
    return 0 if found == head else 3


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.corrections import CorrectionFilter
    from app.db.database import Database, DatabaseUnavailable
    from app.db.engine import DatabaseConfigError
    from app.exports import export_corrections
    from model.atomic import write_atomic

    try:
        database = Database(settings_url(args), migrate=False)
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        payload, count = export_corrections(database, args.format, CorrectionFilter(
            label=args.label, predicted=args.predicted, model_version=args.model_version,
            wrong=args.wrong_only or None))
    except (DatabaseUnavailable, SQLAlchemyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    write_atomic(args.out, payload)
    print(f"wrote {count} corrections to {args.out} ({args.format}, {len(payload)} bytes)")
    return 0


def add_database_commands(sub: Any) -> None:
    """Add `db upgrade`, `db current` and `feedback export` to the `mnist-canvas` parser."""
    url_help = "database URL (default: MNIST_CANVAS_DATABASE_URL, else SQLite in the data dir)"
    db = sub.add_parser("db", help="create or upgrade the corrections database").add_subparsers(
        dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply migrations up to the newest schema (or --revision)")
    p.add_argument("--database-url", default=None, help=url_help)
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("current", help="show the database's revision (exit 3 if behind)")
    p.add_argument("--database-url", default=None, help=url_help)
    p.set_defaults(func=cmd_db_current)

    feedback = sub.add_parser("feedback", help="the corrections people sent").add_subparsers(
        dest="feedback_command", required=True)
    p = feedback.add_parser("export", help="write the corrections to a file")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True,
                   help="csv (Kaggle MNIST layout), ndjson, or idx (.tar.gz of an IDX pair)")
    p.add_argument("--out", type=Path, required=True, help="file to write (atomically)")
    p.add_argument("--database-url", default=None, help=url_help)
    p.add_argument("--label", type=int, choices=range(10), default=None)
    p.add_argument("--predicted", type=int, choices=range(10), default=None)
    p.add_argument("--model-version", default=None)
    p.add_argument("--wrong-only", action="store_true", help="only what the model got wrong")
    p.set_defaults(func=cmd_feedback_export)
