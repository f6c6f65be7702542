"""Background fine-tune in a live two-worker server: after N new corrections exactly one worker
runs `mnist-canvas finetune` (a separate process), the server keeps answering, and the candidate
is stored with its gate report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from app.corrections import NewCorrection, store
from app.db import Database, FinetuneRun, sqlite_url
from app.db import registry as model_registry
from model.data import Mnist
from tests.conftest import SHIPPED_MODEL
from tests.live import LiveServer, get_json

pytestmark = pytest.mark.slow


def test_n_new_corrections_start_one_background_finetune(tmp_path: Path, data_dir: Path,
                                                         mnist: Mnist) -> None:
    database = Database(sqlite_url(tmp_path / "db.sqlite3"))
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, workers=2,
                    log_path=tmp_path / "server.log", MNIST_CANVAS_DATABASE_URL=database.url,
                    MNIST_CANVAS_MODEL_POLL_SECONDS="0.2",
                    MNIST_CANVAS_FINETUNE_AFTER_CORRECTIONS="40") as server:
        server.wait_ready()
        images = np.zeros((60, 28, 28), np.uint8)  # digits halved into the top-left corner
        images[:, :14, :14] = mnist.train_images[:60].reshape(60, 14, 2, 14, 2).max(axis=(2, 4))
        for i in range(39):
            store(database, NewCorrection(image=images[i], label=int(mnist.train_labels[i]),
                                          client_id=f"writer-{i % 10}"))
        time.sleep(1.5)
        with database.session() as session:  # one short of N: nothing starts
            assert session.scalars(select(FinetuneRun)).all() == []
        for i in range(39, 60):
            store(database, NewCorrection(image=images[i], label=int(mnist.train_labels[i]),
                                          client_id=f"writer-{i % 10}"))
        deadline = time.monotonic() + 300
        finished: list[FinetuneRun] = []
        while time.monotonic() < deadline and not finished:
            assert get_json(server.url + "/readyz")[0] == 200  # answering all along
            with database.session() as session:
                finished = list(session.scalars(select(FinetuneRun).where(
                    FinetuneRun.finished_at.is_not(None))))
            time.sleep(0.5)
        with database.session() as session:
            runs = list(session.scalars(select(FinetuneRun)))
            versions = model_registry.history(session)
    database.dispose()
    assert len(runs) == 1, server.log()[-3000:]
    # The run starts once the 40th is stored, while the last ones may still be arriving: it
    # learns from every correction up to the newest it saw.
    newest = runs[0].newest_correction
    assert runs[0].exit_code in (0, 1) and 40 <= newest <= 60
    assert [v["source"] for v in versions] == ["finetune", "shipped"]
    assert versions[0]["gate_report"]["corrections"] == newest
