"""/metrics counts every worker: `mnist-canvas serve` gives the workers one fresh
PROMETHEUS_MULTIPROC_DIR, so whichever worker answers a scrape, it sums them all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from model.data import Mnist
from tests.live import LiveServer
from tests.scrape import total

REPO = Path(__file__).resolve().parents[2]
N = 48  # predictions, sent from several threads so that both workers answer some


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return str(response.read().decode())


def worker_pids(text: str) -> set[str]:
    """The workers that say which model they serve (a `pid` label per live worker)."""
    return {
        sample.labels["pid"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mnist_canvas_model_info" and sample.value == 1
    }


def counts(text: str) -> dict[str, float]:
    return {
        "requests": total(text, "mnist_canvas_requests_total", route="/api/predict",
                          method="POST", status="200"),
        "predictions": total(text, "mnist_canvas_predictions_total"),
        "preprocess": total(text, "mnist_canvas_request_preprocess_seconds_count"),
        "predict": total(text, "mnist_canvas_request_predict_seconds_count"),
        "latency": total(text, "mnist_canvas_request_duration_seconds_count",
                         route="/api/predict"),
    }


def test_metrics_time_preprocessing_and_the_model_per_request(client: TestClient,
                                                              mnist: Mnist) -> None:
    before = client.get("/metrics").text
    pixels = mnist.valid_images[:3].tolist()
    assert client.post("/api/predict/batch", json={"pixels": pixels}).status_code == 200
    assert client.get("/healthz").status_code == 200
    after = client.get("/metrics").text
    gained = {key: value - counts(before)[key] for key, value in counts(after).items()}
    # One batch request: three predictions, one preprocessing and one model observation.
    assert gained["predictions"] == 3
    assert gained["preprocess"] == 1 and gained["predict"] == 1
    assert total(after, "mnist_canvas_requests_in_progress") == 1  # this scrape
    version = client.get("/readyz").json()["model_version"]
    assert total(after, "mnist_canvas_model_info", model_version=version) == 1


def test_multiprocess_mode_refuses_a_process_that_counts_in_memory(tmp_path: Path) -> None:
    """prometheus_client imported before PROMETHEUS_MULTIPROC_DIR was set counts in memory:
    the app says so at start instead of serving metrics that miss this worker."""
    code = ("import sys; from pathlib import Path; from app.metrics import Registry; "
            "Registry(multiprocess_dir=Path(sys.argv[1]))")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "set it before prometheus_client is imported" in run.stderr


@pytest.mark.slow
def test_two_workers_every_scrape_counts_every_request(
    tmp_path: Path, data_dir: Path, mnist: Mnist
) -> None:
    log = tmp_path / "server.log"
    server = LiveServer(model_path=None, data_dir=data_dir, workers=2, log_path=log,
                        MNIST_CANVAS_TRAIN_ON_START="never", MNIST_CANVAS_LOG_LEVEL="info")
    bodies = [json.dumps({"pixels": image.tolist()}).encode() for image in mnist.valid_images[:N]]

    def predict(body: bytes) -> int:
        request = urllib.request.Request(server.url + "/api/predict", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    with server:
        server.wait_ready()
        found = re.search(r"workers share their metrics in (\S+)", server.log())
        assert found, server.log()
        shared = Path(found.group(1))
        assert shared.is_dir()
        deadline = time.monotonic() + 60
        while len(pids := worker_pids(scrape(server.url))) < 2:  # the second may still load
            assert time.monotonic() < deadline, "the second worker never became ready"
            time.sleep(0.2)

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(predict, bodies)) == [200] * N
        expected = dict.fromkeys(("requests", "predictions", "preprocess", "predict",
                                  "latency"), float(N))
        for _ in range(12):  # each scrape is answered by either worker
            assert counts(scrape(server.url)) == expected

        # A worker that leaves takes its live gauges with it; its counts stay.
        gone = sorted(pids)[0]
        os.kill(int(gone), signal.SIGTERM)
        deadline = time.monotonic() + 60
        while gone in (now := worker_pids(scrape(server.url))):
            assert time.monotonic() < deadline, f"worker {gone} still counted after it left"
            time.sleep(0.2)
        assert counts(scrape(server.url)) == expected
        assert len(now) <= 2
    assert not shared.exists(), "the metrics directory outlived the server"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_one_worker_server_removes_its_metrics_directory_when_stopped(
    tmp_path: Path, data_dir: Path, stop: signal.Signals
) -> None:
    """uvicorn raises the stop signal again after its graceful shutdown; the directory must
    be gone all the same, and the process still ends by that signal."""
    server = LiveServer(model_path=None, data_dir=data_dir, log_path=tmp_path / "server.log",
                        MNIST_CANVAS_TRAIN_ON_START="never", MNIST_CANVAS_LOG_LEVEL="info")
    with server:
        server.wait_ready()
        found = re.search(r"workers share their metrics in (\S+)", server.log())
        assert found, server.log()
        shared = Path(found.group(1))
        assert any(shared.glob("*.db"))
        assert server.process is not None
        server.process.send_signal(stop)
        returncode = server.process.wait(timeout=30)
    assert not shared.exists(), "the metrics directory outlived the server"
    assert returncode in (-stop, 128 + stop), returncode
