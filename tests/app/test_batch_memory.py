"""A batch keeps nothing of the images it failed on: its item errors hold no traceback, so no
decoded image outlives its item (a kept traceback held 350 MB per batch of 23 large images,
in a reference cycle only the garbage collector could free)."""

from __future__ import annotations

import gc
import time

from app.inputs import InputError
from app.limits import Work
from app.routes.predict import batch_digits, prepare_batch
from app.settings import Settings
from benchmarks.hostile import batch_body, dots_webp


def test_failed_items_keep_no_traceback_and_leave_no_cycles() -> None:
    import json

    payload = json.loads(batch_body(dots_webp(600), 3, "image/webp"))
    payload["images"].append("data:image/png;base64,AAAA")  # undecodable
    body = json.dumps(payload).encode()
    settings = Settings()
    work = Work(deadline=time.monotonic() + 60, timeout_s=60)
    batch_digits(prepare_batch(body, settings), 4_194_304, work)  # imports done lazily
    gc.collect()
    gc.disable()
    try:
        out = batch_digits(prepare_batch(body, settings), 4_194_304, work)
        errors = [item for item in out if isinstance(item, InputError)]
        assert [e.code for e in errors] == ["empty_drawing"] * 3 + ["undecodable_image"]
        assert all(e.__traceback__ is None and e.__cause__ is None for e in errors)
        del out, errors
        assert gc.collect() == 0  # everything was freed by reference counting alone
    finally:
        gc.enable()
