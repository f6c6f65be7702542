"""Verdicts through the real app (TestClient with its lifespan) on the shipped, calibrated
model: a dash, two digits side by side and a letter are not digits; validation digits drawn
on a canvas are; batch and v2 answers carry the verdict too."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.main import create_app
from model.data import Mnist
from tests.app.conftest import canvas_png, data_url, make_settings
from tests.conftest import SHIPPED_MODEL


@pytest.fixture(scope="module")
def shipped(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(SHIPPED_MODEL, data_dir))) as c:
        yield c


def strokes_png(lines: list[list[tuple[float, float]]], width: int = 18) -> bytes:
    """Black strokes on a transparent 280x280 canvas, like the page draws them."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for line in lines:
        draw.line([(x * 280, y * 280) for x, y in line], fill=(0, 0, 0, 255), width=width,
                  joint="curve")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


DASH = [[(0.15, 0.5), (0.85, 0.52)]]
STAR = [[(0.5, 0.1), (0.74, 0.85), (0.12, 0.38), (0.88, 0.38), (0.26, 0.85), (0.5, 0.1)]]


def test_a_dash_is_not_a_digit_and_says_why(shipped: TestClient) -> None:
    body = shipped.post("/api/predict", json={"image": data_url(strokes_png(DASH))}).json()
    assert body["verdict"] == "not_a_digit"
    detail = body["verdict_detail"]
    assert detail["reason"] in detail["failed"]
    assert detail["scores"][detail["reason"]] > detail["thresholds"][detail["reason"]]
    assert detail["message"].startswith("That doesn't look like a digit: ")
    assert 0 <= body["digit"] <= 9 and len(body["probabilities"]) == 10  # still given


def test_two_digits_side_by_side_are_not_one(shipped: TestClient, mnist: Mnist) -> None:
    pair = np.concatenate([mnist.valid_images[0], mnist.valid_images[1]], axis=1)
    image = Image.fromarray(pair).resize((280, 140))
    canvas = Image.new("L", (280, 280))
    canvas.paste(image, (0, 70))
    out = io.BytesIO()
    canvas.save(out, "PNG")
    body = shipped.post("/api/predict", content=out.getvalue(),
                        headers={"Content-Type": "image/png"}).json()
    assert body["verdict"] == "not_a_digit"


def test_canvas_digits_are_digits_with_a_calibrated_line(shipped: TestClient,
                                                         mnist: Mnist) -> None:
    images = [data_url(canvas_png(d, scale=8, offset=(20, 30))) for d in mnist.valid_images[:40]]
    answers = shipped.post("/api/predict/batch", json={"images": images}).json()["predictions"]
    verdicts = [a["verdict"] for a in answers]
    assert verdicts.count("not_a_digit") <= 1
    for answer in answers:
        detail = answer["verdict_detail"]
        sure = detail["calibrated_confidence"] >= detail["sure_above"]
        if answer["verdict"] != "not_a_digit":
            assert answer["verdict"] == ("digit" if sure else "unsure")
        assert 0.5 < detail["sure_above"] < 1.0 and detail["temperature"] > 0


def test_unsure_names_the_two_candidates(shipped: TestClient, mnist: Mnist) -> None:
    pixels = mnist.valid_images[:300].reshape(300, -1).tolist()
    answers = shipped.post("/api/predict/batch", json={"pixels": pixels}).json()["predictions"]
    unsure = [a for a in answers if a["verdict"] == "unsure"]
    assert unsure, "300 validation digits and not one unsure answer"
    first, second = unsure[0]["verdict_detail"]["candidates"]
    assert unsure[0]["verdict_detail"]["message"] == f"Not sure: {first} or {second}?"
    assert first == unsure[0]["digit"] and second != first


def test_v2_gives_the_verdict_as_a_third_output(shipped: TestClient, mnist: Mnist) -> None:
    star = np.asarray(Image.open(io.BytesIO(strokes_png(STAR, 6))).getchannel("A").resize(
        (28, 28), Image.Resampling.BOX), dtype=np.float32) / 255.0
    data = np.stack([mnist.valid_images[0] / 255.0, star]).reshape(-1).tolist()
    answer = shipped.post("/v2/models/mnist-logreg/infer", json={
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 784], "data": data}]})
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["verdict"]["datatype"] == "BYTES" and outputs["verdict"]["shape"] == [2]
    assert outputs["verdict"]["data"][0] in ("digit", "unsure")
    assert set(outputs) == {"probabilities", "digit", "verdict"}
    meta = shipped.get("/v2/models/mnist-logreg").json()
    assert "verdict" in [o["name"] for o in meta["outputs"]]
    only = shipped.post("/v2/models/mnist-logreg/infer", json={
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 784], "data": data}],
        "outputs": [{"name": "verdict"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["verdict"]


def test_a_model_without_calibration_says_so(client: TestClient, mnist: Mnist) -> None:
    body = client.post("/api/predict", json={"pixels": mnist.valid_images[0].tolist()}).json()
    assert body["verdict"] in ("digit", "unsure")
    assert body["verdict_detail"]["reason"] == "uncalibrated"
    assert "mnist-canvas calibrate" in body["verdict_detail"]["message"]
