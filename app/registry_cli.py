"""`mnist-canvas finetune` and `mnist-canvas models list|promote|rollback`: no server needed.

    mnist-canvas finetune              # train a candidate on MNIST + stored corrections, gate it
    mnist-canvas finetune --dry-run    # the same report; nothing stored, nothing promoted
    mnist-canvas models list           # the registry's history, current marked
    mnist-canvas models promote 3      # or a model version hash (prefix)
    mnist-canvas models rollback       # back to the version current before this one

finetune exits 0 when the candidate is promoted, 1 with the gate's reason when it is not, 2 on a
configuration error (database URL, model file, data), 3 when there is nothing to learn from.
Running servers pick a promotion up within MNIST_CANVAS_MODEL_POLL_SECONDS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.settings import Settings

if TYPE_CHECKING:  # torch-heavy modules are imported by the commands that need them
    from model.checkpoint import Checkpoint
    from model.data import Mnist

URL_HELP = "database URL (default: MNIST_CANVAS_DATABASE_URL, else SQLite in the data dir)"


def open_database(args: argparse.Namespace, settings: Settings) -> Any:
    """The migrated database, or None after printing why not."""
    from app.db import Database, DatabaseConfigError, database_url

    try:
        database = Database(database_url(args.database_url or settings.database_url,
                                         settings.data_dir), migrate=True)
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if not database.prepare(force=True):
        print(f"error: {database.error}", file=sys.stderr)
        database.dispose()
        return None
    return database


def current_checkpoint(session: Any, settings: Settings) -> tuple[Any, Any]:
    """The registry's current version and its checkpoint; the model file becomes version 1
    when the registry is empty (as a server does on first start)."""
    from app.db import registry
    from model.checkpoint import load_checkpoint

    row = registry.current(session)
    if row is None:
        row = registry.ensure_registered(session, load_checkpoint(settings.model_path),
                                         actor="finetune")
    return row, registry.checkpoint_of(row)


def load_corrections(session: Any) -> tuple[Any, int]:
    """Every stored correction as model.finetune.Corrections, and the newest id."""
    import numpy as np
    from sqlalchemy import select

    from app.db.models import Correction
    from model.finetune import Corrections

    rows = session.execute(select(Correction.id, Correction.image, Correction.label,
                                  Correction.client_id).order_by(Correction.id)).all()
    images = [np.frombuffer(r.image, dtype=np.uint8).reshape(28, 28) for r in rows]
    corrections = Corrections.from_lists(images, [r.label for r in rows],
                                         [r.client_id for r in rows])
    return corrections, (rows[-1].id if rows else 0)


def cmd_finetune(args: argparse.Namespace) -> int:
    from app.db import registry
    from model.checkpoint import CheckpointError
    from model.data import MnistDataError, load_mnist
    from model.device import set_threads
    from model.finetune import FinetuneConfig, finetune

    # Flags override the settings, as for `serve`.
    overrides = {"data_dir": args.data_dir, "model_path": args.model}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    set_threads(settings.torch_threads)
    config = FinetuneConfig(
        correction_weight=args.weight or settings.finetune_correction_weight,
        holdout_fraction=settings.finetune_holdout_fraction,
        max_valid_drop=settings.finetune_max_valid_drop,
    )
    database = open_database(args, settings)
    if database is None:
        return 2
    try:
        with database.session() as session:
            parent, current = current_checkpoint(session, settings)
            parent_id = parent.id
            corrections, newest = load_corrections(session)
        if len(corrections) < 2:
            print(f"nothing to learn from: {len(corrections)} corrections stored; the gate "
                  "needs some to train on and some to hold out.", file=sys.stderr)
            return 3
        data = load_mnist(settings.data_dir, download=settings.download)
        result = finetune(current, data, corrections, config)
        report = result.report
        print(report.format())
        if args.dry_run:
            print("dry run: nothing stored, nothing promoted")
            return 0 if report.promoted else 1
        candidate = recalibrated(current, result.candidate, data)
        with database.session() as session:
            row = registry.add_version(session, candidate, source="finetune",
                                       parent_id=parent_id, gate_report=report.to_dict(),
                                       corrections_seen=newest)
            if report.promoted:
                registry.set_current(session, row, action="promote", actor="finetune (gate)")
            number = row.id
    except (CheckpointError, MnistDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    if report.promoted:
        print(f"promoted: version {number} ({report.candidate_version}) is current")
        return 0
    print(f"not promoted (stored as version {number}): {report.reason}", file=sys.stderr)
    return 1


def recalibrated(parent: Checkpoint, candidate: Checkpoint, data: Mnist) -> Checkpoint:
    """The candidate with its own verdict calibration when its parent had one: a calibration
    belongs to the weights it was fitted for, and the server ignores a stale one. The parent's
    model of the training digits is reused (same inputs), so this costs seconds, not 13."""
    from model.calibrate import calibrate
    from model.verdict import VerdictModel

    verdicts = VerdictModel.from_checkpoint(parent.meta, parent.extra_tensors)
    if verdicts is None:
        return candidate
    calibrated = calibrate(candidate, data, typicality=verdicts.typicality,
                           detector=verdicts.detector)
    print(f"verdict recalibrated for {calibrated.model_version}")
    return calibrated


def cmd_models(args: argparse.Namespace) -> int:
    from app.db import registry
    from model.checkpoint import CheckpointError

    settings = Settings()
    database = open_database(args, settings)
    if database is None:
        return 2
    try:
        with database.session() as session:
            if args.models_command == "list":
                print(format_history(registry.history(session)))
                return 0
            if args.models_command == "promote":
                row = registry.promote(session, args.version, actor="cli")
            else:
                row = registry.rollback(session, actor="cli")
            print(f"version {row.id} ({row.model_version}) is current; running servers switch "
                  f"within {settings.model_poll_seconds:g} s")
            return 0
    except (registry.RegistryError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        database.dispose()


def format_history(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'':2}{'#':>3}  {'version':12}  {'parent':12}  {'source':9}  {'valid':>6}  "
             f"{'test':>6}  {'gate':8}  created"]
    for r in rows:
        gate = r["gate_report"]
        verdict = "-" if gate is None else ("passed" if gate.get("promoted") else "refused")
        valid, test = r["metrics"].get("valid_accuracy"), r["metrics"].get("test_accuracy")
        lines.append(
            f"{'*' if r['current'] else ' ':2}{r['id']:>3}  {r['model_version']:12}  "
            f"{r['parent'] or '-':12}  {r['source']:9}  "
            f"{_number(valid)}  {_number(test)}  {verdict:8}  {r['created_at']}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return f"{value:>6.4f}" if isinstance(value, int | float) else f"{'-':>6}"


def add_registry_commands(sub: Any) -> None:
    """Add `finetune` and `models` to the `mnist-canvas` parser."""
    p = sub.add_parser("finetune", help="train a candidate on MNIST + corrections; gate it")
    p.add_argument("--dry-run", action="store_true", help="report only; store and promote nothing")
    p.add_argument("--weight", type=int, default=None,
                   help="times each correction counts (default MNIST_CANVAS_FINETUNE_"
                   "CORRECTION_WEIGHT)")
    p.add_argument("--database-url", default=None, help=URL_HELP)
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory")
    p.add_argument("--model", type=Path, default=None,
                   help="model file registered as version 1 when the registry is empty")
    p.set_defaults(func=cmd_finetune)
    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True)
    for name, text in (("list", "every version, the current one starred"),
                       ("rollback", "serve the version that was current before this one")):
        q = models.add_parser(name, help=text)
        q.add_argument("--database-url", default=None, help=URL_HELP)
        q.set_defaults(func=cmd_models)
    q = models.add_parser("promote", help="make a stored version current")
    q.add_argument("version", help="its number (models list) or model version hash")
    q.add_argument("--database-url", default=None, help=URL_HELP)
    q.set_defaults(func=cmd_models)
