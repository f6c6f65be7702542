"""benchmarks/loadgen.py: the raw HTTP/1.1 client, its requests and what it counts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.loadgen import (
    LoadResult,
    build_request,
    json_request,
    multipart_request,
    read_response,
    run_load,
)


def test_load_results_merge_and_count_failures() -> None:
    a = LoadResult(kinds={"x": [0.001, 0.002]}, statuses={"x": {200: 2, 503: 1}},
                   errors={"x": 1}, started=10.0, finished=11.0)
    b = LoadResult(kinds={"x": [0.003]}, statuses={"x": {200: 1}}, timeouts={"x": 2},
                   started=10.5, finished=12.0)
    a.merge(b)
    assert a.total() == 3 + 1 + 1 + 2
    assert a.failures() == 1 + 1 + 2
    summary = a.summary("x")
    assert summary["ok"] == 3 and summary["non_2xx"] == 1 and summary["timeouts"] == 2
    assert a.seconds == pytest.approx(2.0)


def _parse(raw: bytes) -> tuple[int, int, bool]:
    async def go() -> tuple[int, int, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_response(reader)

    # In a thread of its own: a session-wide Playwright browser keeps a loop running here.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def test_read_response_handles_length_chunked_and_close() -> None:
    assert _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == (200, 5, False)
    chunked = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert _parse(chunked) == (201, 5, False)
    closing = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert _parse(closing) == (503, 0, True)


def test_requests_are_well_formed_http() -> None:
    get = build_request("h", "GET", "/healthz").raw
    assert get.startswith(b"GET /healthz HTTP/1.1\r\n") and get.endswith(b"\r\n\r\n")
    post = json_request("p", "/api/predict", {"pixels": [0] * 3}).raw
    head, _, body = post.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head and body == b'{"pixels":[0,0,0]}'
    upload = multipart_request("u", "/api/predict", "file", "d.png", b"PNGDATA", "image/png").raw
    assert b'name="file"; filename="d.png"' in upload and b"PNGDATA" in upload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"status":"ok"}' if self.path == "/ok" else b"{}"
        self.send_response(200 if self.path == "/ok" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def tiny_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_load_generator_counts_answers_and_stops_at_its_budget(tiny_server: int) -> None:
    requests = [build_request("ok", "GET", "/ok"), build_request("missing", "GET", "/nope")]
    result, _cpu = run_load(tiny_server, requests, concurrency=4, max_requests=60,
                            max_seconds=20, processes=2)
    assert result.total() == 60
    assert result.statuses["ok"] == {200: 30} and result.statuses["missing"] == {404: 30}
    assert result.failures() == 30 and result.failures("ok") == 0
    assert len(result.kinds["ok"]) == 30
