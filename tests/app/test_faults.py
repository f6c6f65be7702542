"""Faults outside the request path: killed training, corrupt model files, broken downloads,
and a model location that cannot be written.

Servers and trainers run as real subprocesses (`python -m app.cli ...`) on 127.0.0.1 with free
ports, bounded timeouts, and are always stopped. Their output is collected through a pipe so a
test can wait for a line ("an epoch finished") and assert on what an operator would read.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from benchmarks.common import stop_process
from model.checkpoint import load_checkpoint
from model.data import FILES, MnistDataError, load_mnist

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
START_TIMEOUT_S = 60.0
TRAIN_TIMEOUT_S = 180.0
STARTUP_DONE = re.compile(r"Application startup (complete|failed)")
# The first row of the epoch table ("    0   0.383900   0.303102    0.9150"), printed by the
# trainer or logged by the server ("... INFO app.service: train:     0   0.38 ...").
EPOCH_LINE = re.compile(r"(?:^|train: )\s*0\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+\s*$", re.M)


# --------------------------------------------------------------------------- subprocesses


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A subprocess whose combined output is collected by a thread, always stopped on exit."""

    def __init__(self, args: list[str], env: dict[str, str],
                 preexec: Callable[[], None] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=preexec,
        )
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._chunks.append(line.decode("utf-8", "replace"))

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def tail(self, n: int = 3000) -> str:
        return self.output[-n:]

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern.search(self.output):
                return True
            if self.proc.poll() is not None:
                self._reader.join(2)
                return bool(pattern.search(self.output))
            time.sleep(0.05)
        return False

    def wait_exit(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return code

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(5)

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self._reader.join(5)


def _env(model_path: Path, data_dir: Path, train_on_start: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MNIST_CANVAS_MODEL_PATH": str(model_path),
        "MNIST_CANVAS_DATA_DIR": str(data_dir),
        "MNIST_CANVAS_DOWNLOAD": "false",
        "MNIST_CANVAS_TRAIN_ON_START": train_on_start,
        "MNIST_CANVAS_DEVICE": "cpu",
        "MNIST_CANVAS_TORCH_THREADS": "1",
        "MNIST_CANVAS_LOG_LEVEL": "info",
        **extra,
    }


class Server(Proc):
    """`mnist-canvas serve` on a free port."""

    def __init__(self, model_path: Path, data_dir: Path, train_on_start: str,
                 preexec: Callable[[], None] | None = None) -> None:
        self.port = _free_port()
        env = _env(model_path, data_dir, train_on_start, MNIST_CANVAS_HOST="127.0.0.1",
                   MNIST_CANVAS_PORT=str(self.port))
        super().__init__(["-m", "app.cli", "serve"], env, preexec)

    def get(self, path: str, body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read() or b"null")

    def poll_ready(self, until: Callable[[int, Any], bool], timeout: float) -> tuple[int, Any]:
        """GET /readyz until `until(status, body)` holds; fails the test on exit or timeout."""
        deadline = time.monotonic() + timeout
        last: tuple[int, Any] = (0, None)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                last = self.get("/readyz")
            except OSError:
                last = (0, None)
            if last[0] and until(*last):
                return last
            time.sleep(0.2)
        pytest.fail(f"/readyz never satisfied the condition (last {last}):\n{self.tail()}")


@pytest.fixture
def servers() -> Iterator[list[Proc]]:
    """Every process a test starts goes here and is stopped however the test ends."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()


def _leftovers(model_path: Path) -> list[str]:
    """Files beside the model other than the model and its lock file."""
    if not model_path.parent.exists():
        return []
    allowed = {model_path.name, model_path.name + ".lock"}
    return sorted(p.name for p in model_path.parent.iterdir() if p.name not in allowed)


def _ready(status: int, body: Any) -> bool:
    return status == 200


def _assert_serves(server: Server) -> None:
    status, body = server.get("/api/predict", json.dumps({"pixels": [0] * 784}).encode())
    assert status == 200 and 0 <= body["digit"] <= 9, body


# --------------------------------------------------------------------------- (a) killed training


def _kill_mid_training(proc: Proc, model_path: Path) -> None:
    """kill -9 a process that is training into `model_path`; nothing half-written may remain."""
    proc.kill9()
    assert "saved " not in proc.output, "training finished before the kill; nothing was tested"
    assert not model_path.exists(), "a killed training run left a model file"
    assert _leftovers(model_path) == [], "a killed training run left temporary files"


@pytest.mark.slow
def test_killed_cli_training_leaves_no_model_and_the_next_start_trains(
    data_dir: Path, tmp_path: Path, servers: list[Proc]
) -> None:
    model_path = tmp_path / "models" / "model.safetensors"
    trainer = Proc(["-m", "app.cli", "train", "--data-dir", str(data_dir), "--no-download",
                    "--device", "cpu", "--threads", "1", "--out", str(model_path)],
                   _env(model_path, data_dir, "never"))
    servers.append(trainer)
    assert trainer.wait_for(EPOCH_LINE, TRAIN_TIMEOUT_S), f"no epoch finished:\n{trainer.tail()}"
    _kill_mid_training(trainer, model_path)

    server = Server(model_path, data_dir, "missing")
    servers.append(server)
    status, body = server.poll_ready(_ready, TRAIN_TIMEOUT_S)
    assert body["status"] == "ready"
    assert load_checkpoint(model_path).model_version == body["model_version"]
    _assert_serves(server)
    assert _leftovers(model_path) == []


@pytest.mark.slow
def test_killed_server_training_leaves_no_model_and_a_restart_recovers(
    data_dir: Path, tmp_path: Path, servers: list[Proc]
) -> None:
    model_path = tmp_path / "models" / "model.safetensors"
    first = Server(model_path, data_dir, "missing")
    servers.append(first)
    first.poll_ready(lambda s, b: s == 503 and b.get("status") == "training", START_TIMEOUT_S)
    assert first.wait_for(EPOCH_LINE, TRAIN_TIMEOUT_S), f"no epoch finished:\n{first.tail()}"
    _kill_mid_training(first, model_path)

    # The .lock file of the killed trainer may still be there: it must not block the next one.
    second = Server(model_path, data_dir, "missing")
    servers.append(second)
    status, body = second.poll_ready(_ready, TRAIN_TIMEOUT_S)
    assert load_checkpoint(model_path).model_version == body["model_version"]
    _assert_serves(second)


# --------------------------------------------------------------------------- (b) corrupt model


def _truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _not_safetensors(raw: bytes) -> bytes:
    return b"this is not a model\n" * 100


def _flip_in_tensor(raw: bytes, name: str) -> bytes:
    """One byte in the middle of tensor `name` changed; the safetensors header is intact."""
    size = int.from_bytes(raw[:8], "little")
    start, end = json.loads(raw[8 : 8 + size])[name]["data_offsets"]
    data = bytearray(raw)
    data[8 + size + (start + end) // 2] ^= 0x40
    return bytes(data)


def _tampered_weights(raw: bytes) -> bytes:
    return _flip_in_tensor(raw, "weight")


def _tampered_gallery(raw: bytes) -> bytes:
    """Bit rot in the stored gallery of misclassified digits (served on the model page)."""
    return _flip_in_tensor(raw, "gallery_true")


def _empty(raw: bytes) -> bytes:
    return b""


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (_truncated, "truncated"),
    "not-safetensors": (_not_safetensors, "truncated or not a safetensors file"),
    "tampered-weights": (_tampered_weights, "altered or corrupted"),
    "tampered-gallery": (_tampered_gallery, "altered or corrupted"),
    "empty-file": (_empty, "too short"),
}


@pytest.fixture(scope="module")
def good_model_bytes(request: pytest.FixtureRequest) -> bytes:
    if SHIPPED_MODEL.exists():
        return SHIPPED_MODEL.read_bytes()
    path: Path = request.getfixturevalue("default_model_path")
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_model_file_stops_the_server_with_a_clear_error(
    kind: str, good_model_bytes: bytes, tmp_path: Path, servers: list[Proc]
) -> None:
    corrupt, says = CORRUPTIONS[kind]
    model_path = tmp_path / "model.safetensors"
    model_path.write_bytes(corrupt(good_model_bytes))
    server = Server(model_path, tmp_path / "no-data", "missing")
    servers.append(server)
    server.wait_for(STARTUP_DONE, START_TIMEOUT_S)
    code = server.wait_exit(3)
    assert code is not None, f"the server kept running on a corrupt model:\n{server.tail()}"
    assert code != 0, f"exit status 0 on a corrupt model:\n{server.tail()}"
    lines = [ln for ln in server.output.splitlines() if str(model_path) in ln]
    assert lines, f"no message names {model_path}:\n{server.tail()}"
    assert any(says in ln and "TRAIN_ON_START=always" in ln for ln in lines), "\n".join(lines)
    assert model_path.read_bytes() == corrupt(good_model_bytes), "the file was changed"


@pytest.mark.slow
def test_missing_model_with_training_off_stops_the_server_naming_the_file(
    tmp_path: Path, servers: list[Proc]
) -> None:
    model_path = tmp_path / "absent.safetensors"
    server = Server(model_path, tmp_path / "no-data", "never")
    servers.append(server)
    server.wait_for(STARTUP_DONE, START_TIMEOUT_S)
    code = server.wait_exit(10)
    assert code not in (None, 0), server.tail()
    assert f"No model at {model_path}" in server.output, server.tail()


@pytest.mark.slow
def test_corrupt_model_file_with_train_always_is_replaced_and_served(
    good_model_bytes: bytes, data_dir: Path, tmp_path: Path, servers: list[Proc]
) -> None:
    model_path = tmp_path / "model.safetensors"
    model_path.write_bytes(_truncated(good_model_bytes))
    server = Server(model_path, data_dir, "always")
    servers.append(server)
    status, body = server.poll_ready(_ready, TRAIN_TIMEOUT_S)
    assert load_checkpoint(model_path).model_version == body["model_version"]
    _assert_serves(server)
    assert _leftovers(model_path) == []


# --------------------------------------------------------------------------- (c) downloads


LABELS = FILES["test_labels"]  # the smallest file (4.5 KB gzipped): the one that is fetched


class Mirror:
    """A local HTTP mirror of the MNIST .gz files; the first path segment picks a behaviour.

    ok: the file. drop-length: Content-Length of the whole file, half of it, then the
    connection is closed. drop-chunked: chunked encoding, cut inside a chunk. drop-close: no
    length, half the file, close (a silently short body). flip-crc / flip-deflate: one byte
    changed so that gzip's CRC or the deflate stream fails. wrong-data: a valid gzip of
    different bytes (only the checksum can tell). flaky: drop-length on the first request for
    a file, ok afterwards.
    """

    def __init__(self, source: Path) -> None:
        self.source = source
        self.requests: Counter[str] = Counter()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                mirror.requests[self.path] += 1
                _, kind, name = self.path.split("/", 2)
                path = mirror.source / name
                if not path.is_file():
                    self.send_error(404)
                    return
                payload = path.read_bytes()
                if kind == "flaky":
                    kind = "drop-length" if mirror.requests[self.path] == 1 else "ok"
                mirror.respond(self, kind, payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{kind}/"

    @staticmethod
    def respond(handler: http.server.BaseHTTPRequestHandler, kind: str, payload: bytes) -> None:
        half = payload[: len(payload) // 2]
        if kind == "flip-crc":
            payload = _flip(payload, gzip.BadGzipFile)
        elif kind == "flip-deflate":
            payload = _flip(payload, zlib.error)
        elif kind == "wrong-data":
            raw = bytearray(gzip.decompress(payload))
            raw[-1] = (raw[-1] + 1) % 10
            payload = gzip.compress(bytes(raw))
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if kind == "drop-chunked":
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(f"{len(payload):x}\r\n".encode() + half)
        elif kind == "drop-close":
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(half)
        elif kind == "drop-length":
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(half)
        else:
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _flip(payload: bytes, error: type[Exception]) -> bytes:
    """`payload` with the first single-byte change (past the gzip header) that makes
    gzip.decompress raise exactly `error`."""
    for offset in range(10, len(payload) - 8):
        data = bytearray(payload)
        data[offset] ^= 0xFF
        try:
            gzip.decompress(bytes(data))
        except Exception as exc:  # noqa: BLE001 - looking for one type
            if type(exc) is error:
                return bytes(data)
    raise AssertionError(f"no single-byte change makes gzip raise {error.__name__}")


@pytest.fixture
def mirror(data_dir: Path) -> Iterator[Mirror]:
    if not (data_dir / f"{LABELS.name}.gz").exists():
        pytest.skip(f"{data_dir} holds no .gz files to serve")
    server = Mirror(data_dir)
    yield server
    server.close()


@pytest.fixture
def cache(data_dir: Path, tmp_path: Path) -> Path:
    """A data directory that holds the three other files (linked) and lacks the labels."""
    directory = tmp_path / "cache"
    directory.mkdir()
    for spec in FILES.values():
        if spec is not LABELS:
            (directory / f"{spec.name}.gz").symlink_to(data_dir / f"{spec.name}.gz")
    return directory


def _no_partial_files(directory: Path) -> None:
    stray = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert stray == [], f"temporary files left behind: {stray}"


BROKEN = ["drop-length", "drop-chunked", "drop-close", "flip-crc", "flip-deflate", "wrong-data"]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_download_falls_back_to_the_next_mirror(
    kind: str, mirror: Mirror, cache: Path
) -> None:
    data = load_mnist(cache, download=True, mirrors=(mirror.url(kind), mirror.url("ok")))
    assert data.test_labels[:3].tolist() == [7, 2, 1]
    assert mirror.requests[f"/{kind}/{LABELS.name}.gz"] == 1
    assert mirror.requests[f"/ok/{LABELS.name}.gz"] == 1
    _no_partial_files(cache)


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_download_with_no_good_mirror_is_a_clear_error(
    kind: str, mirror: Mirror, cache: Path
) -> None:
    url = mirror.url(kind)
    with pytest.raises(MnistDataError) as info:
        load_mnist(cache, download=True, mirrors=(url,))
    message = str(info.value)
    assert f"Could not download {LABELS.name}" in message and url in message, message
    assert str(cache) in message, message
    assert not (cache / f"{LABELS.name}.gz").exists()
    _no_partial_files(cache)


def test_a_transfer_cut_off_once_is_fetched_again(mirror: Mirror, cache: Path) -> None:
    url = mirror.url("flaky")
    data = load_mnist(cache, download=True, mirrors=(url, url))
    assert data.test_labels[:3].tolist() == [7, 2, 1]
    assert mirror.requests[f"/flaky/{LABELS.name}.gz"] == 2


CACHED: dict[str, Callable[[bytes], tuple[str, bytes]]] = {
    # (file name in the cache, content) made from the canonical .gz
    "truncated-gz": lambda gz: (f"{LABELS.name}.gz", gz[: len(gz) // 3]),
    "gz-crc-error": lambda gz: (f"{LABELS.name}.gz", _flip(gz, gzip.BadGzipFile)),
    "gz-deflate-error": lambda gz: (f"{LABELS.name}.gz", _flip(gz, zlib.error)),
    "plain-one-label-changed": lambda gz: (
        LABELS.name, gzip.decompress(gz)[:-1] + bytes([(gzip.decompress(gz)[-1] + 1) % 10])),
    "plain-truncated": lambda gz: (LABELS.name, gzip.decompress(gz)[:5000]),
}


@pytest.mark.parametrize("kind", list(CACHED))
def test_a_corrupt_cached_file_is_detected_and_fetched_again(
    kind: str, mirror: Mirror, cache: Path, data_dir: Path
) -> None:
    canonical = (data_dir / f"{LABELS.name}.gz").read_bytes()
    name, content = CACHED[kind](canonical)
    (cache / name).write_bytes(content)
    data = load_mnist(cache, download=True, mirrors=(mirror.url("ok"),))
    assert data.test_labels[:3].tolist() == [7, 2, 1]
    assert (cache / f"{LABELS.name}.gz").read_bytes() == canonical
    assert mirror.requests[f"/ok/{LABELS.name}.gz"] == 1
    _no_partial_files(cache)


# --------------------------------------------------------------------------- (d) unwritable


def _readyz_reports(server: Server, fragment: str) -> str:
    """Wait for /readyz to say "failed"; its detail must mention `fragment`."""
    status, body = server.poll_ready(lambda s, b: b.get("status") == "failed", TRAIN_TIMEOUT_S)
    assert status == 503, body
    detail = body.get("detail")
    assert isinstance(detail, str) and fragment in detail, body
    return detail


def _is_a_sentence_for_an_operator(detail: str) -> None:
    assert detail.rstrip().endswith("."), f"not a sentence: {detail!r}"
    assert "[Errno" not in detail, f"a raw OS error, not a sentence: {detail!r}"


def _still_alive_and_saying_so(server: Server, detail: str) -> None:
    assert server.proc.poll() is None, "the server exited"
    assert server.get("/healthz")[0] == 200
    status, body = server.get("/api/predict", json.dumps({"pixels": [0] * 784}).encode())
    assert status == 503 and body.get("detail") == detail, body
    assert server.get("/v2/health/ready")[0] == 503


@pytest.mark.slow
def test_model_path_under_a_regular_file_fails_readiness_not_the_server(
    tmp_path: Path, data_dir: Path, servers: list[Proc]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where a directory is needed\n")
    model_path = blocker / "models" / "model.safetensors"
    server = Server(model_path, data_dir, "missing")
    servers.append(server)
    detail = _readyz_reports(server, str(blocker))
    assert "ERROR" in server.output and str(blocker) in server.output, server.tail()
    _still_alive_and_saying_so(server, detail)
    _is_a_sentence_for_an_operator(detail)


def _limit_file_size(pid: int) -> None:
    """Files of process `pid` may not grow past 32 KiB (a checkpoint is ~54 KB): a full disk.

    Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    """
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))


@pytest.mark.slow
def test_a_full_disk_while_saving_fails_readiness_not_the_server(
    tmp_path: Path, data_dir: Path, servers: list[Proc]
) -> None:
    model_path = tmp_path / "models" / "model.safetensors"
    model_path.parent.mkdir()
    # The disk fills once the server runs (its metrics files are 1 MiB each, written at
    # start): the trainer waits on its lock, held here, until the limit is set.
    with FileLock(str(model_path) + ".lock"):
        server = Server(model_path, data_dir, "missing")
        servers.append(server)
        server.poll_ready(lambda s, b: b.get("status") == "training", TRAIN_TIMEOUT_S)
        _limit_file_size(server.proc.pid)
    detail = _readyz_reports(server, f"cannot write the model to {model_path}")
    assert "free space" in detail, detail
    assert "ERROR" in server.output and str(model_path) in server.output, server.tail()
    assert not model_path.exists()
    assert _leftovers(model_path) == [], "a failed save left temporary files"
    _still_alive_and_saying_so(server, detail)
    _is_a_sentence_for_an_operator(detail)

