"""Hostile traffic against the real server (a live `mnist-canvas serve` process): image bombs,
floods, slow and oversized heads, clients that leave, deadlines and SIGTERM.

Behaviour is asserted (status codes, JSON sentences, what the log says was stopped), never
wall-clock limits: benchmarks/hostile.py measures the times, CPU and memory.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import hostile
from tests.live import LiveServer

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
STOPPED = re.compile(r"batch stopped after (\d+) of (\d+) images: (.*)")

pytestmark = pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="no shipped model")


@functools.cache
def dots_webp(side: int) -> bytes:
    """A lossless WebP of side x side white pixels and two dots: a few hundred bytes that
    decode to `side`² pixels (and then to an empty drawing)."""
    return hostile.dots_webp(side)


def batch_of(image: bytes, n: int) -> bytes:
    return hostile.batch_body(image, n, "image/webp")


def post(base: str, path: str, body: bytes, ctype: str = "application/json",
         timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(base + path, data=body, method="POST",
                                     headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        assert err.headers.get("content-type", "").startswith("application/json"), raw[:200]
        return err.code, dict(err.headers), json.loads(raw)


def get(base: str, path: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def start_server(tmp: Path, **env: str) -> LiveServer:
    server = LiveServer(model_path=SHIPPED_MODEL, data_dir=tmp, log_path=tmp / "server.log",
                        MNIST_CANVAS_TRAIN_ON_START="never", MNIST_CANVAS_LOG_LEVEL="info",
                        **env)
    server.start()
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def stopped_lines(server: LiveServer, timeout: float = 30) -> list[tuple[int, int, str]]:
    """The log's "batch stopped after k of n" lines, waiting a while for the first."""
    end = time.monotonic() + timeout
    while True:
        found = [(int(k), int(n), why) for k, n, why in STOPPED.findall(server.log())]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.1)


class Background(threading.Thread):
    """A POST run in a thread; `result` holds (status, headers, body) or the exception."""

    def __init__(self, base: str, path: str, body: bytes, ctype: str = "application/json"):
        super().__init__(daemon=True)
        self.args_ = (base, path, body, ctype)
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = post(*self.args_)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.result = exc


# --------------------------------------------------------------------------------------------
# One server for the cheap refusals, the listener and the client that leaves


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("hostile"), MNIST_CANVAS_HEADER_TIMEOUT_S="1",
                        MNIST_CANVAS_QUEUE_WAIT_S="30",
                        MNIST_CANVAS_REQUEST_TIMEOUT_S="60",
                        MNIST_CANVAS_MAX_REQUEST_PIXELS="400000000")
    yield live
    live.stop()


def test_a_tiny_image_bomb_is_refused_from_its_header(server: LiveServer) -> None:
    bomb = dots_webp(4096)
    assert len(bomb) < 1000  # 720 bytes for 16.7 million pixels
    status, _, body = post(server.url, "/api/predict", bomb, "image/webp")
    # 413 naming the size is what the header alone shows; a decoded bomb would have been a
    # 422 "empty drawing".
    assert status == 413
    assert "4096x4096" in body["detail"] and "4,194,304" in body["detail"]


def test_a_batch_of_bombs_is_refused_by_the_request_budget_before_decoding(
    server: LiveServer,
) -> None:
    status, _, body = post(server.url, "/api/predict/batch", batch_of(dots_webp(2048), 200))
    assert status == 413
    assert "pixels in all" in body["detail"] and "MNIST_CANVAS_MAX_REQUEST_PIXELS" in body["detail"]
    # Images each over the per-image limit are refused one by one, from their headers.
    status, _, body = post(server.url, "/api/predict/batch", batch_of(dots_webp(4096), 200))
    assert status == 200
    assert {item["status"] for item in body["predictions"]} == {413}
    assert STOPPED.search(server.log()) is None


def test_healthz_answers_while_heavy_requests_run(server: LiveServer) -> None:
    heavy = [Background(server.url, "/api/predict/batch", batch_of(dots_webp(2048), 20))
             for _ in range(2)]
    heavy += [Background(server.url, "/api/predict", dots_webp(2048), "image/webp")
              for _ in range(4)]
    for job in heavy:
        job.start()
    answered_meanwhile = 0
    while any(job.is_alive() for job in heavy[:2]):
        status, body = get(server.url, "/healthz")
        assert (status, body) == (200, {"status": "ok"})
        answered_meanwhile += 1 if any(job.is_alive() for job in heavy[:2]) else 0
    for job in heavy:
        job.join(60)
    assert [job.result[0] for job in heavy] == [200, 200, 422, 422, 422, 422]
    assert all(item["code"] == "empty_drawing" for item in heavy[0].result[2]["predictions"])
    # Two batches of 20 large images kept the workers busy; the event loop kept answering.
    assert answered_meanwhile >= 5


def test_a_disconnected_batch_stops(server: LiveServer) -> None:
    body = batch_of(dots_webp(2048), 60)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /api/predict/batch HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)
    lines = stopped_lines(server)
    assert lines, server.log()[-2000:]
    done, total, why = lines[-1]
    assert total == 60 and done < total and "client closed" in why
    assert get(server.url, "/healthz")[0] == 200


def test_a_connection_that_never_finishes_its_head_is_closed(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # no blank line, ever
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b'"detail"' in answer
        assert sock.recv(4096) == b""  # and closed


def test_an_oversized_head_is_refused(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 100_000
                     + b"\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_keep_alive_connection_serves_requests_within_the_head_limits(
    server: LiveServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            time.sleep(0.4)  # a pause below the head timeout, between requests


def test_v2_infer_refuses_text_plain_as_a_cross_site_post_would_send(server: LiveServer) -> None:
    payload = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784],
                                      "data": [0.0] * 784}]}).encode()
    status, _, body = post(server.url, "/v2/models/mnist-logreg/infer", payload, "text/plain")
    assert status == 415 and "application/json" in body["error"]
    status, _, _ = post(server.url, "/v2/models/mnist-logreg/infer", payload)
    assert status == 200


# --------------------------------------------------------------------------------------------
# A server with one worker slot, no queue and a short deadline


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("tight"), MNIST_CANVAS_MAX_CONCURRENT_WORK="1",
                        MNIST_CANVAS_MAX_QUEUE="0", MNIST_CANVAS_REQUEST_TIMEOUT_S="1.5",
                        MNIST_CANVAS_MAX_REQUEST_PIXELS="400000000")
    yield live
    live.stop()


def test_a_full_server_answers_503_with_retry_after(tight: LiveServer) -> None:
    # One worker slot and no queue: while the batch (or a single image that got in first)
    # holds the slot, every other heavy request is refused at once.
    batch = Background(tight.url, "/api/predict/batch", batch_of(dots_webp(2048), 60))
    batch.start()
    time.sleep(0.3)
    answers = []
    while batch.is_alive() and not any(a[0] == 503 for a in answers):
        answers.append(post(tight.url, "/api/predict", dots_webp(2048), "image/webp"))
    batch.join(60)
    answers.append(batch.result)
    busy = [a for a in answers if a[0] == 503]
    assert busy, [a[0] for a in answers]
    _, headers, body = busy[0]
    assert int(headers["retry-after"]) >= 1
    assert "busy" in body["detail"]
    # Cheap requests are never queued behind heavy ones.
    status, _, _ = post(tight.url, "/api/predict", json.dumps({"pixels": [0] * 784}).encode())
    assert status == 200


def test_a_large_json_body_is_parsed_in_the_worker_slot(tight: LiveServer) -> None:
    # Parsers hold the GIL for a whole body, so a large one is heavy work: while a batch holds
    # the only slot, a 1.2 MB prediction (784 pixels and 600,000 numbers it never reads) is
    # told 503 like a large image, where a small one is answered on the spot.
    large = json.dumps({"pixels": [0] * 784, "pad": [0] * 600_000}).encode()
    batch = Background(tight.url, "/api/predict/batch", batch_of(dots_webp(2048), 60))
    batch.start()
    time.sleep(0.3)
    answers = []
    while batch.is_alive() and not any(a[0] == 503 for a in answers):
        answers.append(post(tight.url, "/api/predict", large))
    batch.join(60)
    assert any(a[0] == 503 for a in answers), [a[0] for a in answers]
    assert {a[0] for a in answers} <= {200, 503}
    status, _, body = post(tight.url, "/api/predict", large)  # the slot is free again
    assert status == 200 and body["digit"] in range(10)


def test_a_batch_past_its_deadline_answers_504_and_stops(tight: LiveServer) -> None:
    status, _, body = post(tight.url, "/api/predict/batch", batch_of(dots_webp(2048), 80))
    assert status == 504
    assert "deadline" in body["detail"] and "MNIST_CANVAS_REQUEST_TIMEOUT_S" in body["detail"]
    done, total, why = stopped_lines(tight)[-1]
    assert total == 80 and done < total and "deadline" in why


# --------------------------------------------------------------------------------------------
# SIGTERM


def sigterm_during_batch(live: LiveServer, images: int) -> Background:
    """A batch of `images` worst-case images under way, then SIGTERM to the server."""
    batch = Background(live.url, "/api/predict/batch", batch_of(dots_webp(2048), images))
    batch.start()
    time.sleep(0.5)
    assert batch.is_alive(), "the batch ended before SIGTERM; nothing was tested"
    assert live.process is not None
    live.process.send_signal(signal.SIGTERM)
    return batch


def test_sigterm_drains_requests_in_flight_and_refuses_new_ones_in_json(tmp_path: Path) -> None:
    live = start_server(tmp_path, MNIST_CANVAS_REQUEST_TIMEOUT_S="120",
                        MNIST_CANVAS_SHUTDOWN_GRACE_S="120",
                        MNIST_CANVAS_MAX_REQUEST_PIXELS="400000000")
    try:
        batch = sigterm_during_batch(live, 60)
        time.sleep(0.2)
        # Readiness fails at once; liveness holds; new work gets a JSON 503.
        assert get(live.url, "/readyz")[0] == 503
        assert get(live.url, "/readyz")[1]["status"] == "stopping"
        assert get(live.url, "/healthz")[0] == 200
        status, headers, body = post(live.url, "/api/predict",
                                     json.dumps({"pixels": [0] * 784}).encode())
        assert status == 503 and "shutting down" in body["detail"] and "retry-after" in headers
        batch.join(120)
        status, _, body = batch.result
        assert status == 200 and len(body["predictions"]) == 60  # finished, not cut off
        assert live.process.wait(30) is not None
        assert "drain complete" in live.log()
    finally:
        live.stop()


def test_sigterm_past_the_grace_stops_the_batch_with_a_json_503(tmp_path: Path) -> None:
    live = start_server(tmp_path, MNIST_CANVAS_REQUEST_TIMEOUT_S="120",
                        MNIST_CANVAS_SHUTDOWN_GRACE_S="0.5",
                        MNIST_CANVAS_MAX_REQUEST_PIXELS="400000000")
    try:
        batch = sigterm_during_batch(live, 90)
        batch.join(60)
        assert not isinstance(batch.result, Exception), batch.result
        status, _, body = batch.result  # post() asserts every error answer is JSON
        assert status == 503 and "shutting down" in body["detail"]
        assert live.process.wait(30) is not None
        assert "Internal Server Error" not in live.log()
    finally:
        live.stop()
