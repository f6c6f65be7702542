"""Background fine-tune: after N new corrections, one worker runs `mnist-canvas finetune`.

Off by default (MNIST_CANVAS_FINETUNE_AFTER_CORRECTIONS=0). The model watcher (app.rollout)
calls `check` on its own thread after each poll, never in a request. The run is a separate
process at a lower CPU priority, so it never blocks a request's thread or the event loop; its
promotion (if the gate passes) reaches every worker like any other. Every worker of every
replica may see the same new corrections at once: the claim is a row in `finetune_runs` whose
`after_correction` is unique, so exactly one of them starts the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.db import Database, DatabaseUnavailable, FinetuneRun, ModelVersion
from app.db.models import Correction, utcnow

logger = logging.getLogger(__name__)

#: A run not finished after this long is taken for dead (its worker stopped); another may start.
STALE_AFTER = timedelta(hours=1)


class BackgroundFinetune:
    """Starts, watches and records background fine-tunes for one worker process."""

    def __init__(self, database: Database, *, every: int) -> None:
        self.database = database
        self.every = every
        self.worker = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self.process: subprocess.Popen[bytes] | None = None
        self.run_id: int | None = None

    def check(self) -> bool:
        """Record a finished run; claim and start a new one when enough corrections arrived.
        True when this call started a run."""
        if self.every <= 0:
            return False
        try:
            if self.process is not None:
                if self.process.poll() is None:
                    return False
                self._finish(self.process.returncode)
            run = self._claim()
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            logger.warning("background finetune skipped: %s", exc)
            return False
        if run is None:
            return False
        self.run_id = run
        command = [sys.executable, "-m", "app.cli", "finetune"]
        if shutil.which("nice"):
            command = ["nice", "-n", "10", *command]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        logger.info("background finetune %d started (pid %d)", run, self.process.pid)
        return True

    def _claim(self) -> int | None:
        with self.database.session() as session:
            last = session.scalars(select(FinetuneRun).order_by(FinetuneRun.id.desc())).first()
            if last is not None and last.finished_at is None:
                started = last.started_at
                if started.tzinfo is None:
                    started = started.replace(tzinfo=UTC)
                if datetime.now(UTC) - started < STALE_AFTER:
                    return None  # one is running somewhere
            seen = session.scalar(select(func.max(ModelVersion.corrections_seen))) or 0
            after = max(seen, last.newest_correction if last is not None else 0)
            fresh = session.scalar(select(func.count()).select_from(Correction)
                                   .where(Correction.id > after)) or 0
            if fresh < self.every:
                return None
            newest = session.scalar(select(func.max(Correction.id))) or after
        try:
            with self.database.session() as session:
                run = FinetuneRun(after_correction=after, newest_correction=newest,
                                  worker=self.worker, started_at=utcnow())
                session.add(run)
                session.flush()
                return run.id
        except IntegrityError:
            return None  # another worker claimed this batch

    def _finish(self, code: int) -> None:
        with self.database.session() as session:
            run = session.get(FinetuneRun, self.run_id)
            if run is not None:
                run.finished_at, run.exit_code = utcnow(), code
        outcome = {0: "promoted", 1: "refused by the gate"}.get(code, f"failed ({code})")
        logger.info("background finetune %s: %s", self.run_id, outcome)
        self.process, self.run_id = None, None

    def stop(self) -> None:
        """On shutdown: let a running fine-tune finish on its own (it is its own process)."""
        self.process = None
