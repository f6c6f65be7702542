"""The worker limiter's size: one slot by default, one per usable core on request."""

from __future__ import annotations

from app.limits import limiter_for, usable_cores
from app.settings import Settings


def test_heavy_work_gets_one_slot_by_default() -> None:
    # Decoding holds the GIL: a second thread in the same process decodes no faster and takes
    # the event loop's turns (README, "Hostile traffic"); more cores mean more processes.
    assert Settings.model_fields["max_concurrent_work"].default == 1
    assert limiter_for(Settings(max_concurrent_work=1)).slots == 1


def test_zero_slots_means_one_per_usable_core() -> None:
    assert limiter_for(Settings(max_concurrent_work=0)).slots == usable_cores() >= 1
    assert limiter_for(Settings(max_concurrent_work=3)).slots == 3
