"""What nginx answers itself is a JSON sentence like the app's errors, never its HTML page.

deploy/nginx.conf runs here on the host's nginx (no containers): its upstream is a port where
nothing listens (502), a body over client_max_body_size is refused (413), and the app's own
paths keep their key ("detail", or "error" under /v2). scripts/deploy-check.sh checks the same
answers, plus 504, through the real stack.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.test_bad_inputs import _read_response, check_sentence
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
RESOLVER_TEMPLATE = ROOT / "deploy" / "nginx-resolver.conf.template"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.skip("nginx is not installed (scripts/test.sh installs nginx-light)")
    return found


@pytest.fixture(scope="module")
def front_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    prefix = tmp_path_factory.mktemp("nginx")
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    conf = NGINX_CONF.read_text().replace("/tmp/", f"{prefix}/")
    conf = re.sub(r"(?m)^(\s*)listen 8080;", rf"\1listen 127.0.0.1:{port};", conf)
    conf = conf.replace("http://web:8000", f"http://127.0.0.1:{dead}")
    (prefix / "nginx.conf").write_text(conf)
    (prefix / "resolver.conf").write_text(
        RESOLVER_TEMPLATE.read_text().replace("${NGINX_LOCAL_RESOLVERS}", "127.0.0.1")
    )
    process = subprocess.Popen(
        [nginx_binary(), "-e", "stderr", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(100):
                try:
                    client.get("/lb-healthz")
                    break
                except httpx.TransportError:
                    if process.poll() is not None:
                        pytest.fail(f"nginx did not start: {process.stderr.read()}")  # type: ignore[union-attr]
                    time.sleep(0.05)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=10)


def sentence(response: httpx.Response, status: int, key: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert list(body) == [key], body
    text: str = body[key]
    assert text.endswith(".") and "nginx" not in text.lower(), text
    return text


def test_dead_upstream_is_a_json_502(front_door: httpx.Client) -> None:
    text = sentence(front_door.get("/api/model"), 502, "detail")
    assert "try again" in text


def test_dead_upstream_under_v2_says_error(front_door: httpx.Client) -> None:
    sentence(front_door.get("/v2/models/mnist-logreg/ready"), 502, "error")


def test_oversized_body_is_a_json_413(front_door: httpx.Client) -> None:
    body = b"A" * (11 * 1024 * 1024)
    text = sentence(front_door.post("/api/predict", content=body), 413, "detail")
    assert "10 MB" in text
    sentence(front_door.post("/v2/models/mnist-logreg/infer", content=body), 413, "error")


def test_nginx_own_answers_stay_plain(front_door: httpx.Client) -> None:
    # Control: the balancer's own health answer is not rewritten into an error.
    answer = front_door.get("/lb-healthz")
    assert answer.status_code == 200 and answer.text == "ok\n"


def test_malformed_http_is_a_json_400(front_door: httpx.Client) -> None:
    port = front_door.base_url.port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: two\r\n\r\n{}")
        response = _read_response(sock, timeout=10)
    assert response is not None
    assert response.headers["content-type"].startswith("application/json"), response.text
    check_sentence(response, 400, "Content-Length that is not a byte count", "detail")


@pytest.mark.parametrize("status", [400, 413, 429, 502, 503, 504])
def test_every_nginx_error_has_a_json_page(status: int) -> None:
    conf = NGINX_CONF.read_text()
    page = re.search(rf"(?m)^\s*error_page {status} (@\w+);", conf)
    assert page, f"no error_page for {status}"
    block = re.search(rf"location {page.group(1)} \{{(.*?)\n\s*\}}", conf, re.S)
    assert block and "default_type application/json;" in block.group(1)
    assert re.search(rf"return {status} '\{{\"\$error_key\": \"[^\"]+\.\"\}}", block.group(1))
