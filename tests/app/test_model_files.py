"""The server's side of the model file: the training lock's timeout, and temporaries that a
killed write left beside the model removed at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.service import ModelService
from model.atomic import model_lock
from tests.app.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"


def test_training_waits_for_the_lock_only_as_long_as_the_setting_says(
    tmp_path: Path, data_dir: Path
) -> None:
    model_path = tmp_path / "model.safetensors"
    settings = make_settings(model_path, data_dir, train_on_start="always",
                             train_lock_timeout_s=0.3)
    service = ModelService(settings)
    with model_lock(model_path, 0):
        service.start()
        assert not service.wait(30)
    assert service.status == "failed"
    assert service.error is not None and "MNIST_CANVAS_TRAIN_LOCK_TIMEOUT_S" in service.error


@pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="no shipped model")
def test_start_removes_what_a_killed_write_left_beside_the_model(tmp_path: Path,
                                                                 data_dir: Path) -> None:
    model_path = tmp_path / "model.safetensors"
    shutil.copy(SHIPPED_MODEL, model_path)
    stale = tmp_path / ".model.safetensors.ab12cd.tmp"
    stale.write_bytes(b"half a model")
    other = tmp_path / "notes.txt"
    other.write_text("kept")
    service = ModelService(make_settings(model_path, data_dir))
    service.start()
    assert service.ready
    assert not stale.exists() and other.exists()
