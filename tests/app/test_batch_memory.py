"""A batch keeps nothing of the images it failed on: its item errors hold no traceback, so no
decoded image outlives its item (a kept traceback held 350 MB per batch of 23 large images,
in a reference cycle only the garbage collector could free)."""

from __future__ import annotations

import gc

from app.batchwork import decode_items, prepare_batch
from app.inputs import InputError
from app.settings import Settings
from benchmarks.hostile import batch_body, dots_webp


def test_failed_items_keep_no_traceback_and_leave_no_cycles() -> None:
    import json

    payload = json.loads(batch_body(dots_webp(600), 3, "image/webp"))
    payload["images"].append("data:image/png;base64,AAAA")  # undecodable
    body = json.dumps(payload).encode()
    settings = Settings()

    def decode() -> dict[int, InputError]:
        batch = prepare_batch(body, settings)
        return decode_items(batch.items, True, False, 4_194_304).errors

    decode()  # imports done lazily
    gc.collect()
    gc.disable()
    try:
        errors = decode()
        assert [e.code for e in errors.values()] == ["empty_drawing"] * 3 + ["undecodable_image"]
        assert all(e.__traceback__ is None and e.__cause__ is None for e in errors.values())
        del errors
        assert gc.collect() == 0  # everything was freed by reference counting alone
    finally:
        gc.enable()
