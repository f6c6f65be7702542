"""orjson on the fast path, the standard library as the referee: same values, same sentences."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from app.inputs import InputError
from app.jsonio import json_response, parse_json

SAME = [
    b'{"pixels": [0, 12.5, 255, 1e-3, -0.0]}',
    b'{"image": "data:image/png;base64,AAAA", "preprocess": true, "x": null}',
    '{"name": "caf\u00e9 \u2603"}'.encode(),
    b'{"a": 1, "a": 2}',  # duplicate keys: the last one wins in both
    b"[[1, 2], [3, 4]]",
]


@pytest.mark.parametrize("body", SAME)
def test_fast_path_parses_like_the_standard_library(body: bytes) -> None:
    assert parse_json(body) == json.loads(body)
    assert orjson.loads(body) == json.loads(body)  # these really take the fast path


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[1e400]", f"[{10**400}]",
                                  '["\\ud800"]'])
def test_what_orjson_refuses_the_standard_library_still_reads(text: str) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    got, want = parse_json(text.encode()), json.loads(text)
    assert repr(got) == repr(want)  # NaN != NaN, so compare the representations


def test_utf16_with_a_byte_order_mark_is_read_as_the_standard_library_reads_it() -> None:
    body = '{"pixels": [1, 2]}'.encode("utf-16")
    assert parse_json(body) == {"pixels": [1, 2]}


@pytest.mark.parametrize(("body", "words"), [
    (b"", "body is empty"),
    (b'{"pixels": "\xff\xfd"}', "not UTF-8"),
    (b'{"pixels": [1, 2', "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_refusals_are_400_sentences(body: bytes, words: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_json(body)
    assert caught.value.status == 400
    assert words in str(caught.value)


def test_json_response_writes_numpy_arrays_as_nested_lists() -> None:
    preview = np.arange(784, dtype=np.int64).reshape(28, 28).astype(np.uint8)
    response = json_response({"preview": preview, "confidence": 0.25}, status_code=201)
    assert response.status_code == 201
    assert response.media_type == "application/json"
    assert json.loads(bytes(response.body)) == {"preview": preview.tolist(), "confidence": 0.25}
