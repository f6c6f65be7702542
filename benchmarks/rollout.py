"""Rollout: seconds from a promotion in the registry to every worker of a live server serving it.

A live `mnist-canvas serve --workers W` on a SQLite registry (MNIST_CANVAS_MODEL_POLL_SECONDS at
its default, 1 s) registers the shipped model on first start; a new version (the shipped weights
with a nudged bias, a real verified checkpoint) is stored and promoted; each worker logs the
moment it swaps, with its pid. The time is the last worker's swap minus the promotion.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.environment import SHIPPED_MODEL, bench_env
from benchmarks.servers import ServerProcess, http_get

SWAP = re.compile(r"^(\S+ \S+) INFO app\.rollout: hot reload: worker (\d+) now serves registry "
                  r"version (\d+)", re.MULTILINE)


def seed_database(path: Path, corrections: Any) -> str:
    """A migrated SQLite database at `path` holding `corrections`; its URL."""
    from app.db import Correction, create_db_engine, sqlite_url, upgrade
    from app.db.models import utcnow

    url = sqlite_url(path)
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            rows = []
            for image, label, client in zip(corrections.images, corrections.labels,
                                            corrections.clients, strict=True):
                raw = image.tobytes()
                rows.append({"created_at": utcnow(), "label": int(label), "image": raw,
                             "image_sha256": hashlib.sha256(raw).hexdigest(),
                             "client_id": str(client)})
            if rows:
                connection.execute(Correction.__table__.insert(), rows)
    finally:
        engine.dispose()
    return url


def measure_rollout(tmp: Path, *, workers: int, poll: float | None = None) -> dict[str, Any]:
    from app.db import Database, sqlite_url
    from app.db import registry as model_registry
    from app.settings import Settings
    from model.checkpoint import load_checkpoint

    if poll is None:  # the server's default interval
        poll = float(Settings.model_fields["model_poll_seconds"].default)
    url = sqlite_url(tmp / "rollout.db")
    env = bench_env(MNIST_CANVAS_DATABASE_URL=url, MNIST_CANVAS_MODEL_POLL_SECONDS=str(poll))
    log = tmp / "rollout-server.log"
    with ServerProcess(model=SHIPPED_MODEL, workers=workers, env=env, log_path=log) as server:
        database = Database(url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every worker's first poll registers/adopts v1
            if database.prepare():
                with database.session() as session:
                    if model_registry.current_id(session) is not None:
                        break
            time.sleep(0.1)
        time.sleep(2 * poll + 0.5)
        candidate = load_checkpoint(SHIPPED_MODEL)
        candidate.bias = candidate.bias + 1e-4
        with database.session() as session:
            row = model_registry.add_version(session, candidate, source="benchmark")
        promoted_at = time.time()
        with database.session() as session:
            model_registry.set_current(session, session.get(type(row), row.id),
                                       action="promote", actor="benchmark")
        swaps: dict[int, float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(swaps) < workers:
            for stamp, pid, version in SWAP.findall(log.read_text(errors="replace")):
                if int(version) == row.id:
                    swaps[int(pid)] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            time.sleep(0.05)
        status, body = http_get(server.port, "/readyz")
        database.dispose()
    seconds = max(swaps.values()) - promoted_at if len(swaps) == workers else float("inf")
    return {"workers": workers, "switched": len(swaps), "poll_seconds": poll,
            "seconds": round(seconds, 3), "readyz_after": body.decode(errors="replace")}
