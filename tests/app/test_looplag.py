"""The event loop's lag on /metrics, and the collector kept off startup's objects."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.looplag import LAG, LoopLagProbe
from app.main import create_app
from tests.app.conftest import make_settings
from tests.scrape import total


def lag_count() -> float:
    return next(sample.value for metric in LAG.collect() for sample in metric.samples
                if sample.name.endswith("_count"))


def test_a_blocked_loop_is_recorded_as_lag() -> None:
    async def block_the_loop() -> LoopLagProbe:
        probe = LoopLagProbe(0.01)
        probe.start()
        await asyncio.sleep(0)  # the probe starts its 10 ms sleep
        time.sleep(0.05)  # what a parse holding the GIL does to the loop
        await asyncio.sleep(0.03)
        await probe.stop()
        return probe

    before = lag_count()
    probe = asyncio.run(block_the_loop())
    # The probe asked to wake 10 ms after it started and could not run for 50 ms: whatever
    # the machine's speed, it woke at least 40 ms late.
    assert probe.worst >= 0.04
    assert lag_count() > before


def test_zero_interval_samples_nothing() -> None:
    async def run() -> LoopLagProbe:
        probe = LoopLagProbe(0)
        probe.start()
        await asyncio.sleep(0.02)
        await probe.stop()
        return probe

    assert asyncio.run(run()).worst == 0.0


def test_the_served_app_exports_its_loop_lag(client: TestClient) -> None:
    text = client.get("/metrics").text
    assert "mnist_canvas_event_loop_lag_seconds_bucket" in text
    assert total(text, "mnist_canvas_event_loop_lag_seconds_count") >= 0


def test_the_app_freezes_what_startup_made_while_it_serves(default_model_path: Path,
                                                           data_dir: Path) -> None:
    # The collector's full passes skip the frozen startup objects (torch, the app, the model):
    # they took 100 ms each, with the GIL held, under a flood of large batches.
    with TestClient(create_app(make_settings(default_model_path, data_dir))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0  # unfrozen when the app stops
