"""The worker limiter's size: one slot per usable core by default, each a worker process."""

from __future__ import annotations

from app.limits import limiter_for, usable_cores
from app.settings import Settings


def test_heavy_work_gets_a_worker_process_per_usable_core_by_default() -> None:
    # Each slot is a worker process with its own GIL (app/workers.py): the event loop's
    # process keeps its GIL, so a slot per core adds speed without taking the loop's turns.
    assert Settings.model_fields["max_concurrent_work"].default == 0
    assert Settings.model_fields["worker_processes"].default is True
    limiter = limiter_for(Settings())
    assert limiter.slots == limiter.pool.processes == usable_cores() >= 1
    assert limiter.pool.nice == 10


def test_slots_can_be_set_and_workers_turned_into_threads() -> None:
    assert limiter_for(Settings(max_concurrent_work=3)).pool.processes == 3
    threads = limiter_for(Settings(max_concurrent_work=3, worker_processes=False))
    assert threads.slots == 3 and not threads.pool.enabled


def test_json_counts_fit_the_largest_batch_and_refuse_a_list_bomb() -> None:
    import json

    import pytest

    from app.inputs import InputError
    from app.limits import check_json_counts

    # The largest batch in every form the API reads passes ...
    for body in ({"pixels": [[0] * 784] * 1000}, {"pixels": [[[0] * 28] * 28] * 1000},
                 {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1000, 784],
                              "data": [0.5] * 784_000}]},
                 {"images": ["data:image/png;base64,iVBORw0KGgo="] * 1000}):
        check_json_counts(json.dumps(body).encode(), max_batch=1000)
    # ... while 2.3 MB of empty arrays (orjson: 0.25 s building 816,000 lists) and more
    # numbers than 1,000 images hold are refused before parsing.
    for bomb in (b"[" + b"[]," * 816_000 + b"[]]", b"[" + b"0," * 900_000 + b"0]"):
        with pytest.raises(InputError) as info:
            check_json_counts(bomb, max_batch=1000)
        assert info.value.status == 413 and "send fewer values" in str(info.value)
    # Binary data after the JSON part is not counted.
    check_json_counts(b'{"a": 1}' + b"[" * 100_000, max_batch=1000, end=8)
