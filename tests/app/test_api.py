"""Every endpoint and input form, through the real app and its real lifespan."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from model.data import Mnist
from tests.app.conftest import canvas_png, data_url, make_settings
from tests.scrape import total


def check_prediction(body: dict, digit: int | None = None) -> None:  # type: ignore[type-arg]
    assert set(body) >= {"digit", "confidence", "probabilities", "preview", "model_version",
                         "elapsed_ms"}
    assert len(body["probabilities"]) == 10
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert body["confidence"] == pytest.approx(max(body["probabilities"]))
    assert body["digit"] == int(np.argmax(body["probabilities"]))
    preview = np.array(body["preview"])
    assert preview.shape == (28, 28) and preview.min() >= 0 and preview.max() <= 255
    if digit is not None:
        assert body["digit"] == digit


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["device"] == "cpu"
    assert len(ready.json()["model_version"]) == 12


def test_pixels_json_flat_and_nested_agree_with_the_predictor(client: TestClient,
                                                              mnist: Mnist) -> None:
    image = mnist.test_images[0]
    flat = client.post("/api/predict", json={"pixels": image.ravel().tolist()})
    nested = client.post("/api/predict", json={"pixels": image.tolist()})
    assert flat.status_code == nested.status_code == 200
    check_prediction(flat.json(), digit=7)
    assert flat.json()["probabilities"] == nested.json()["probabilities"]
    assert flat.json()["preview"] == image.tolist()  # already MNIST form: seen unchanged


def test_pixels_with_preprocess_recentres_an_off_centre_digit(client: TestClient,
                                                              mnist: Mnist) -> None:
    shifted = np.roll(mnist.test_images[1], (4, -4), axis=(0, 1))
    body = client.post("/api/predict", json={"pixels": shifted.tolist(),
                                             "preprocess": True}).json()
    check_prediction(body, digit=2)
    preview = np.array(body["preview"], dtype=float)
    rows, cols = np.mgrid[:28, :28]
    cy, cx = (preview * rows).sum() / preview.sum(), (preview * cols).sum() / preview.sum()
    assert abs(cy - 13.5) < 1.0 and abs(cx - 13.5) < 1.0


@pytest.mark.parametrize("mode", ["transparent", "dark-on-light", "light-on-dark"])
def test_canvas_data_url_is_read_like_the_original(client: TestClient, mnist: Mnist,
                                                   mode: str) -> None:
    hits = 0
    for i in range(20):
        png = canvas_png(mnist.test_images[i], mode=mode, offset=(0, 0))
        body = client.post("/api/predict", json={"image": data_url(png)}).json()
        check_prediction(body)
        hits += body["digit"] == mnist.test_labels[i]
    assert hits >= 17


def test_plain_base64_multipart_and_raw_body_forms(client: TestClient, mnist: Mnist) -> None:
    png = canvas_png(mnist.test_images[2], mode="dark-on-light")
    answers = [
        client.post("/api/predict", json={"image": base64.b64encode(png).decode()}),
        client.post("/api/predict", files={"file": ("digit.png", png, "image/png")}),
        client.post("/api/predict", content=png, headers={"content-type": "image/png"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        check_prediction(answer.json(), digit=1)
    assert len({str(a.json()["probabilities"]) for a in answers}) == 1


def test_jpeg_upload(client: TestClient, mnist: Mnist) -> None:
    jpeg = canvas_png(mnist.test_images[3], mode="dark-on-light", fmt="JPEG")
    answer = client.post("/api/predict", files={"file": ("d.jpg", jpeg, "image/jpeg")})
    assert answer.status_code == 200
    check_prediction(answer.json(), digit=0)


def test_batch_answers_in_order_and_reports_bad_items_in_place(client: TestClient,
                                                               mnist: Mnist) -> None:
    pixels = [mnist.test_images[i].tolist() for i in range(6)]
    pixels.insert(2, [1, 2, 3])
    body = client.post("/api/predict/batch", json={"pixels": pixels}).json()
    predictions = body["predictions"]
    assert len(predictions) == 7
    assert [p.get("digit") for p in predictions] == [7, 2, None, 1, 0, 4, 1]
    assert predictions[2]["status"] == 422 and "784" in predictions[2]["error"]

    images = [data_url(canvas_png(mnist.test_images[i])) for i in range(3)] + ["data:nope"]
    body = client.post("/api/predict/batch", json={"images": images}).json()
    assert [p.get("digit") for p in body["predictions"][:3]] == [7, 2, 1]
    assert body["predictions"][3]["error"]


def test_batch_matches_single_predictions(client: TestClient, mnist: Mnist) -> None:
    images = [data_url(canvas_png(mnist.test_images[i], mode="light-on-dark")) for i in range(4)]
    batch = client.post("/api/predict/batch", json={"images": images}).json()["predictions"]
    for image, item in zip(images, batch, strict=True):
        single = client.post("/api/predict", json={"image": image}).json()
        assert single["probabilities"] == item["probabilities"]
        assert single["preview"] == item["preview"]


def test_model_card_weights_and_gallery(client: TestClient) -> None:
    card = client.get("/api/model").json()
    assert card["arch"] in ("sequential", "logreg") and card["parameters"] == 7850
    assert card["train_size"] == 50_000 and card["valid_size"] == 10_000
    assert card["mean"] == pytest.approx(0.13096, abs=1e-4)
    assert card["test"]["accuracy"] >= 0.925 and len(card["test"]["confusion"]) == 10
    assert len(card["history"]) == card["config"]["epochs"]
    weights = client.get("/api/model/weights").json()
    assert np.array(weights["weights"]).shape == (10, 28, 28) and len(weights["bias"]) == 10
    gallery = client.get("/api/model/errors").json()["items"]
    assert gallery and all(item["true"] != item["predicted"] for item in gallery)
    assert np.array(gallery[0]["image"]).shape == (28, 28)


def test_weights_explain_the_prediction(client: TestClient, mnist: Mnist) -> None:
    """The page's 'why' panel: logits from /weights and the preview give the probabilities."""
    body = client.post("/api/predict", json={"pixels": mnist.test_images[5].tolist()}).json()
    w = client.get("/api/model/weights").json()
    x = (np.array(body["preview"]).ravel() / 255 - w["mean"]) / w["std"]
    logits = np.array(w["weights"]).reshape(10, 784) @ x + np.array(w["bias"])
    probs = np.exp(logits - logits.max())
    np.testing.assert_allclose(probs / probs.sum(), body["probabilities"], atol=1e-4)


def test_v2_inference_protocol(client: TestClient, mnist: Mnist) -> None:
    assert client.get("/v2").json()["name"] == "mnist-canvas"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/mnist-logreg").json()
    assert meta["inputs"][0]["datatype"] == "FP32"
    assert client.get("/v2/models/mnist-logreg/ready").json()["ready"] is True
    images = mnist.test_images[:3].astype(np.float32) / 255
    for shape, data in (([3, 784], images.ravel().tolist()), ([3, 28, 28], images.tolist())):
        answer = client.post("/v2/models/mnist-logreg/infer", json={
            "id": "abc", "inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                     "data": data}]})
        assert answer.status_code == 200, answer.text
        out = {o["name"]: o for o in answer.json()["outputs"]}
        assert answer.json()["id"] == "abc"
        assert out["digit"]["data"] == [7, 2, 1] and out["digit"]["datatype"] == "INT64"
        assert out["probabilities"]["shape"] == [3, 10]
    only = client.post("/v2/models/mnist-logreg/infer", json={
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                    "data": images[0].ravel().tolist()}], "outputs": [{"name": "digit"}]})
    assert [o["name"] for o in only.json()["outputs"]] == ["digit"]
    bad = client.post("/v2/models/mnist-logreg/infer", json={"inputs": []})
    assert bad.status_code == 400 and "inputs" in bad.json()["error"]
    assert client.get("/v2/models/other").status_code == 404


def test_metrics_count_requests_and_predictions(client: TestClient, mnist: Mnist) -> None:
    client.post("/api/predict", json={"pixels": mnist.test_images[0].tolist()})
    client.post("/api/predict", json={"pixels": [1]})
    text = client.get("/metrics").text
    requests = "mnist_canvas_requests_total"
    assert total(text, requests, route="/api/predict", method="POST", status="200") >= 1
    assert total(text, requests, route="/api/predict", method="POST", status="422") >= 1
    assert total(text, "mnist_canvas_predictions_total", digit="7") >= 1
    for stage in ("duration", "preprocess", "predict"):
        assert total(text, f"mnist_canvas_request_{stage}_seconds_count") >= 1


def test_openapi_documents_every_route_with_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/predict", "/api/predict/batch", "/api/model", "/api/model/weights",
                 "/healthz", "/readyz", "/metrics", "/v2/models/{name}/infer"):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert set(body) >= {"application/json", "multipart/form-data"}
    assert "PredictJSON" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("request_kwargs", "status", "sentence"),
    [
        ({"json": {"pixels": [0] * 783}}, 422, "783 entries"),
        ({"json": {"pixels": [[0] * 28] * 27 + [[0] * 27]}}, 422, "row 27"),
        ({"json": {"pixels": [300] * 784}}, 422, "between 0 and 255"),
        ({"json": {"pixels": ["1"] * 784}}, 422, "only numbers"),
        ({"json": {}}, 422, "exactly one of"),
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
        ({"json": {"image": "data:image/png;base64,!!!"}}, 422, "not valid base64"),
        ({"json": {"pixels": [0] * 784, "preprocess": True}}, 422, "empty"),
    ],
)
def test_bad_input_gets_a_4xx_sentence_and_the_server_stays_ready(
    client: TestClient, request_kwargs: dict, status: int, sentence: str,  # type: ignore[type-arg]
) -> None:
    answer = client.post("/api/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    assert sentence in answer.json()["detail"]
    assert client.get("/readyz").status_code == 200


def test_predict_rejects_empty_drawing(client: TestClient) -> None:
    blank = canvas_png(np.zeros((28, 28), dtype=np.uint8))
    answer = client.post("/api/predict", json={"image": data_url(blank)})
    assert answer.status_code == 422
    assert "empty" in answer.json()["detail"].lower()


def test_small_model_serves_too(tmp_path: Path, data_dir: Path, mnist: Mnist) -> None:
    import io

    from model.checkpoint import save_checkpoint
    from model.training import TrainConfig, train
    from tests.model.test_training import synthetic

    path = tmp_path / "small.safetensors"
    save_checkpoint(train(synthetic(), TrainConfig(epochs=1, arch="logreg", deskew=True),
                          device="cpu", out=io.StringIO()).to_checkpoint(), path)
    with TestClient(create_app(make_settings(path, data_dir))) as small:
        card = small.get("/api/model").json()
        assert card["arch"] == "logreg" and card["transforms"] == ["deskew"]
        body = small.post("/api/predict", json={"pixels": mnist.test_images[0].tolist()}).json()
        check_prediction(body)
        # The preview is what the model saw: the deskewed digit, not the raw one.
        assert body["preview"] != mnist.test_images[0].tolist()
