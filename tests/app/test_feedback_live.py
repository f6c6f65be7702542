"""Corrections against a live server (real processes, real HTTP) on SQLite and PostgreSQL:
concurrent clients lose and duplicate nothing, and a killed server loses nothing it answered."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.corrections import CorrectionFilter, image_from_row, iterate
from app.db import Database
from model.data import Mnist
from tests.conftest import SHIPPED_MODEL
from tests.feedback_helpers import TOKEN, distinct_digits, pixels_body, wait_database
from tests.live import LiveServer, get_json

pytestmark = pytest.mark.slow

CLIENTS = 8
PER_CLIENT = 25  # 200 corrections in all
RESENT = 3  # each client also sends this many of its neighbour's corrections again


@contextmanager
def live(database_url: str, data_dir: Path, tmp_path: Path, workers: int) -> Iterator[LiveServer]:
    server = LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir, workers=workers,
                        log_path=tmp_path / "server.log",
                        MNIST_CANVAS_DATABASE_URL=database_url,
                        MNIST_CANVAS_ADMIN_TOKEN=TOKEN, MNIST_CANVAS_FEEDBACK_PER_MINUTE="0",
                        MNIST_CANVAS_TRAIN_ON_START="never", MNIST_CANVAS_LOG_LEVEL="warning")
    with server:
        server.wait_ready()
        for _ in range(600):  # the database is prepared in the background
            if get_json(server.url + "/api/feedback/stats")[0] == 200:
                break
            threading.Event().wait(0.1)
        else:
            raise TimeoutError(f"feedback never became ready: {server.log()}")
        yield server


def rows_in(database_url: str) -> list[Any]:
    database = Database(database_url, migrate=False)
    try:
        wait_database(database)
        return list(iterate(database, CorrectionFilter()))
    finally:
        database.dispose()


def test_concurrent_corrections_lose_and_duplicate_nothing(
    database_url: str, data_dir: Path, mnist: Mnist, tmp_path: Path
) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, CLIENTS * PER_CLIENT)
    jobs: list[list[int]] = [list(range(c * PER_CLIENT, (c + 1) * PER_CLIENT))
                             for c in range(CLIENTS)]
    for c in range(CLIENTS):  # the neighbour's first few, sent again at the same time
        jobs[c] += jobs[(c + 1) % CLIENTS][:RESENT]

    def run_client(c: int, url: str) -> list[tuple[int, int, int]]:
        out = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in jobs[c]:
                r = http.post("/api/feedback",
                              json=pixels_body(images[i], labels[i], client_id=f"client-{c}"))
                out.append((i, r.status_code, r.json()["id"]))
        return out

    with live(database_url, data_dir, tmp_path, workers=2) as server, \
            ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for result in pool.map(run_client, range(CLIENTS),
                                            [server.url] * CLIENTS) for a in result]
    assert len(answers) == CLIENTS * (PER_CLIENT + RESENT)
    assert {status for _, status, _ in answers} <= {200, 201}
    ids_of: dict[int, set[int]] = {}
    created_of: dict[int, int] = {}
    for i, status, correction_id in answers:
        ids_of.setdefault(i, set()).add(correction_id)
        created_of[i] = created_of.get(i, 0) + (status == 201)
    assert all(len(ids) == 1 for ids in ids_of.values())  # a resend gets the same id
    assert set(created_of.values()) == {1}  # exactly one 201 per distinct correction
    rows = rows_in(database_url)
    assert len(rows) == CLIENTS * PER_CLIENT
    by_id = {row.id: row for row in rows}
    for i, ids in ids_of.items():
        row = by_id[next(iter(ids))]
        assert row.label == labels[i] and np.array_equal(image_from_row(row), images[i])


def test_a_killed_server_loses_nothing_it_answered_201(
    database_url: str, data_dir: Path, mnist: Mnist, tmp_path: Path
) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 2000, start=2000)
    answered: dict[int, int] = {}  # image index -> id answered 201
    lock = threading.Lock()
    stop = threading.Event()
    next_index = iter(range(len(images)))

    def writer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                try:
                    r = http.post("/api/feedback", json=pixels_body(images[i], labels[i]))
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 201:
                    with lock:
                        answered[i] = r.json()["id"]

    with live(database_url, data_dir, tmp_path, workers=1) as server:
        threads = [threading.Thread(target=writer, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        while len(answered) < 60 and all(t.is_alive() for t in threads):
            threading.Event().wait(0.02)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)  # mid-write: requests are in flight
        server.process.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert len(answered) >= 60
    rows = {row.id: row for row in rows_in(database_url)}
    for i, correction_id in answered.items():
        row = rows.get(correction_id)
        assert row is not None, f"correction {correction_id} was answered 201 but is gone"
        assert row.label == labels[i] and np.array_equal(image_from_row(row), images[i])
    assert len(rows) >= len(answered)  # any extra row is one whose answer the kill cut off
