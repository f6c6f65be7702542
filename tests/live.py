"""A real server process for tests: `mnist-canvas serve` on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import stop_process

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class LiveServer:
    """Start `mnist-canvas serve` with settings from `env`; stop it on exit.

    `model_path=None` serves the default (the shipped model); `command` and `cwd` run another
    installation's `mnist-canvas` from another directory (the wheel test).
    """

    def __init__(self, *, model_path: Path | None, data_dir: Path, workers: int = 1,
                 log_path: Path | None = None, command: Sequence[str] | None = None,
                 cwd: Path = REPO, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "MNIST_CANVAS_MODEL_PATH"},
            **({"MNIST_CANVAS_MODEL_PATH": str(model_path)} if model_path else {}),
            "MNIST_CANVAS_DATA_DIR": str(data_dir),
            "MNIST_CANVAS_DOWNLOAD": "false",
            "MNIST_CANVAS_TORCH_THREADS": "1",
            "MNIST_CANVAS_DEVICE": "cpu",
            **env,
        }
        self.args = [*(command or (sys.executable, "-m", "app.cli")), "serve",
                     "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                status, body = get_json(self.url + "/readyz", timeout=2)
                if status == 200:
                    return dict(body)
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
