"""The app's bad-input corpus (tests/app/test_bad_inputs.py) through a running stack's nginx.

scripts/deploy-check.sh runs this against the compose stack it brought up, with
MNIST_CANVAS_STACK_URL set to nginx's published address; without it there is no stack to ask
and every case is skipped. Only the cases for the default settings apply: the stack runs those.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.app.test_bad_inputs import BAD, Bad, RawResponse, _read_response, check_sentence
from tests.deploy.frontdoor import paced

STACK_URL = os.environ.get("MNIST_CANVAS_STACK_URL", "")
DEFAULT_CASES = [case for case in BAD if case.app == "default"]
# Requests that nginx refuses before the app sees them, with nginx's own sentence (status, a
# piece of it). httpx will not send a malformed Content-Length: these go through a raw socket.
NGINX_ANSWERS = {
    "content-length-not-a-number": (400, "Content-Length that is not a byte count"),
}

if not STACK_URL:
    pytest.skip("no stack to ask: scripts/deploy-check.sh runs these through nginx",
                allow_module_level=True)


@pytest.fixture(scope="module")
def front_door() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=STACK_URL, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=[case.id for case in DEFAULT_CASES])
def test_bad_request_gets_a_4xx_sentence_through_nginx(case: Bad, front_door: httpx.Client) -> None:
    if case.id in NGINX_ANSWERS:
        status, says = NGINX_ANSWERS[case.id]
        response = raw_request(case)
        check_sentence(response, status, says, case.key)
    else:
        response = paced(lambda: front_door.request(case.method, case.path, **case.build()))
        check_sentence(response, case.status, case.says, case.key)
    ready = paced(lambda: front_door.get("/readyz"))
    assert ready.status_code == 200, ready.text


def raw_request(case: Bad) -> RawResponse:
    """The case's request as bytes on a socket, headers exactly as built."""
    built = case.build()
    headers = {"Host": "front-door", "Connection": "close", **built.get("headers", {})}
    head = f"{case.method} {case.path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    port = urlsplit(STACK_URL).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + built.get("content", b""))
        response = _read_response(sock, timeout=30)
    assert response is not None, "nginx closed the connection without an answer"
    return response
