"""Hot reload in live servers: every worker switches after one promotion in the registry, with
requests in flight; each answer is wholly from the version it names; a broken version is never
served. Real processes, real HTTP, a real SQLite database shared by every worker and server."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import update

from app.db import Database, ModelVersion, sqlite_url
from app.db import registry as model_registry
from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import Predictor
from tests.conftest import SHIPPED_MODEL
from tests.live import LiveServer, get_json

pytestmark = pytest.mark.slow
POLL = "0.2"


def variant(step: float) -> Checkpoint:
    ckpt = load_checkpoint(SHIPPED_MODEL)
    ckpt.bias = ckpt.bias + torch.linspace(-step, step, 10)
    return ckpt


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def registered(database: Database) -> bool:
    if not database.prepare():
        return False
    with database.session() as session:
        return model_registry.current_id(session) is not None


def promote(database: Database, ckpt: Checkpoint) -> int:
    with database.session() as session:
        row = model_registry.add_version(session, ckpt, source="test")
        model_registry.set_current(session, row, action="promote", actor="test")
        return row.id


def post_pixels(url: str, pixels: list[int]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/api/predict", data=json.dumps(
        {"pixels": pixels}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # a new connection each time
        return response.status, json.loads(response.read())


@pytest.fixture
def database(tmp_path: Path) -> Any:
    db = Database(sqlite_url(tmp_path / "registry.sqlite3"))
    yield db
    db.dispose()


def test_every_worker_switches_with_requests_in_flight(tmp_path: Path, data_dir: Path,
                                                        mnist: Any, database: Database) -> None:
    digit = mnist.valid_images[0]
    pixels = [int(v) for v in digit.reshape(-1)]
    new = variant(2.0)
    expected = {
        ckpt.model_version: Predictor(ckpt, device="cpu").probabilities(digit[None])[0]
        for ckpt in (load_checkpoint(SHIPPED_MODEL), new)
    }
    answers: list[tuple[float, int, str, list[float]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(url: str) -> None:
        while not stop.is_set():
            try:
                sent = time.monotonic()
                status, body = post_pixels(url, pixels)
                answers.append((sent, status, body["model_version"],
                                body["probabilities"]))
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(repr(exc))

    log = tmp_path / "server.log"
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, workers=2, log_path=log,
                    MNIST_CANVAS_DATABASE_URL=database.url,
                    MNIST_CANVAS_MODEL_POLL_SECONDS=POLL) as server:
        server.wait_ready()
        wait_for(lambda: registered(database), 30, "the shipped model to be registered")
        threads = [threading.Thread(target=client, args=(server.url,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        version_id = promote(database, new)
        wait_for(lambda: log.read_text().count(
            f"now serves registry version {version_id}") >= 2, 30, "both workers to swap")
        swapped_at = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        history = get_json(server.url + "/api/models")[1]
    assert errors == []
    assert {status for _, status, _, _ in answers} == {200}
    versions = {version for _, _, version, _ in answers}
    assert versions == set(expected), versions
    for _, _, version, probabilities in answers:  # wholly from the version it names
        np.testing.assert_allclose(probabilities, expected[version], atol=1e-6)
    late = [version for sent, _, version, _ in answers if sent > swapped_at]
    assert late and set(late) == {new.model_version}
    assert history["current"] == new.model_version == history["served"]
    assert [v["source"] for v in history["versions"]] == ["test", "shipped"]


def test_two_servers_on_one_database_both_switch(tmp_path: Path, data_dir: Path,
                                                 database_url: str) -> None:
    """On SQLite and on a real PostgreSQL server, as compose and Kubernetes run it."""
    database = Database(database_url)
    env = {"MNIST_CANVAS_DATABASE_URL": database_url, "MNIST_CANVAS_MODEL_POLL_SECONDS": POLL}
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, **env) as one, \
            LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, **env) as two:
        one.wait_ready()
        two.wait_ready()
        wait_for(lambda: registered(database), 30, "the shipped model to be registered")
        time.sleep(0.5)
        new = variant(1.0)
        promote(database, new)
        for server in (one, two):
            wait_for(lambda s=server: get_json(s.url + "/readyz")[1].get("model_version")
                     == new.model_version, 20, f"{server.url} to serve the promoted version")
            assert get_json(server.url + "/api/model")[1]["model_version"] == new.model_version
    database.dispose()


def test_a_corrupt_registry_entry_is_never_served(tmp_path: Path, data_dir: Path,
                                                  database: Database) -> None:
    shipped = load_checkpoint(SHIPPED_MODEL)
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, workers=2,
                    MNIST_CANVAS_DATABASE_URL=database.url,
                    MNIST_CANVAS_MODEL_POLL_SECONDS=POLL) as server:
        server.wait_ready()
        wait_for(lambda: registered(database), 30, "the shipped model to be registered")
        bad = variant(1.0)
        with database.session() as session:
            row = model_registry.add_version(session, bad, source="test")
            # Weights altered after storing, with the checksum updated to match: only the
            # checkpoint's own check (the weights' hash) can catch it.
            raw = bytearray(row.weights)
            size = int.from_bytes(raw[:8], "little")
            start = 8 + size + json.loads(raw[8 : 8 + size])["weight"]["data_offsets"][0]
            raw[start + 401] ^= 0x40  # one float of the weights

            session.execute(update(ModelVersion).where(ModelVersion.id == row.id).values(
                weights=bytes(raw), weights_sha256=hashlib.sha256(bytes(raw)).hexdigest()))
            session.flush()
            session.expire_all()
            model_registry.set_current(session, session.get(ModelVersion, row.id),
                                       action="promote", actor="test")

        def refused() -> bool:
            text = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
            # Summed over the workers (prometheus_client's multiprocess mode): each refuses.
            found = re.search(r"^mnist_canvas_model_reload_failures_total (\S+)$", text, re.M)
            return found is not None and float(found.group(1)) >= 1

        wait_for(refused, 20, "a worker to count the refusal")
        time.sleep(1.0)
        for _ in range(10):  # new connections reach both workers
            assert get_json(server.url + "/readyz")[1]["model_version"] == shipped.model_version
