"""`mnist-canvas finetune` and `models` against a real SQLite database and the real MNIST:
promotes when the stored corrections help, refuses (exit 1, the gate's reason) when they would
cost MNIST validation accuracy; --dry-run stores nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.corrections import NewCorrection, store
from app.db import Database, sqlite_url
from app.db import registry as model_registry
from model.data import Mnist
from model.inference import Predictor
from tests.conftest import REPO, SHIPPED_MODEL

pytestmark = pytest.mark.slow


def run_cli(*args: str, url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "MNIST_CANVAS_DATABASE_URL": url,
           "MNIST_CANVAS_DATA_DIR": str(data_dir), "MNIST_CANVAS_DOWNLOAD": "false",
           "MNIST_CANVAS_MODEL_PATH": str(SHIPPED_MODEL), "MNIST_CANVAS_TORCH_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def fill(database: Database, images: np.ndarray, labels: np.ndarray, writers: int) -> None:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        store(database, NewCorrection(image=image, label=int(label),
                                      client_id=f"writer-{i % writers}"))


def corner_digits(mnist: Mnist, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Training digits halved into the top-left corner: a hand the model reads poorly."""
    images = mnist.train_images[:n]
    out = np.zeros_like(images)
    out[:, :14, :14] = images.reshape(n, 14, 2, 14, 2).max(axis=(2, 4))
    return out, mnist.train_labels[:n]


def test_finetune_promotes_helpful_corrections(tmp_path: Path, data_dir: Path,
                                               mnist: Mnist) -> None:
    database = Database(sqlite_url(tmp_path / "db.sqlite3"))
    assert database.prepare(force=True)
    fill(database, *corner_digits(mnist, 300), writers=20)
    done = run_cli("finetune", url=database.url, data_dir=data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate: PROMOTE" in done.stdout and "promoted: version 2" in done.stdout
    with database.session() as session:
        current = model_registry.current(session)
        assert current is not None and current.id == 2 and current.source == "finetune"
        assert current.gate_report is not None and current.gate_report["promoted"] is True
        assert current.gate_report["split"] == "client"
        assert current.corrections_seen == 300
        # The promoted weights carry a verdict calibration fitted for them, not the parent's
        # (which the server would ignore as stale).
        served = Predictor(model_registry.checkpoint_of(current), device="cpu")
        assert served.verdicts is not None
        assert served.checkpoint.meta["verdict"]["model_version"] == served.version
    assert f"verdict recalibrated for {served.version}" in done.stdout
    listing = run_cli("models", "list", url=database.url, data_dir=data_dir)
    assert listing.returncode == 0 and "*   2" in listing.stdout
    back = run_cli("models", "rollback", url=database.url, data_dir=data_dir)
    assert back.returncode == 0 and "version 1" in back.stdout
    database.dispose()


def test_finetune_refuses_wrong_labels_and_dry_run_stores_nothing(
    tmp_path: Path, data_dir: Path, mnist: Mnist
) -> None:
    database = Database(sqlite_url(tmp_path / "db.sqlite3"))
    assert database.prepare(force=True)
    empty = run_cli("finetune", url=database.url, data_dir=data_dir)
    assert empty.returncode == 3 and "nothing to learn from" in empty.stderr
    images = mnist.train_images[:400]
    fill(database, images, (mnist.train_labels[:400] + 3) % 10, writers=20)
    done = run_cli("finetune", "--dry-run", url=database.url, data_dir=data_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gate: REFUSE: MNIST validation accuracy would fall" in done.stdout
    assert "dry run: nothing stored" in done.stdout
    with database.session() as session:
        assert model_registry.count_versions(session) == 1  # only the shipped model
    database.dispose()
