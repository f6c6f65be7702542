"""The worker processes (app/workers.py) seen from outside a real server (a live `mnist-canvas
serve`): the work runs in niced processes of the server's process tree, a killed worker costs its
request a JSON 503 and the next one succeeds, and errors crossing the process boundary keep their
sentences. Observed through /proc (pids, niceness, CPU ticks) and HTTP, never wall-clock times.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from benchmarks.hostile import dots_webp
from benchmarks.servers import process_tree
from tests.app.test_hostile import Background, batch_of, get, post, start_server
from tests.live import LiveServer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (REPO / "models" / "mnist-logreg.safetensors").exists(),
                                reason="no shipped model")


def stat(pid: int) -> tuple[int, int]:
    """(niceness, CPU ticks used) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16]), int(fields[11]) + int(fields[12])


def workers(server: LiveServer) -> dict[int, int]:
    """The server's niced worker processes (below it: the fork server, then the workers):
    {pid: CPU ticks used}."""
    assert server.process is not None
    out = {}
    for pid in process_tree(server.process.pid)[1:]:
        try:
            nice, ticks = stat(pid)
        except OSError:
            continue  # exited meanwhile
        if nice == 10:
            out[pid] = ticks
    return out


def digit_png(side: int) -> bytes:
    """A large drawing of a 1 (more pixels than the event loop decodes itself)."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line([(side // 2, side // 6), (side // 2, 5 * side // 6)], fill=0,
                               width=side // 12)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("workers"), MNIST_CANVAS_REQUEST_TIMEOUT_S="60",
                        MNIST_CANVAS_QUEUE_WAIT_S="30",
                        MNIST_CANVAS_MAX_REQUEST_PIXELS="400000000")
    yield live
    live.stop()


def test_images_are_decoded_in_niced_worker_processes(server: LiveServer) -> None:
    before = workers(server)
    assert len(before) == len(os.sched_getaffinity(0))  # one per usable core, niceness 10
    status, _, body = post(server.url, "/api/predict", digit_png(1200), "image/png")
    assert status == 200 and body["digit"] in range(10)
    after = workers(server)
    assert after.keys() == before.keys()
    assert sum(after.values()) > sum(before.values())  # the decoding's CPU went to a worker


def test_a_lone_batch_of_raw_pixels_is_read_in_the_server_and_rows_in_workers(
        server: LiveServer) -> None:
    flat = json.dumps({"pixels": [[(i * 7) % 256 for i in range(784)]] * 1000}).encode()
    rows = json.dumps({"pixels": [[[(i * 7) % 256 for i in range(28)]] * 28] * 1000}).encode()
    before = workers(server)
    for _ in range(4):  # one at a time: the only heavy work, read in a thread of the server
        status, _, body = post(server.url, "/api/predict/batch", flat)
        assert status == 200 and len(body["predictions"]) == 1000
    between = workers(server)
    for _ in range(4):  # 28 rows of 28: the exact path, parsed in a worker process
        status, _, body = post(server.url, "/api/predict/batch", rows)
        assert status == 200 and len(body["predictions"]) == 1000
    after = workers(server)
    # Reading 3.5 MB in a worker costs about 10 ms (a tick) each time; 5 MB of rows, 50 ms.
    assert sum(between.values()) - sum(before.values()) <= 1
    assert sum(after.values()) - sum(between.values()) >= 4


def test_errors_cross_the_process_boundary_with_their_sentences(server: LiveServer) -> None:
    # A large JSON body is read in a worker: its errors are the same 4xx sentences.
    pad = " " * 100_000
    status, _, body = post(server.url, "/api/predict",
                           f'{{"pixels": {[300] * 784}{pad}}}'.encode())
    assert status == 422 and "between 0 and 255" in body["detail"]
    status, _, body = post(server.url, "/api/predict", b'{"pixels": [1, 2' + pad.encode())
    assert status == 400 and "not valid JSON" in body["detail"]
    # A heavy batch's items are decoded in workers; a bad one is answered in its place.
    payload = json.loads(batch_of(dots_webp(1024), 3))
    payload["images"].insert(1, "data:image/png;base64,AAAA")
    status, _, body = post(server.url, "/api/predict/batch", json.dumps(payload).encode())
    assert status == 200
    codes = [(p.get("status"), p.get("code")) for p in body["predictions"]]
    assert codes == [(422, "empty_drawing"), (415, "undecodable_image"),
                     (422, "empty_drawing"), (422, "empty_drawing")]


def test_a_killed_worker_answers_a_json_503_and_the_pool_is_replaced(
        server: LiveServer) -> None:
    before = workers(server)
    batch = Background(server.url, "/api/predict/batch", batch_of(dots_webp(2048), 60))
    batch.start()
    victim = None
    end = time.monotonic() + 60
    while victim is None and batch.is_alive() and time.monotonic() < end:
        now = workers(server)
        busy = [pid for pid, ticks in now.items() if ticks > before.get(pid, ticks)]
        victim = busy[0] if busy else None
        time.sleep(0.02)
    assert victim is not None, "no worker was seen working on the batch"
    os.kill(victim, signal.SIGKILL)
    batch.join(60)
    status, headers, body = batch.result
    assert status == 503 and {k.lower(): v for k, v in headers.items()}["retry-after"] == "1"
    assert "worker process stopped" in body["detail"]
    # The next request is served by a new pool.
    status, _, body = post(server.url, "/api/predict", digit_png(1200), "image/png")
    assert status == 200 and body["digit"] in range(10)
    assert victim not in workers(server)
    assert get(server.url, "/healthz")[0] == 200


def test_a_killed_server_leaves_no_worker_process_behind(tmp_path: Path) -> None:
    # A worker's parent is the fork server, and the pipes it reads hold it up: it watches the
    # server's pid instead, so a server killed outright (out of memory) takes its pool along.
    live = start_server(tmp_path)
    try:
        assert live.process is not None
        tree = process_tree(live.process.pid)
        assert len(workers(live)) >= 1 and len(tree) >= 3  # fork server, workers
        live.process.send_signal(signal.SIGKILL)
        live.process.wait(30)
        end = time.monotonic() + 30
        while (left := [p for p in tree if Path(f"/proc/{p}").exists()]) and \
                time.monotonic() < end:
            time.sleep(0.1)
        assert left == []
    finally:
        live.stop()
