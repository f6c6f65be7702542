"""`mnist-canvas db upgrade|current` and `mnist-canvas feedback export`, on both databases."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.corrections import NewCorrection, store
from app.db import Database, head_revision
from model.data import Mnist
from model.idx import read_idx_tar
from tests.feedback_helpers import distinct_digits, wait_database


def test_db_upgrade_and_current(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--database-url", database_url]) == 3  # empty: behind
    assert "(empty)" in capsys.readouterr().out
    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--database-url", database_url]) == 0
    assert "up to date" in capsys.readouterr().out


def test_db_upgrade_names_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", "mysql://x@y/z"]) == 2
    assert "MNIST_CANVAS_DATABASE_URL" in capsys.readouterr().err


def test_feedback_export_round_trips(database_url: str, mnist: Mnist, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 30, start=700)
    database = Database(database_url)
    try:
        wait_database(database)
        for image, label in zip(images, labels, strict=True):
            store(database, NewCorrection(image=image, label=int(label), predicted=0,
                                          model_version="v1", client_id="cli"))
    finally:
        database.dispose()
    out = {fmt: tmp_path / f"export.{fmt}" for fmt in ("csv", "ndjson", "idx")}
    for fmt, path in out.items():
        assert main(["feedback", "export", "--format", fmt, "--out", str(path),
                     "--database-url", database_url]) == 0
        assert f"wrote 30 corrections to {path}" in capsys.readouterr().out

    table = np.array(list(csv.reader(io.StringIO(out["csv"].read_text())))[1:], dtype=np.int64)
    assert np.array_equal(table[:, 0], labels)
    assert np.array_equal(table[:, 1:].reshape(-1, 28, 28), images)
    objects = [json.loads(line) for line in out["ndjson"].read_text().splitlines()]
    assert [o["label"] for o in objects] == labels.tolist()
    assert all(o["model_version"] == "v1" and o["client_id"] == "cli" for o in objects)
    assert np.array_equal(np.array([o["pixels"] for o in objects]).reshape(-1, 28, 28), images)
    idx_images, idx_labels = read_idx_tar(out["idx"])
    assert np.array_equal(idx_images, images) and np.array_equal(idx_labels, labels)

    only = tmp_path / "only.csv"
    label = int(labels[0])
    assert main(["feedback", "export", "--format", "csv", "--out", str(only), "--label",
                 str(label), "--database-url", database_url]) == 0
    rows = list(csv.reader(io.StringIO(only.read_text())))[1:]
    assert len(rows) == int((labels == label).sum()) and {r[0] for r in rows} == {str(label)}


def test_feedback_export_from_an_unmigrated_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    assert main(["feedback", "export", "--format", "csv", "--out", str(tmp_path / "x.csv"),
                 "--database-url", url]) == 1
    assert "mnist-canvas db upgrade" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_serve_refuses_an_unsupported_database_url(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MNIST_CANVAS_DATABASE_URL", "mysql://u@db/x")
    assert main(["serve", "--port", "0"]) == 2
    assert "MNIST_CANVAS_DATABASE_URL" in capsys.readouterr().err
