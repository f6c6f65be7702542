"""Startup: load or train in the lifespan, /readyz 503 until ready, one trainer per model path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.service import StartupError
from model.checkpoint import load_checkpoint
from tests.app.conftest import make_settings
from tests.live import LiveServer, get_json

TRAINING_LINE = "no usable model at"


@pytest.mark.slow
def test_readyz_is_503_while_training_and_200_after(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "models" / "m.safetensors"
    app = create_app(make_settings(path, data_dir, train_on_start="missing"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        starting = client.get("/readyz")
        assert starting.status_code == 503 and starting.json()["status"] == "training"
        predict = client.post("/api/predict", json={"pixels": [0] * 784})
        assert predict.status_code == 503 and "training" in predict.json()["detail"]
        assert client.get("/v2/health/ready").status_code == 503
        assert app.state.service.wait(timeout=120)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["model_version"] == load_checkpoint(path).model_version
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == [path.name]


def test_missing_model_with_training_off_stops_startup(tmp_path: Path, data_dir: Path) -> None:
    app = create_app(make_settings(tmp_path / "none.safetensors", data_dir))
    with pytest.raises(StartupError, match="TRAIN_ON_START=never"), TestClient(app):
        pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_stops_startup_with_a_clear_message(tmp_path: Path,
                                                               data_dir: Path) -> None:
    from tests.conftest import SHIPPED_MODEL

    app = create_app(make_settings(SHIPPED_MODEL, data_dir, device="cuda"))
    with pytest.raises(StartupError, match="CUDA is not available.*MNIST_CANVAS_DEVICE"), \
            TestClient(app):
        pass


def test_corrupt_model_stops_startup_with_a_clear_message(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    app = create_app(make_settings(path, data_dir, train_on_start="missing"))
    with pytest.raises(StartupError, match="unusable") as info, TestClient(app):
        pass
    assert str(path) in str(info.value)


@pytest.mark.slow
def test_corrupt_model_is_retrained_when_training_is_always(tmp_path: Path,
                                                            data_dir: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not a model")
    app = create_app(make_settings(path, data_dir, train_on_start="always"))
    with TestClient(app) as client:
        assert app.state.service.wait(timeout=120)
        assert client.get("/readyz").status_code == 200
    load_checkpoint(path)


@pytest.mark.slow
def test_two_processes_on_one_model_path_train_once_and_serve_the_same_model(
    tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "shared" / "m.safetensors"
    servers = [
        LiveServer(model_path=path, data_dir=data_dir, log_path=tmp_path / f"s{i}.log",
                   MNIST_CANVAS_TRAIN_ON_START="missing")
        for i in range(2)
    ]
    try:
        for server in servers:
            server.start()
        versions = {server.wait_ready(timeout=180)["model_version"] for server in servers}
    finally:
        for server in servers:
            server.stop()
    assert versions == {load_checkpoint(path).model_version}
    logs = [server.log() for server in servers]
    assert sum(TRAINING_LINE in log for log in logs) == 1, logs


@pytest.mark.slow
def test_serve_with_two_workers_trains_once_and_both_serve(tmp_path: Path,
                                                           data_dir: Path) -> None:
    path = tmp_path / "m.safetensors"
    log = tmp_path / "serve.log"
    with LiveServer(model_path=path, data_dir=data_dir, workers=2, log_path=log,
                    MNIST_CANVAS_TRAIN_ON_START="missing") as server:
        first = server.wait_ready(timeout=180)
        deadline = time.monotonic() + 60
        # Both workers log the model they serve once they have it.
        while log.read_text().count("serving model") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        versions = {get_json(server.url + "/readyz")[1]["model_version"] for _ in range(20)}
        text = log.read_text()
    assert versions == {first["model_version"]} == {load_checkpoint(path).model_version}
    assert text.count(TRAINING_LINE) == 1, text
    assert text.count(f"serving model {first['model_version']}") == 2, text
