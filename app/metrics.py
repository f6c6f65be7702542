"""Prometheus text metrics without a dependency: requests and latency per route and status,
predictions per digit. Counters live in this process (one set per worker)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.predictions: list[int] = [0] * 10
        self.model_reloads = {True: 0, False: 0}  # hot reloads done / refused (app.rollout)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, status)] += 1
            buckets = self.latency_buckets[route]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self.latency_sum[route] += seconds
            self.latency_count[route] += 1

    def count_digits(self, digits: list[int]) -> None:
        with self._lock:
            for d in digits:
                self.predictions[d] += 1

    def count_model_reload(self, *, ok: bool) -> None:
        with self._lock:
            self.model_reloads[ok] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP mnist_canvas_requests_total HTTP requests by route, method and status.",
                "# TYPE mnist_canvas_requests_total counter",
            ]
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(
                    f'mnist_canvas_requests_total{{route="{route}",method="{method}",'
                    f'status="{status}"}} {n}'
                )
            lines += [
                "# HELP mnist_canvas_request_duration_seconds Request latency by route.",
                "# TYPE mnist_canvas_request_duration_seconds histogram",
            ]
            for route in sorted(self.latency_count):
                for bound, n in zip(BUCKETS, self.latency_buckets[route], strict=True):
                    lines.append(
                        f'mnist_canvas_request_duration_seconds_bucket{{route="{route}",'
                        f'le="{bound}"}} {n}'
                    )
                count = self.latency_count[route]
                lines.append(
                    f'mnist_canvas_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} '
                    f"{count}"
                )
                lines.append(
                    f'mnist_canvas_request_duration_seconds_sum{{route="{route}"}} '
                    f"{self.latency_sum[route]:.6f}"
                )
                lines.append(
                    f'mnist_canvas_request_duration_seconds_count{{route="{route}"}} {count}'
                )
            lines += [
                "# HELP mnist_canvas_predictions_total Predictions answered, by digit.",
                "# TYPE mnist_canvas_predictions_total counter",
            ]
            for d, n in enumerate(self.predictions):
                lines.append(f'mnist_canvas_predictions_total{{digit="{d}"}} {n}')
            lines += [
                "# HELP mnist_canvas_model_reloads_total New model versions swapped in.",
                "# TYPE mnist_canvas_model_reloads_total counter",
                f"mnist_canvas_model_reloads_total {self.model_reloads[True]}",
                "# HELP mnist_canvas_model_reload_failures_total Versions refused as broken.",
                "# TYPE mnist_canvas_model_reload_failures_total counter",
                f"mnist_canvas_model_reload_failures_total {self.model_reloads[False]}",
            ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Times every HTTP request; labels it by its route template, never the raw path."""

    def __init__(self, app: ASGIApp, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("static" if scope["path"].startswith(
                "/static/") else "unmatched")
            self.registry.observe(path, scope["method"], status, time.perf_counter() - started)
