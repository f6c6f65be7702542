"""Canvas fidelity in CI: digits drawn like on the page must read about as well as MNIST.

A 1,000-digit sample of benchmarks/canvas.py (python -m benchmarks.canvas) on the validation
digits (never the test digits), every condition, through the real app (TestClient with its
lifespan) and the shipped model: drawings go as data URLs to POST /api/predict/batch, a few
also to POST /api/predict (the page's route), which must agree. A preprocessing change that
makes any condition lose more than TOLERANCE points against the same digits' 28x28 accuracy
fails here: with erosion turned off (field.ERODE_ABOVE = inf) the thick marker does (-5.30).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from benchmarks.canvas import CanvasReport, evaluate, split_digits
from benchmarks.drawing import CONDITIONS
from model.data import Mnist

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "mnist-logreg.safetensors"

SAMPLE = 1000
#: Points; the benchmark's goal is 2 on all 10,000 digits. On this sample the conditions read
#: from 1.80 points worse (the thick marker) to 1.20 better; without erosion the marker loses
#: 5.30 (`python -m benchmarks.preprocess --limit 1000 --spread --sweep ERODE_ABOVE=inf`).
#: The tolerance sits 1.7 points beyond the first and 1.8 short of the second: with 300 digits
#: the spread was 3.0 to 5.0, too close together for any tolerance to separate them.
TOLERANCE = 3.5
SINGLE_CHECK = 10  # per condition, also sent one by one to /api/predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_path=SHIPPED_MODEL, data_dir=data_dir, download=False, train_on_start="never",
        torch_threads=1, device="cpu", log_level="warning",
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def report(client: TestClient, mnist: Mnist) -> CanvasReport:
    # Every 10,000 / SAMPLE-th validation digit: all ten classes, the same sample every run.
    images, labels = split_digits(mnist, "valid", SAMPLE, spread=True)
    return evaluate(client, images, labels, CONDITIONS, batch=100, jobs=1,
                    single_check=SINGLE_CHECK, tolerance=TOLERANCE)


def test_the_shipped_model_reads_the_sample_as_28x28_pixels(report: CanvasReport) -> None:
    assert report.reference > 0.85, report.table()


@pytest.mark.parametrize("name", [c.name for c in CONDITIONS])
def test_each_condition_is_within_tolerance_of_28x28(report: CanvasReport, name: str) -> None:
    result = next(r for r in report.conditions if r.name == name)
    assert result.errors == 0, f"the API refused {result.errors} drawings\n{report.table()}"
    assert result.delta_points >= -TOLERANCE, (
        f"{name}: {100 * result.accuracy:.2f}% vs {100 * result.reference:.2f}% on the same "
        f"digits as 28x28 pixels ({result.delta_points:+.2f} points)\n{report.table()}"
    )


def test_single_route_answers_like_the_batch_route(report: CanvasReport) -> None:
    assert report.single_checked == SINGLE_CHECK * len(CONDITIONS)
    assert report.single_consistent, report.table()
