"""The app's bad-input corpus (tests/app/test_bad_inputs.py) through a running stack's nginx.

scripts/deploy-check.sh runs this against the compose stack it brought up, with
MNIST_CANVAS_STACK_URL set to nginx's published address; without it there is no stack to ask
and every case is skipped. Only the cases for the default settings apply: the stack runs those.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.app.test_bad_inputs import BAD, Bad, check_sentence

STACK_URL = os.environ.get("MNIST_CANVAS_STACK_URL", "")
DEFAULT_CASES = [case for case in BAD if case.app == "default"]

pytestmark = pytest.mark.skipif(
    not STACK_URL, reason="no stack to ask: scripts/deploy-check.sh runs these through nginx"
)


@pytest.fixture(scope="module")
def front_door() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=STACK_URL, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=[case.id for case in DEFAULT_CASES])
def test_bad_request_gets_a_4xx_sentence_through_nginx(case: Bad, front_door: httpx.Client) -> None:
    response = front_door.request(case.method, case.path, **case.build())
    check_sentence(response, case.status, case.says, case.key)
    ready = front_door.get("/readyz")
    assert ready.status_code == 200, ready.text
