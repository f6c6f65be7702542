"""Shared by the corrections tests: apps and servers with a database, and digits to send."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.db import Database
from app.main import create_app
from tests.app.conftest import make_settings
from tests.conftest import SHIPPED_MODEL

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_database(database: Database, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not database.prepare(force=True):
        if time.monotonic() > deadline:
            raise TimeoutError(f"database not ready: {database.error}")
        time.sleep(0.05)


@contextmanager
def feedback_client(database_url: str, data_dir: Path, *, ready: bool = True,
                    **overrides: object) -> Iterator[TestClient]:
    values: dict[str, object] = {"database_url": database_url, "admin_token": TOKEN,
                                 "feedback_per_minute": 0}
    values.update(overrides)
    app = create_app(make_settings(SHIPPED_MODEL, data_dir, **values))
    with TestClient(app) as client:
        if ready:
            wait_database(app.state.database)
        yield client


def distinct_digits(images: np.ndarray, labels: np.ndarray, n: int,
                    start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images that differ from one another, from `start` on (MNIST repeats a few)."""
    seen: set[bytes] = set()
    keep: list[int] = []
    for i in range(start, len(images)):
        key = images[i].tobytes()
        if key not in seen and images[i].any():
            seen.add(key)
            keep.append(i)
            if len(keep) == n:
                break
    return images[keep], labels[keep]


def pixels_body(image: np.ndarray, label: int, **extra: object) -> dict[str, object]:
    return {"pixels": image.astype(int).ravel().tolist(), "label": int(label), **extra}
