"""The fast path of a JSON batch of raw pixels: the same answers as the exact path, or no path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.batchjson import PixelBatch, pixel_batch
from app.main import create_app
from model.data import Mnist
from tests.app.conftest import make_settings
from tests.conftest import SHIPPED_MODEL

BATCH = "/api/predict/batch"
ZEROS = [0] * 784


@pytest.fixture(scope="module")
def shipped(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(SHIPPED_MODEL, data_dir))) as client:
        yield client


def test_fast_path_answers_equal_the_exact_paths(shipped: TestClient, mnist: Mnist) -> None:
    images = mnist.test_images[:40]
    flat = json.dumps({"pixels": images.reshape(40, 784).tolist()}).encode()
    square = json.dumps({"pixels": images.tolist()}).encode()  # 28 rows: the exact path
    assert pixel_batch(flat, 1000) is not None and pixel_batch(square, 1000) is None
    fast = shipped.post(BATCH, content=flat, headers={"Content-Type": "application/json"})
    exact = shipped.post(BATCH, content=square, headers={"Content-Type": "application/json"})
    assert fast.status_code == exact.status_code == 200
    fast_answers, exact_answers = fast.json()["predictions"], exact.json()["predictions"]
    for key in ("digit", "preview"):
        assert [p[key] for p in fast_answers] == [p[key] for p in exact_answers]
    # The same float32 inputs; the matmul's last bits may differ with the arrays' alignment.
    np.testing.assert_allclose([p["probabilities"] for p in fast_answers],
                               [p["probabilities"] for p in exact_answers], atol=2.01e-6)
    assert [p["digit"] for p in fast.json()["predictions"]][:5] == [7, 2, 1, 0, 4]


def test_previews_can_be_left_out_on_both_paths(shipped: TestClient, mnist: Mnist) -> None:
    images = mnist.test_images[:3]
    for pixels in (images.reshape(3, 784).tolist(), images.tolist()):
        answer = shipped.post(BATCH, json={"pixels": pixels, "previews": False}).json()
        assert all("preview" not in p and "digit" in p for p in answer["predictions"])
        with_previews = shipped.post(BATCH, json={"pixels": pixels}).json()
        assert all(len(p["preview"]) == 28 for p in with_previews["predictions"])
    bad = shipped.post(BATCH, json={"pixels": [ZEROS], "previews": "no"})
    assert bad.status_code == 422 and "'previews' must be true or false" in bad.json()["detail"]


def test_verdicts_can_be_left_out_on_every_path(shipped: TestClient, mnist: Mnist) -> None:
    images = mnist.test_images[:3]
    big = mnist.test_images[:400].reshape(400, 784).tolist()  # past LIGHT_COST: the slot path
    for pixels in (images.reshape(3, 784).tolist(), images.tolist(), big):
        lean = shipped.post(BATCH, json={"pixels": pixels, "verdicts": False}).json()
        full = shipped.post(BATCH, json={"pixels": pixels}).json()
        assert all("verdict" not in p and "verdict_detail" not in p and "preview" in p
                   for p in lean["predictions"])
        assert all(p["verdict"] in ("digit", "unsure", "not_a_digit") and "scores" in
                   p["verdict_detail"] for p in full["predictions"])
        assert [p["digit"] for p in lean["predictions"]] == \
            [p["digit"] for p in full["predictions"]]
    bad = shipped.post(BATCH, json={"pixels": [ZEROS], "verdicts": 0})
    assert bad.status_code == 422 and "'verdicts' must be true or false" in bad.json()["detail"]


def test_fast_path_reads_numbers_exactly() -> None:
    found = pixel_batch(json.dumps({"pixels": [[255] + [0.5] * 783], "preprocess": False,
                                    "previews": False, "verdicts": False}).encode(), 10)
    assert found is not None
    images = found.pixels
    assert images.shape == (1, 28, 28) and images.dtype == np.float32
    assert images[0, 0, 0] == 255 and images[0, 0, 1] == 0.5
    assert found.previews is False and found.verdicts is False
    plain = pixel_batch(json.dumps({"pixels": [ZEROS]}).encode(), 10)
    assert plain is not None and plain.previews and plain.verdicts


def test_read_batch_sends_whole_pixels_back_as_bytes(mnist: Mnist) -> None:
    from app.batchwork import read_batch_to_send

    settings = make_settings(SHIPPED_MODEL, Path("."))
    whole = read_batch_to_send(json.dumps({"pixels": [ZEROS, [255] * 784]}).encode(), settings)
    part = read_batch_to_send(json.dumps({"pixels": [ZEROS, [0.5] * 784]}).encode(), settings)
    assert isinstance(whole, PixelBatch) and isinstance(part, PixelBatch)
    assert whole.pixels.dtype == np.uint8 and whole.pixels[1].min() == 255
    assert part.pixels.dtype == np.float32 and part.pixels[1, 0, 0] == 0.5


def test_a_heavy_slot_reads_in_the_server_only_when_alone() -> None:
    import asyncio

    from app.limits import Work, WorkLimiter

    async def scenario() -> list[bool]:
        limiter = WorkLimiter(slots=2, max_queue=4, wait_s=5)
        work = Work(deadline=time.monotonic() + 60, timeout_s=60)
        seen = []
        async with limiter.slot(work):
            seen.append(limiter.alone())
            async with limiter.slot(work):
                seen.append(limiter.alone())
            seen.append(limiter.alone())
        return seen

    assert asyncio.run(scenario()) == [True, False, True]


@pytest.mark.parametrize("body", [
    {"pixels": [[True] + ZEROS[1:]]},                  # a boolean is not a pixel
    {"pixels": [["1"] + ZEROS[1:]]},                   # nor is a string
    {"pixels": [[None] + ZEROS[1:]]},                  # nor null
    {"pixels": [[[], [1, 2]] + ZEROS[2:]]},            # 784 elements, 784 numbers, nested
    {"pixels": [ZEROS[:783], ZEROS + [0]]},            # 1,568 numbers, ragged
    {"pixels": [ZEROS], "preprocess": True},           # preprocessing is per image
    {"pixels": [ZEROS], "note": "x"},                  # an unknown key, and a string
    {"pixels": [ZEROS], "verdicts": 1},                # a flag that is not true or false
    {"pixels": [ZEROS], "previews": {"a": 1}},         # an object inside
    {"pixels": [[300] + ZEROS[1:]]},                   # out of range: the exact path says where
    {"pixels": [[-1] + ZEROS[1:]]},
    {"pixels": []},
    {"pixels": [ZEROS] * 3},                           # more than the batch limit below
    {"images": ["abc"]},
    [ZEROS],
])
def test_anything_the_fast_path_cannot_prove_goes_the_exact_way(body: object) -> None:
    assert pixel_batch(json.dumps(body).encode(), 2) is None


@pytest.mark.parametrize("raw", [
    b'{"pixels": [[1e400' + b", 0" * 783 + b"]]}",   # beyond float64
    b'{"pixels": [[NaN' + b", 0" * 783 + b"]]}",     # not JSON (the standard library reads it)
    b'{"pixels": [[' + b"9" * 30 + b", 0" * 783 + b"]]}",   # beyond 64 bits
    b'{"pixels": [' + b"[0" + b", 0" * 783 + b"]], " + b'"pixels": [[1]]}',  # a repeated key
    b"\xff\xfe",
])
def test_bodies_simdjson_refuses_go_the_exact_way(raw: bytes) -> None:
    assert pixel_batch(raw, 2) is None
