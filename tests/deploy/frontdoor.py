"""Requests through a stack's nginx that wait out its per-client rate limit.

nginx refuses a client that sends faster than its limit_req allows (429, from the
hostile-traffic configuration). The deployment checks send faster than one person would, and
the limit is not what they test: they pause and send again, as a polite client does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

RATE_LIMITED = 429


def paced(send: Callable[[], httpx.Response], attempts: int = 20) -> httpx.Response:
    """`send()`, again after half a second while nginx answers 429."""
    response = send()
    for _ in range(attempts - 1):
        if response.status_code != RATE_LIMITED:
            break
        time.sleep(0.5)
        response = send()
    return response
