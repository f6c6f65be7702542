"""Prometheus metrics through prometheus_client, counted across every worker process.

`mnist-canvas serve` gives each server start a fresh, empty PROMETHEUS_MULTIPROC_DIR (and
removes it at exit): every worker writes its samples there, so /metrics, whichever worker
answers it, sums them all. Without that directory (`uvicorn app.main:app`, tests) the metrics
are this process's own.

Names follow the serving world: `<namespace>_requests_total` and
`_request_duration_seconds` per route template, KServe's split of a request's time into
`_request_preprocess_seconds` and `_request_predict_seconds`, `_predictions_total` per digit,
`_model_info` (the version served, 1 per worker) and `_requests_in_progress`.

To add a metric, declare it at module level (here or in your own module) with the namespace:

    REJECTED = Counter("rejected", "Requests refused ...", ["reason"], namespace=NAMESPACE)
    REJECTED.labels(reason="queue_full").inc()

(a Counter's name gains `_total`). A Gauge needs a `multiprocess_mode`: "livesum" for values
that leave with their worker, "liveall" to see each worker (a `pid` label).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # no `_created` series beside every counter and histogram
NAMESPACE = "mnist_canvas"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REQUESTS = Counter("requests", "HTTP requests by route template, method and status.",
                   ["route", "method", "status"], namespace=NAMESPACE)
LATENCY = Histogram("request_duration_seconds", "HTTP request latency by route template.",
                    ["route"], namespace=NAMESPACE, buckets=BUCKETS)
IN_PROGRESS = Gauge("requests_in_progress", "HTTP requests being answered now.",
                    namespace=NAMESPACE, multiprocess_mode="livesum")
PREPROCESS = Histogram(
    "request_preprocess_seconds",
    "Per request: turning what the client sent into 28x28 MNIST-form digits (decoding, ink, "
    "stroke, placement); observed for requests that preprocess.",
    namespace=NAMESPACE, buckets=BUCKETS,
)
PREDICT = Histogram(
    "request_predict_seconds",
    "Per request: the model on its input (its input transforms and the forward pass).",
    namespace=NAMESPACE, buckets=BUCKETS,
)
PREDICTIONS = Counter("predictions", "Predictions answered, by digit.", ["digit"],
                      namespace=NAMESPACE)
MODEL_INFO = Gauge("model_info", "The model version each worker serves (1).",
                   ["model_version"], namespace=NAMESPACE, multiprocess_mode="liveall")
# Every digit shows, at 0 until predicted; the children are kept (a labels() lookup is 2 µs).
DIGIT_COUNTERS = tuple(PREDICTIONS.labels(digit=str(digit)) for digit in range(10))


@dataclass(slots=True)
class _Timings:
    preprocess: float = 0.0
    predict: float = 0.0


# The request being answered: its seconds in each stage, observed once at its end. A mutable
# object in a context variable reaches the thread pool (anyio copies the context to it).
_TIMINGS: ContextVar[_Timings | None] = ContextVar("mnist_canvas_timings", default=None)
P = ParamSpec("P")
R = TypeVar("R")
Stage = Literal["preprocess", "predict"]


@contextmanager
def timed(stage: Stage) -> Iterator[None]:
    """Add the time inside to the current request's `stage` (nothing outside a request)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _add(stage, time.perf_counter() - started)


def _add(stage: Stage, seconds: float) -> None:
    timings = _TIMINGS.get()
    if timings is not None:
        setattr(timings, stage, getattr(timings, stage) + seconds)


def timed_function(stage: Stage) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of `timed`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()  # inline, not `timed`: called per item of a batch
            try:
                return function(*args, **kwargs)
            finally:
                _add(stage, time.perf_counter() - started)

        return wrapper

    return decorate


class Registry:
    """The app's handle on the metrics (`app.state.registry`, `serving.registry` in routes)."""

    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._version: str | None = None
        mine = f"_{os.getpid()}.db"
        if multiprocess_dir is not None and not any(
            path.name.endswith(mine) for path in multiprocess_dir.glob("*.db")
        ):
            # prometheus_client chooses where values live when it is imported: imported before
            # the variable was set, this process would count in memory and /metrics miss it.
            raise RuntimeError(
                f"PROMETHEUS_MULTIPROC_DIR is {multiprocess_dir}, but this process writes no "
                "metrics there: set it before prometheus_client is imported."
            )

    def count_digits(self, digits: Iterable[int]) -> None:
        # One increment per digit seen (a file write each in multiprocess mode), not per item.
        for digit, n in collections.Counter(digits).items():
            DIGIT_COUNTERS[digit].inc(n)

    def serving(self, version: str | None) -> None:
        """Say which model version this worker serves now (cheap when it has not changed)."""
        if version == self._version:
            return
        if self._version is not None:
            MODEL_INFO.labels(model_version=self._version).set(0)
        if version is not None:
            MODEL_INFO.labels(model_version=version).set(1)
        self._version = version

    def render(self) -> tuple[bytes, str]:
        """The exposition text (every worker's samples in multiprocess mode) and its type."""
        if self.multiprocess_dir is None:
            return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def worker_exit(self) -> None:
        """Drop this worker's live gauges (in progress, model info) from the shared numbers."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), path=str(self.multiprocess_dir))


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by its route template (never the raw path),
    with the request's preprocessing and model time.

    A request is counted when its answer starts (a client that has its answer finds it
    counted, whichever worker it asks next), or at its end when no answer was started.
    """

    def __init__(self, app: ASGIApp, *, registry: Registry,
                 model_version: Callable[[], str | None]) -> None:
        self.app = app
        self.registry = registry
        self.model_version = model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        timings = _Timings()
        token = _TIMINGS.set(timings)
        counted = False

        async def send_wrapper(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                count(scope, message["status"], timings)
            await send(message)

        self.registry.serving(self.model_version())  # before: a scrape shows its own worker
        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            IN_PROGRESS.dec()
            _TIMINGS.reset(token)
            if not counted:
                count(scope, 500, timings)
            LATENCY.labels(route=route_label(scope)).observe(time.perf_counter() - started)


def route_label(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    return "static" if scope["path"].startswith("/static/") else "unmatched"


def count(scope: Scope, status: int, timings: _Timings) -> None:
    REQUESTS.labels(route=route_label(scope), method=scope["method"], status=str(status)).inc()
    if timings.preprocess:
        PREPROCESS.observe(timings.preprocess)
    if timings.predict:
        PREDICT.observe(timings.predict)
