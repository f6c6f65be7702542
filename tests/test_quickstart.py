"""A newcomer's path: clone the repository, run the README's run command, get a prediction."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live import free_port, get_json

REPO = Path(__file__).resolve().parents[1]


def start(clone: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNIST_CANVAS_", "VIRTUAL"))}
    env["MNIST_CANVAS_DOWNLOAD"] = "false"
    return subprocess.Popen(["./scripts/run.sh", "--port", str(port)], cwd=clone, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run.sh exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if get_json(url + "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_fresh_clone_runs_the_app_with_the_readme_command(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "mnist-canvas"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    log = tmp_path / "run.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(clone, port, log)
    try:
        wait_ready(proc, url, log, timeout=900)  # first run: creates .venv and installs
    finally:
        stop(proc)
    stamp = clone / ".venv" / ".mnist-canvas-installed"
    installed_at = stamp.stat().st_mtime

    proc = start(clone, port, log)  # second run: nothing to install
    try:
        wait_ready(proc, url, log, timeout=120)
        one = [[0] * 28] * 10 + [[0] * 12 + [255] * 4 + [0] * 12] * 8 + [[0] * 28] * 10
        request = urllib.request.Request(
            url + "/api/predict", data=json.dumps({"pixels": one}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert 0 <= body["digit"] <= 9 and len(body["probabilities"]) == 10
        page = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert "<canvas" in page
    finally:
        stop(proc)
    assert stamp.stat().st_mtime == installed_at
