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
