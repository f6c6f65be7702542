"""POST /api/feedback and the admin routes, in process, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.exports import CSV_HEADER
from model.data import Mnist
from model.idx import read_idx_tar
from model.preprocess import preprocess_image
from tests.app.conftest import canvas_png, data_url
from tests.feedback_helpers import AUTH, distinct_digits, feedback_client, pixels_body


def stored(client: Any, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/feedback", params={"limit": 500, **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_correction_stores_the_image_the_model_sees(database_url: str, data_dir: Path,
                                                      mnist: Mnist) -> None:
    png = canvas_png(mnist.valid_images[0], offset=(20, 30))
    with feedback_client(database_url, data_dir) as client:
        predicted = client.post("/api/predict", json={"image": data_url(png)}).json()
        response = client.post("/api/feedback", json={
            "image": data_url(png), "label": 3, "client_id": "browser-1"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["created"] is True and body["label"] == 3
        assert body["predicted"] == predicted["digit"]
        assert body["model_version"] == predicted["model_version"]
        [row] = stored(client)
    expected = np.clip(np.rint(preprocess_image(png)), 0, 255).astype(np.uint8)
    assert np.array_equal(np.array(row["image"], dtype=np.uint8), expected)
    # The shipped model has no input transforms, so this is also the preview predict showed.
    assert row["image"] == predicted["preview"]
    assert row["id"] == body["id"] and row["label"] == 3 and row["client_id"] == "browser-1"
    assert row["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)
    assert row["has_canvas"] is False  # not shared unless asked


def test_same_image_and_label_is_stored_once(database_url: str, data_dir: Path,
                                             mnist: Mnist) -> None:
    image = mnist.valid_images[1]
    with feedback_client(database_url, data_dir) as client:
        first = client.post("/api/feedback", json=pixels_body(image, 4))
        again = client.post("/api/feedback", json=pixels_body(image, 4, client_id="other"))
        other_label = client.post("/api/feedback", json=pixels_body(image, 9))
        assert first.status_code == 201 and again.status_code == 200
        assert again.json() == {**first.json(), "created": False}
        assert other_label.status_code == 201 and other_label.json()["id"] != first.json()["id"]
        assert len(stored(client)) == 2


def test_shared_canvas_is_kept_only_when_asked(database_url: str, data_dir: Path,
                                               mnist: Mnist) -> None:
    png = canvas_png(mnist.valid_images[2])
    with feedback_client(database_url, data_dir) as client:
        response = client.post("/api/feedback", json={"image": data_url(png), "label": 1,
                                                      "share_canvas": True})
        assert response.status_code == 201
        [row] = stored(client)
        assert row["has_canvas"] is True


def test_stats_count_labels_versions_and_mistakes(database_url: str, data_dir: Path,
                                                  mnist: Mnist) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 6)
    with feedback_client(database_url, data_dir) as client:
        assert client.get("/api/feedback/stats").json()["total"] == 0
        answers = [client.post("/api/feedback", json=pixels_body(img, lab)).json()
                   for img, lab in zip(images, labels, strict=True)]
        # One deliberately wrong label: the model cannot have read it right.
        wrong_label = (answers[0]["predicted"] + 1) % 10
        answers.append(client.post("/api/feedback",
                                   json=pixels_body(images[0], wrong_label)).json())
        stats = client.get("/api/feedback/stats").json()
    all_labels = [*labels.tolist(), wrong_label]
    assert stats["total"] == 7
    assert stats["per_label"] == [all_labels.count(d) for d in range(10)]
    wrong = sum(a["predicted"] != a["label"] for a in answers)
    assert stats["wrong"] == wrong >= 1
    assert stats["wrong_share"] == pytest.approx(wrong / 7, abs=1e-6)
    [version] = stats["per_model_version"]
    assert version["count"] == version["judged"] == 7 and version["wrong"] == wrong


def test_admin_routes_filter_page_and_delete(database_url: str, data_dir: Path,
                                             mnist: Mnist) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 12, start=100)
    with feedback_client(database_url, data_dir) as client:
        ids = [client.post("/api/feedback", json=pixels_body(img, lab)).json()["id"]
               for img, lab in zip(images, labels, strict=True)]
        label = int(labels[0])
        assert {r["label"] for r in stored(client, label=label)} == {label}
        assert len(stored(client, label=label)) == int((labels == label).sum())
        for row in stored(client, wrong=True):
            assert row["predicted"] != row["label"]
        first = client.get("/api/feedback", params={"limit": 5}, headers=AUTH).json()
        assert [r["id"] for r in first["items"]] == sorted(ids, reverse=True)[:5]
        assert first["total"] == 12 and first["next_before_id"] == first["items"][-1]["id"]
        second = client.get("/api/feedback", params={"limit": 5,
                                                     "before_id": first["next_before_id"]},
                            headers=AUTH).json()
        assert [r["id"] for r in second["items"]] == sorted(ids, reverse=True)[5:10]

        assert client.delete(f"/api/feedback/{ids[0]}", headers=AUTH).json() == {
            "deleted": ids[0]}
        gone = client.delete(f"/api/feedback/{ids[0]}", headers=AUTH)
        assert gone.status_code == 404 and "no correction" in gone.json()["detail"]
        assert len(stored(client)) == 11


def test_admin_routes_are_off_without_a_token_and_refuse_a_wrong_one(
    tmp_path: Path, data_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    with feedback_client(url, data_dir, admin_token=None) as client:
        for method, path in (("GET", "/api/feedback"), ("GET", "/api/feedback/export"),
                             ("DELETE", "/api/feedback/1")):
            response = client.request(method, path, headers=AUTH)
            assert response.status_code == 403
            assert "MNIST_CANVAS_ADMIN_TOKEN" in response.json()["detail"]
    with feedback_client(url, data_dir) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eA=="}):
            response = client.get("/api/feedback", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in response.json()["detail"]


def export(client: Any, fmt: str) -> bytes:
    response = client.get("/api/feedback/export", params={"format": fmt}, headers=AUTH)
    assert response.status_code == 200, response.text
    return bytes(response.content)


def test_exports_read_back_identical(database_url: str, data_dir: Path, mnist: Mnist) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 25, start=300)
    with feedback_client(database_url, data_dir) as client:
        for img, lab in zip(images, labels, strict=True):
            assert client.post("/api/feedback", json=pixels_body(img, lab)).status_code == 201
        rows = sorted(stored(client), key=lambda r: r["id"])
        want_images = np.array([r["image"] for r in rows], dtype=np.uint8)
        want_labels = np.array([r["label"] for r in rows])
        assert np.array_equal(want_images, images) and np.array_equal(want_labels, labels)

        text = export(client, "csv").decode()
        assert text.startswith(CSV_HEADER)
        table = np.array(list(csv.reader(io.StringIO(text)))[1:], dtype=np.int64)
        assert np.array_equal(table[:, 0], want_labels)
        assert np.array_equal(table[:, 1:].reshape(-1, 28, 28), want_images)

        lines = export(client, "ndjson").decode().splitlines()
        objects = [json.loads(line) for line in lines]
        assert [o["id"] for o in objects] == [r["id"] for r in rows]
        assert np.array_equal(np.array([o["pixels"] for o in objects]).reshape(-1, 28, 28),
                              want_images)
        assert [o["label"] for o in objects] == want_labels.tolist()

        idx_images, idx_labels = read_idx_tar(export(client, "idx"))
        assert np.array_equal(idx_images, want_images)
        assert np.array_equal(idx_labels, want_labels)


def test_export_of_nothing_is_a_valid_empty_file(tmp_path: Path, data_dir: Path) -> None:
    with feedback_client(f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir) as client:
        assert export(client, "csv").decode() == CSV_HEADER
        assert export(client, "ndjson") == b""
        images, labels = read_idx_tar(export(client, "idx"))
        assert images.shape == (0, 28, 28) and labels.shape == (0,)


BLANK = [0] * 784
DOT = [0] * 783 + [255]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"pixels": DOT}, 422, "'label' is missing"),
    ({"pixels": DOT, "label": None}, 422, "'label' is missing"),
    ({"pixels": DOT, "label": "7"}, 422, "integer from 0 to 9"),
    ({"pixels": DOT, "label": 7.0}, 422, "integer from 0 to 9"),
    ({"pixels": DOT, "label": True}, 422, "integer from 0 to 9"),
    ({"pixels": DOT, "label": 10}, 422, "digit from 0 to 9"),
    ({"pixels": DOT, "label": -1}, 422, "digit from 0 to 9"),
    ({"pixels": DOT, "label": 3, "predicted": 11}, 422, "'predicted'"),
    ({"pixels": BLANK, "label": 3}, 422, "empty"),
    ({"pixels": BLANK, "label": 3, "preprocess": True}, 422, "empty"),
    ({"label": 3}, 422, "exactly one of 'image'"),
    ({"pixels": DOT, "image": "x", "label": 3}, 422, "exactly one of 'image'"),
    ({"pixels": [1, 2], "label": 3}, 422, "784"),
    ({"image": "data:image/png;base64,@@@", "label": 3}, 422, "base64"),
    ({"image": base64.b64encode(b"not an image").decode(), "label": 3}, 415, "image"),
    ({"image": "data:text/plain;base64,eA==", "label": 3}, 415, "not an image"),
    ({"pixels": DOT, "label": 3, "client_id": "a b"}, 422, "'client_id'"),
    ({"pixels": DOT, "label": 3, "client_id": "x" * 65}, 422, "'client_id'"),
    ({"pixels": DOT, "label": 3, "model_version": 5}, 422, "'model_version'"),
    ({"pixels": DOT, "label": 3, "share_canvas": True}, 422, "share_canvas"),
    ({"pixels": DOT, "label": 3, "share_canvas": "yes"}, 422, "share_canvas"),
    ([1, 2, 3], 422, "JSON body must be an object"),
])
def test_bad_corrections_get_a_sentence(body: Any, status: int, words: str, tmp_path: Path,
                                        data_dir: Path) -> None:
    with feedback_client(f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir) as client:
        response = client.post("/api/feedback", json=body)
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert words in detail and detail.endswith((".", ")")), detail
        assert client.get("/api/feedback/stats").json()["total"] == 0


def test_bad_bodies_and_content_types_get_a_sentence(tmp_path: Path, data_dir: Path) -> None:
    with feedback_client(f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir) as client:
        response = client.post("/api/feedback", content=b"{not json",
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
        response = client.post("/api/feedback", content=b"label=3",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 415 and "application/json" in response.json()["detail"]
        png = canvas_png(np.zeros((28, 28), np.uint8) + 0)
        response = client.post("/api/feedback", json={"image": data_url(png), "label": 2})
        assert response.status_code == 422 and "empty" in response.json()["detail"].lower()
        big = canvas_png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8),
                         scale=30, size=840)
        response = client.post("/api/feedback", json={"image": data_url(big), "label": 2,
                                                      "share_canvas": True})
        assert response.status_code == 413 and "at most" in response.json()["detail"]


def test_a_flood_from_one_client_gets_429_with_retry_after(tmp_path: Path, data_dir: Path,
                                                           mnist: Mnist) -> None:
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 8, start=500)
    bodies = [pixels_body(i, lab) for i, lab in zip(images, labels, strict=True)]
    with feedback_client(f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir,
                         feedback_per_minute=3) as client:
        answers = [client.post("/api/feedback", json={**b, "client_id": "flood"})
                   for b in bodies[:4]]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        assert int(answers[3].headers["retry-after"]) >= 1
        assert "at most 3 a minute" in answers[3].json()["detail"]
        # Another browser is not held back; requests without an id share their address's bucket.
        assert client.post("/api/feedback",
                           json={**bodies[4], "client_id": "calm"}).status_code == 201
        anonymous = [client.post("/api/feedback", json=b).status_code for b in bodies[5:8]]
        assert anonymous == [201, 201, 201]
        refused = client.post("/api/feedback", json=pixels_body(images[0], 0))
        assert refused.status_code == 429
        assert client.get("/api/feedback/stats").json()["total"] == 7


def test_database_down_answers_503_and_predictions_go_on(data_dir: Path, mnist: Mnist) -> None:
    from tests.live import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    image = mnist.valid_images[3]
    with feedback_client(url, data_dir, ready=False) as client:
        assert client.get("/readyz").status_code == 200
        response = client.post("/api/feedback", json=pixels_body(image, 5))
        assert response.status_code == 503 and response.headers["retry-after"]
        detail = response.json()["detail"]
        assert "Predictions still work" in detail and "nobody" in detail
        assert client.get("/api/feedback/stats").status_code == 503
        predict = client.post("/api/predict", json={"pixels": image.astype(int).ravel().tolist()})
        assert predict.status_code == 200


@pytest.mark.slow
def test_a_locked_sqlite_database_answers_503_and_writes_nothing(tmp_path: Path, data_dir: Path,
                                                                 mnist: Mnist) -> None:
    import sqlite3

    path = tmp_path / "db.sqlite3"
    with feedback_client(f"sqlite:///{path}", data_dir) as client:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            response = client.post("/api/feedback", json=pixels_body(mnist.valid_images[4], 1))
            assert response.status_code == 503, response.text
            assert "nothing was stored" in response.json()["detail"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.get("/api/feedback/stats").json()["total"] == 0
        again = client.post("/api/feedback", json=pixels_body(mnist.valid_images[4], 1))
        assert again.status_code == 201


@pytest.mark.slow
def test_postgresql_outage_answers_503_then_recovers(data_dir: Path, mnist: Mnist,
                                                     postgres_server: Any) -> None:
    url = postgres_server.create_database()
    images, labels = distinct_digits(mnist.valid_images, mnist.valid_labels, 3, start=900)
    pixels = {"pixels": images[0].astype(int).ravel().tolist()}
    try:
        with feedback_client(url, data_dir) as client:
            assert client.post("/api/feedback",
                               json=pixels_body(images[0], labels[0])).status_code == 201
            postgres_server.stop()
            try:
                down = client.post("/api/feedback", json=pixels_body(images[1], labels[1]))
                assert down.status_code == 503, down.text
                assert "nothing was stored" in down.json()["detail"]
                # Until the next attempt, the outage is answered at once, without a connect.
                again = client.post("/api/feedback", json=pixels_body(images[1], labels[1]))
                assert again.status_code == 503 and "cannot be reached" in again.json()["detail"]
                assert client.post("/api/predict", json=pixels).status_code == 200
            finally:
                postgres_server.restart()
            deadline = time.monotonic() + 30
            while (back := client.post("/api/feedback", json=pixels_body(images[2], labels[2]))
                   ).status_code == 503 and time.monotonic() < deadline:
                assert back.headers["retry-after"]
                time.sleep(0.5)
            assert back.status_code == 201, back.text
            assert client.get("/api/feedback/stats").json()["total"] == 2
    finally:
        postgres_server.drop_database(url)


def test_answers_match_their_declared_models(tmp_path: Path, data_dir: Path,
                                             mnist: Mnist) -> None:
    from app.feedback_schemas import FeedbackCreated, FeedbackPage, FeedbackStats

    with feedback_client(f"sqlite:///{tmp_path / 'db.sqlite3'}", data_dir) as client:
        created = client.post("/api/feedback", json=pixels_body(mnist.valid_images[5], 2))
        FeedbackCreated.model_validate(created.json(), strict=True)
        FeedbackStats.model_validate(client.get("/api/feedback/stats").json())
        FeedbackPage.model_validate(client.get("/api/feedback", headers=AUTH).json())
        schema = client.get("/openapi.json").json()
        post = schema["paths"]["/api/feedback"]["post"]
        assert {"201", "200", "422", "429", "503"} <= set(post["responses"])
        assert "label" in post["requestBody"]["content"]["application/json"]["schema"]["required"]
