"""A corpus of bad requests: every one must be a 4xx JSON sentence, and the server stays healthy.

Each row of BAD names a request, how to build it, the status it must get and a piece of the
sentence the caller must read (the "detail" field, or "error" under /v2, as the Open Inference
Protocol has it). After each one /readyz must still answer 200. Unusual but valid images (16-bit,
palette, CMYK, animated, ...) are in VALID and must be answered 200 with a digit.

Two in-process apps serve the table: the default settings, and "small" limits (64 KiB bodies,
batches of 5) so the limit cases stay cheap. Requests that only a real HTTP server can see
(a Content-Length that lies, a chunked body on the wire) go through a raw socket to a live
uvicorn started for this module.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.main import create_app
from app.settings import Settings
from tests.live import LiveServer
from tests.scrape import total

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
SMALL_BODY = 64 * 1024
SMALL_BATCH = 5
MODEL = "/v2/models/mnist-logreg"
# What must never reach a caller: Python internals and stack traces.
LEAKS = ("Traceback", 'File "', "sys.", "OverflowError", "ValueError", "KeyError", "numpy")

Kwargs = dict[str, Any]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_path(request: pytest.FixtureRequest) -> Path:
    """The shipped model, or (without one) the default recipe trained for this session."""
    if SHIPPED_MODEL.exists():
        return SHIPPED_MODEL
    path: Path = request.getfixturevalue("default_model_path")
    return path


def make_settings(model_path: Path, tmp: Path, **overrides: Any) -> Settings:
    return Settings(
        model_path=model_path, data_dir=tmp / "no-data", download=False,
        train_on_start="never", device="cpu", log_level="warning", **overrides,
    )


@pytest.fixture(scope="module")
def clients(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, TestClient]]:
    tmp = tmp_path_factory.mktemp("bad-inputs")
    default = create_app(make_settings(model_path, tmp))
    small = create_app(make_settings(model_path, tmp, max_body_bytes=SMALL_BODY,
                                     max_batch=SMALL_BATCH))
    with TestClient(default, raise_server_exceptions=False) as a, TestClient(
        small, raise_server_exceptions=False
    ) as b:
        yield {"default": a, "small": b}


# --------------------------------------------------------------------------- builders


def png_bytes(img: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def drawn_seven(size: int = 140) -> Image.Image:
    """A synthetic dark '7' on white: enough ink for the decoder, no MNIST needed."""
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    s = size / 140
    draw.line([(30 * s, 30 * s), (110 * s, 30 * s), (60 * s, 120 * s)], fill=0, width=int(12 * s))
    return img


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ihdr(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)


def huge_header_png() -> bytes:
    """A tiny file whose IHDR claims 20000x20000 greyscale (a decompression bomb's header)."""
    idat = zlib.compress(b"\x00" * 1024)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr(20_000, 20_000)) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def truncated_png() -> bytes:
    """A real drawing cut off in the middle of its IDAT chunk (an interrupted upload)."""
    data = png_bytes(drawn_seven())
    return data[: len(data) // 2]


def bad_crc_png() -> bytes:
    """A valid signature and a plausible IHDR whose CRC does not match."""
    good = chunk(b"IHDR", ihdr(28, 28))
    broken = good[:-4] + bytes(b ^ 0xFF for b in good[-4:])
    rows = b"".join(b"\x00" + b"\x80" * 28 for _ in range(28))
    return PNG_SIGNATURE + broken + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def bad_data_png() -> bytes:
    """Every CRC correct, but the IDAT stream is not zlib: the lie is in the data."""
    junk = bytes(range(256)) * 4
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr(28, 28)) + chunk(b"IDAT", junk)
            + chunk(b"IEND", b""))


def blank_png(mode: str, size: tuple[int, int], colour: Any) -> bytes:
    return png_bytes(Image.new(mode, size, colour))


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def as_json(value: Any) -> Kwargs:
    return {"json": value}


def raw(content: bytes | str, ctype: str | None) -> Kwargs:
    headers = {"content-type": ctype} if ctype is not None else {}
    return {"content": content.encode() if isinstance(content, str) else content,
            "headers": headers}


def json_text(text: str) -> Kwargs:
    """JSON that Python's json module writes and reads but the standard forbids (NaN, ...)."""
    return raw(text, "application/json")


def upload(data: bytes, field: str = "file", ctype: str = "image/png") -> Kwargs:
    return {"files": {field: ("drawing.png", data, ctype)}}


def pixels(values: list[Any], **extra: Any) -> Kwargs:
    return as_json({"pixels": values, **extra})


def flat(bad: Any, at: int = 400) -> list[Any]:
    values: list[Any] = [0] * 784
    values[at] = bad
    return values


def pixels_text(token: str) -> Kwargs:
    values = ["0"] * 784
    values[400] = token
    return json_text('{"pixels": [' + ",".join(values) + "]}")


def chunked(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def v2(data: list[Any] | None = None, **tensor: Any) -> Kwargs:
    spec: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [1, 784],
                            "data": data if data is not None else [0.0] * 784}
    spec.update(tensor)
    return as_json({"inputs": [spec]})


def five_megabytes_of_pixels() -> Kwargs:
    body = b'{"pixels": [' + b"255," * 1_299_999 + b"255]}"
    assert len(body) > 5_000_000
    return raw(body, "application/json")


def deep(depth: int, inside_pixels: bool) -> Kwargs:
    nested = "[" * depth + "]" * depth
    return json_text('{"pixels": ' + nested + "}" if inside_pixels else nested)


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    path: str
    build: Callable[[], Kwargs]
    status: int
    says: str  # a piece of the sentence, compared case-insensitively
    app: str = "default"

    @property
    def key(self) -> str:
        return "error" if self.path.startswith("/v2") else "detail"


P, B = "/api/predict", "/api/predict/batch"
INFER = f"{MODEL}/infer"
EMPTY = "drawing is empty"
NOT_IMAGE = "not an image this service reads"
CORRUPT = "could not be decoded"
FORMATS = "send a PNG, JPEG, GIF, BMP or WebP"
EXACTLY_ONE = "exactly one of 'image'"
TOO_BIG = f"larger than the limit of {SMALL_BODY} bytes"
RANGE = "between 0 and 255"
NOT_FINITE = "NaN or infinity"
NUMBERS = "only numbers"

BAD: list[Bad] = [
    # Empty drawings: decodable images with no ink.
    Bad("transparent-canvas", "POST", P,
        lambda: raw(blank_png("RGBA", (280, 280), (0, 0, 0, 0)), "image/png"), 422, EMPTY),
    Bad("white-canvas-upload", "POST", P,
        lambda: upload(blank_png("RGB", (280, 280), (255, 255, 255))), 422, EMPTY),
    Bad("grey-canvas-data-url", "POST", P,
        lambda: as_json({"image": data_url(blank_png("L", (280, 280), 128))}), 422, EMPTY),
    Bad("one-by-one-blank", "POST", P,
        lambda: raw(blank_png("L", (1, 1), 255), "image/png"), 422, EMPTY),
    Bad("one-by-one-black", "POST", P,
        lambda: raw(blank_png("L", (1, 1), 0), "image/png"), 422, EMPTY),
    Bad("pixels-all-zero-preprocessed", "POST", P,
        lambda: pixels([0] * 784, preprocess=True), 422, EMPTY),
    # Bytes that are not a decodable image.
    Bad("not-an-image", "POST", P, lambda: raw(b"hello, I am text", "image/png"), 415, NOT_IMAGE),
    Bad("zero-byte-image", "POST", P, lambda: raw(b"", "image/png"), 415, "empty (0 bytes)"),
    Bad("zero-byte-upload", "POST", P, lambda: upload(b""), 415, "empty (0 bytes)"),
    Bad("truncated-png", "POST", P,
        lambda: raw(truncated_png(), "image/png"), 415, CORRUPT),
    Bad("png-bad-ihdr-crc", "POST", P, lambda: raw(bad_crc_png(), "image/png"), 415, FORMATS),
    Bad("png-corrupt-idat", "POST", P, lambda: raw(bad_data_png(), "image/png"), 415, CORRUPT),
    Bad("gif-signature-then-garbage", "POST", P,
        lambda: upload(b"GIF89a" + b"\xff" * 64, ctype="image/gif"), 415, NOT_IMAGE),
    Bad("svg", "POST", P,
        lambda: raw('<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28">'
                    '<path d="M4 4 L24 4 L12 24" stroke="black"/></svg>', "image/svg+xml"),
        415, NOT_IMAGE),
    Bad("huge-image-header", "POST", P,
        lambda: raw(huge_header_png(), "image/png"), 413, "the limit is"),
    Bad("huge-image-header-upload", "POST", P,
        lambda: upload(huge_header_png()), 413, "the limit is"),
    # The body's type and its Content-Type disagree, or the type is not one we read.
    Bad("json-type-png-body", "POST", P,
        lambda: raw(png_bytes(drawn_seven()), "application/json"), 400, "not UTF-8"),
    Bad("png-type-json-body", "POST", P,
        lambda: raw(json.dumps({"pixels": [0] * 784}), "image/png"), 415, NOT_IMAGE),
    Bad("text-plain", "POST", P, lambda: raw("seven", "text/plain"), 415,
        "Unsupported Content-Type 'text/plain'"),
    Bad("no-content-type", "POST", P, lambda: raw(b'{"pixels": []}', None), 415, "'(none)'"),
    Bad("form-urlencoded", "POST", P, lambda: {"data": {"file": "x"}}, 415,
        "application/x-www-form-urlencoded"),
    Bad("multipart-without-boundary", "POST", P,
        lambda: raw(b"--x\r\n\r\n", "multipart/form-data"), 400, "could not be parsed"),
    Bad("batch-text-plain", "POST", B, lambda: raw("[]", "text/plain"), 415,
        "send application/json"),
    Bad("batch-multipart", "POST", B, lambda: upload(png_bytes(drawn_seven())), 415,
        "send application/json"),
    # Missing or conflicting fields.
    Bad("empty-object", "POST", P, lambda: as_json({}), 422, EXACTLY_ONE),
    Bad("unknown-field-only", "POST", P, lambda: as_json({"foo": 1}), 422, EXACTLY_ONE),
    Bad("image-and-pixels", "POST", P,
        lambda: as_json({"image": data_url(png_bytes(drawn_seven())), "pixels": [0] * 784}),
        422, EXACTLY_ONE),
    Bad("multipart-without-file", "POST", P,
        lambda: upload(png_bytes(drawn_seven()), field="image"), 422, "field named 'file'"),
    Bad("multipart-text-field-file", "POST", P, lambda: {"data": {"file": "x"},
                                                         "files": {"other": ("a", b"b")}},
        422, "field named 'file'"),
    Bad("json-array-body", "POST", P, lambda: as_json([0] * 784), 422, "must be an object"),
    Bad("empty-json-body", "POST", P, lambda: raw(b"", "application/json"), 400, "body is empty"),
    Bad("invalid-json", "POST", P, lambda: json_text('{"pixels": [1, 2'), 400, "not valid JSON"),
    Bad("batch-empty-object", "POST", B, lambda: as_json({}), 422, "exactly one of 'images'"),
    Bad("batch-images-and-pixels", "POST", B,
        lambda: as_json({"images": [], "pixels": []}), 422, "exactly one of 'images'"),
    Bad("batch-array-body", "POST", B, lambda: as_json([[0] * 784]), 422, "must be an object"),
    Bad("batch-images-not-a-list", "POST", B, lambda: as_json({"images": "abc"}), 422,
        "'images' must be a list"),
    Bad("batch-empty-list", "POST", B, lambda: as_json({"pixels": []}), 422, "is empty"),
    # Wrong shapes.
    Bad("783-pixels", "POST", P, lambda: pixels([0] * 783), 422, "has 783 entries"),
    Bad("785-pixels", "POST", P, lambda: pixels([0] * 785), 422, "has 785 entries"),
    Bad("27x28-pixels", "POST", P, lambda: pixels([[0] * 28] * 27), 422, "has 27 entries"),
    Bad("28-rows-one-of-27", "POST", P,
        lambda: pixels([[0] * 28] * 13 + [[0] * 27] + [[0] * 28] * 14), 422,
        "row 13 has 27 values"),
    Bad("28x28x1-pixels", "POST", P, lambda: pixels([[[0]] * 28] * 28), 422, NUMBERS),
    # Values out of range, not finite, or not numbers.
    Bad("pixel-minus-one", "POST", P, lambda: pixels(flat(-1)), 422, RANGE),
    Bad("pixel-256", "POST", P, lambda: pixels(flat(256)), 422, RANGE),
    Bad("pixel-huge-integer", "POST", P, lambda: pixels(flat(10**400)), 422, RANGE),
    Bad("pixel-5000-digit-integer", "POST", P, lambda: pixels_text("9" * 5000), 400,
        "not valid JSON"),
    Bad("pixel-NaN", "POST", P, lambda: pixels_text("NaN"), 422, NOT_FINITE),
    Bad("pixel-Infinity", "POST", P, lambda: pixels_text("Infinity"), 422, NOT_FINITE),
    Bad("pixel-minus-Infinity", "POST", P, lambda: pixels_text("-Infinity"), 422, NOT_FINITE),
    Bad("pixel-1e400", "POST", P, lambda: pixels_text("1e400"), 422, NOT_FINITE),
    Bad("pixel-string", "POST", P, lambda: pixels(flat("12")), 422, NUMBERS),
    Bad("pixel-boolean", "POST", P, lambda: pixels(flat(True)), 422, NUMBERS),
    Bad("pixel-null", "POST", P, lambda: pixels(flat(None)), 422, NUMBERS),
    Bad("pixel-object", "POST", P, lambda: pixels(flat({"v": 1})), 422, NUMBERS),
    Bad("pixels-null", "POST", P, lambda: as_json({"pixels": None}), 422, "must be a list"),
    Bad("pixels-string", "POST", P, lambda: as_json({"pixels": "0" * 784}), 422,
        "must be a list"),
    Bad("preprocess-string", "POST", P, lambda: pixels([0] * 784, preprocess="yes"), 422,
        "'preprocess' must be true or false"),
    Bad("image-number", "POST", P, lambda: as_json({"image": 7}), 422, "must be a string"),
    Bad("image-null", "POST", P, lambda: as_json({"image": None}), 422, "must be a string"),
    Bad("image-empty-string", "POST", P, lambda: as_json({"image": ""}), 422, "empty string"),
    # Base64 and data URLs.
    Bad("base64-garbage", "POST", P, lambda: as_json({"image": "iVBORw0K!!*&^%$#"}), 422,
        "not valid base64"),
    Bad("base64-truncated", "POST", P, lambda: as_json({"image": "iVBORw0KG"}), 422,
        "not valid base64"),
    Bad("base64-of-text", "POST", P,
        lambda: as_json({"image": base64.b64encode(b"just text").decode()}), 415, NOT_IMAGE),
    Bad("data-url-of-text", "POST", P,
        lambda: as_json({"image": data_url(b"hello", "text/plain")}), 415,
        "data URL of text/plain"),
    Bad("data-url-not-base64", "POST", P, lambda: as_json({"image": "data:image/png,abc"}), 422,
        "must be base64-encoded"),
    Bad("data-url-without-comma", "POST", P, lambda: as_json({"image": "data:image/png;base64"}),
        422, "not a valid data URL"),
    # Absurd JSON.
    # Bodies over 64 KiB with more arrays or values than a batch of 1,000 images holds are
    # refused before any parsing (app/limits.py check_json_counts: parsers hold the GIL).
    Bad("deeply-nested-json", "POST", P, lambda: deep(100_000, inside_pixels=False), 413,
        "in 100,000 arrays and objects"),
    Bad("deeply-nested-pixels", "POST", P, lambda: deep(100_000, inside_pixels=True), 413,
        "in 100,001 arrays and objects"),
    Bad("unclosed-brackets", "POST", P, lambda: raw(b"[" * 100_000, "application/json"), 413,
        "send fewer values"),
    Bad("five-megabyte-pixel-list", "POST", P, five_megabytes_of_pixels, 413,
        "holds up to 1,300,001 values"),
    # Limits (the "small" app: 64 KiB bodies, batches of 5).
    Bad("batch-over-maximum", "POST", B,
        lambda: as_json({"pixels": [[0] * 784] * (SMALL_BATCH + 1)}), 413,
        f"the maximum is {SMALL_BATCH}", app="small"),
    Bad("body-over-limit-content-length", "POST", P,
        lambda: raw(b'{"image": "' + b"A" * SMALL_BODY + b'"}', "application/json"), 413,
        TOO_BIG, app="small"),
    Bad("body-over-limit-chunked", "POST", P,
        lambda: {"content": chunked(b"A" * (SMALL_BODY + 10)),
                 "headers": {"content-type": "image/png"}}, 413, TOO_BIG, app="small"),
    Bad("upload-over-limit-chunked", "POST", P,
        lambda: {"content": chunked(b"--b\r\nContent-Disposition: form-data; name=\"file\"; "
                                    b"filename=\"a.png\"\r\n\r\n" + b"A" * (SMALL_BODY * 2)),
                 "headers": {"content-type": "multipart/form-data; boundary=b"}}, 413, TOO_BIG,
        app="small"),
    Bad("batch-over-limit-chunked", "POST", B,
        lambda: {"content": chunked(json.dumps({"pixels": [[255] * 784] * 30}).encode()),
                 "headers": {"content-type": "application/json"}}, 413, TOO_BIG, app="small"),
    Bad("content-length-not-a-number", "POST", P,
        lambda: {"content": b"{}", "headers": {"content-type": "application/json",
                                                "content-length": "two"}}, 400,
        "is not a byte count"),
    # Wrong methods and unknown paths.
    Bad("get-predict", "GET", P, dict, 405, "GET is not allowed on /api/predict; use POST"),
    Bad("put-predict", "PUT", P, lambda: as_json({}), 405, "PUT is not allowed"),
    Bad("delete-batch", "DELETE", B, dict, 405, "DELETE is not allowed"),
    Bad("post-healthz", "POST", "/healthz", dict, 405, "POST is not allowed on /healthz"),
    Bad("post-model-card", "POST", "/api/model", dict, 405, "use GET"),
    Bad("unknown-path", "GET", "/api/nothing", dict, 404, "nothing at /api/nothing"),
    Bad("unknown-post-path", "POST", "/predict", lambda: as_json({}), 404, "see /docs"),
    Bad("unknown-static", "GET", "/static/no-such-file.js", dict, 404, "no-such-file.js"),
    # The Open Inference Protocol v2: 400 {"error": ...}.
    Bad("v2-wrong-datatype", "POST", INFER, lambda: v2(datatype="INT32"), 400, "must be FP32"),
    Bad("v2-wrong-shape", "POST", INFER, lambda: v2([0.0] * 783, shape=[1, 783]), 400,
        "shape must be [N, 784]"),
    Bad("v2-shape-not-a-list", "POST", INFER, lambda: v2(shape="1x784"), 400, "shape must be"),
    Bad("v2-data-count-mismatch", "POST", INFER, lambda: v2([0.0] * 783), 400,
        "holds 783 numbers but the shape needs 784"),
    Bad("v2-ragged-data", "POST", INFER, lambda: v2([[0.0] * 784, 0.5]), 400, "data"),
    Bad("v2-value-above-one", "POST", INFER, lambda: v2(flat(1.5)), 400, "between 0 and 1"),
    Bad("v2-negative-value", "POST", INFER, lambda: v2(flat(-0.1)), 400, "between 0 and 1"),
    Bad("v2-huge-integer", "POST", INFER, lambda: v2(flat(10**400)), 400, "between 0 and 1"),
    Bad("v2-NaN", "POST", INFER,
        lambda: json_text('{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784],'
                          ' "data": [NaN' + ", 0" * 783 + "]}]}"), 400, NOT_FINITE),
    Bad("v2-strings-in-data", "POST", INFER, lambda: v2(flat("0.5")), 400, "only numbers"),
    Bad("v2-missing-inputs", "POST", INFER, lambda: as_json({}), 400, "'inputs' must be a list"),
    Bad("v2-two-inputs", "POST", INFER,
        lambda: as_json({"inputs": [{"name": "a"}, {"name": "b"}]}), 400, "one tensor"),
    Bad("v2-not-json", "POST", INFER, lambda: raw(b"\x89PNG....", "application/json"), 400,
        "JSON"),
    Bad("v2-empty-body", "POST", INFER, lambda: raw(b"", "application/json"), 400, "empty"),
    Bad("v2-unknown-output", "POST", INFER,
        lambda: as_json({"inputs": v2()["json"]["inputs"], "outputs": [{"name": "logits"}]}),
        400, "Unknown outputs ['logits']"),
    Bad("v2-id-not-a-string", "POST", INFER,
        lambda: as_json({"inputs": v2()["json"]["inputs"], "id": 7}), 400,
        "'id' must be a string"),
    Bad("v2-batch-over-maximum", "POST", INFER,
        lambda: v2([0.0] * 784 * (SMALL_BATCH + 1), shape=[SMALL_BATCH + 1, 784]), 400,
        f"maximum batch of {SMALL_BATCH}", app="small"),
    Bad("v2-body-over-limit", "POST", INFER,
        lambda: {"content": chunked(b"[" + b"0," * SMALL_BODY + b"0]"),
                 "headers": {"content-type": "application/json"}}, 400, TOO_BIG, app="small"),
    Bad("v2-unknown-model-infer", "POST", "/v2/models/resnet/infer", lambda: v2(), 404,
        "Unknown model 'resnet'"),
    Bad("v2-unknown-model-metadata", "GET", "/v2/models/resnet", dict, 404,
        "this server serves 'mnist-logreg'"),
    Bad("v2-unknown-model-ready", "GET", "/v2/models/resnet/ready", dict, 404, "Unknown model"),
    Bad("v2-get-infer", "GET", INFER, dict, 405, "GET is not allowed"),
    Bad("v2-unknown-path", "GET", "/v2/nothing/here", dict, 404, "nothing at /v2/nothing/here"),
]


def check_sentence(response: Any, status: int, says: str, key: str) -> str:
    """The response is `status` with a JSON sentence under `key` containing `says`."""
    text = response.text
    assert response.status_code == status, f"expected {status}, got {response.status_code}: " \
                                           f"{text[:400]}"
    assert response.headers.get("content-type", "").startswith("application/json"), text[:400]
    body = response.json()
    assert isinstance(body, dict), text[:400]
    sentence = body.get(key)
    assert isinstance(sentence, str) and sentence.strip(), f"no {key!r} sentence in {text[:400]}"
    assert says.lower() in sentence.lower(), f"{says!r} not in {sentence!r}"
    assert sentence.rstrip().endswith((".", "?", "!")), f"not a sentence: {sentence!r}"
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked to the caller: {text[:400]}"
    return sentence


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in BAD]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_request_gets_a_4xx_sentence(case: Bad, clients: dict[str, TestClient]) -> None:
    client = clients[case.app]
    response = client.request(case.method, case.path, **case.build())
    assert 400 <= case.status < 500
    check_sentence(response, case.status, case.says, case.key)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


# --------------------------------------------------------------------------- valid edge cases


@pytest.fixture(scope="module")
def mnist_seven(data_dir: Path) -> np.ndarray:
    """MNIST test digit 0 (a clear 7), light on dark, 28x28 uint8."""
    from model.data import FILES, find_file, load_idx

    spec = FILES["test_images"]
    path = find_file(data_dir, spec)
    assert path is not None
    image: np.ndarray = load_idx(path, spec, verify=False)[0]
    return image


def _big(seven: np.ndarray, dark_on_light: bool = True, size: int = 140) -> Image.Image:
    img = Image.fromarray(255 - seven if dark_on_light else seven)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def _sixteen_bit(seven: np.ndarray) -> bytes:
    arr = np.asarray(_big(seven), dtype="<u2") * 257
    img = Image.frombytes("I;16", (arr.shape[1], arr.shape[0]), arr.tobytes())
    return png_bytes(img)


def _palette(seven: np.ndarray) -> bytes:
    img = _big(seven).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return png_bytes(img)


def _palette_transparent(seven: np.ndarray) -> bytes:
    """A palette PNG whose background index is transparent, ink opaque black."""
    ink = np.asarray(_big(seven, dark_on_light=False))
    index = np.where(ink > 100, 1, 0).astype(np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    return png_bytes(img, transparency=0)


def _cmyk_jpeg(seven: np.ndarray) -> bytes:
    return png_bytes(_big(seven).convert("CMYK"), "JPEG", quality=95)


def _animated_gif(seven: np.ndarray) -> bytes:
    first = _big(seven).convert("P")
    blank = Image.new("P", first.size, 255)
    return png_bytes(first, "GIF", save_all=True, append_images=[blank, first], duration=100,
                     loop=0)


def _transparent_canvas(seven: np.ndarray) -> bytes:
    """What the canvas page sends: black strokes on a fully transparent background."""
    alpha = _big(seven, dark_on_light=False, size=280)
    rgba = Image.merge("RGBA", (*Image.new("RGB", alpha.size, (0, 0, 0)).split(), alpha))
    return png_bytes(rgba)


def _la_png(seven: np.ndarray) -> bytes:
    alpha = _big(seven, dark_on_light=False)
    return png_bytes(Image.merge("LA", (Image.new("L", alpha.size, 0), alpha)))


def _bilevel_bmp(seven: np.ndarray) -> bytes:
    return png_bytes(_big(seven).convert("1"), "BMP")


def _exif_rotated_jpeg(seven: np.ndarray) -> bytes:
    """Stored rotated 90 degrees with an EXIF orientation tag (6) that puts it upright."""
    img = _big(seven).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return png_bytes(img, "JPEG", quality=95, exif=exif.tobytes())


def _png(seven: np.ndarray) -> bytes:
    return png_bytes(_big(seven))


ImageMaker = Callable[[np.ndarray], bytes]


@dataclass(frozen=True)
class Valid:
    id: str
    image: ImageMaker
    how: str  # "raw" (with ctype), "upload", "data-url", "base64"
    ctype: str = "image/png"


VALID: list[Valid] = [
    Valid("png-raw", _png, "raw"),
    Valid("png-upload", _png, "upload"),
    Valid("png-data-url", _png, "data-url"),
    Valid("png-plain-base64", _png, "base64"),
    Valid("png-data-url-without-mime", _png, "data-url-no-mime"),
    Valid("png-sent-as-image-jpeg", _png, "raw", "image/jpeg"),
    Valid("sixteen-bit-png", _sixteen_bit, "raw"),
    Valid("palette-png", _palette, "upload"),
    Valid("palette-png-transparent", _palette_transparent, "raw"),
    Valid("cmyk-jpeg", _cmyk_jpeg, "raw", "image/jpeg"),
    Valid("exif-rotated-jpeg", _exif_rotated_jpeg, "raw", "image/jpeg"),
    Valid("animated-gif", _animated_gif, "raw", "image/gif"),
    Valid("transparent-canvas", _transparent_canvas, "data-url"),
    Valid("greyscale-alpha-png", _la_png, "raw"),
    Valid("bilevel-bmp", _bilevel_bmp, "upload", "image/bmp"),
    Valid("webp", lambda s: png_bytes(_big(s), "WEBP", lossless=True), "raw", "image/webp"),
]


def _send(case: Valid, data: bytes) -> Kwargs:
    if case.how == "raw":
        return raw(data, case.ctype)
    if case.how == "upload":
        return upload(data, ctype=case.ctype)
    if case.how == "data-url":
        return as_json({"image": data_url(data, case.ctype)})
    if case.how == "data-url-no-mime":
        return as_json({"image": "data:;base64," + base64.b64encode(data).decode()})
    return as_json({"image": base64.b64encode(data).decode()})


@pytest.mark.parametrize("case", VALID, ids=[case.id for case in VALID])
def test_unusual_but_valid_image_is_read(
    case: Valid, mnist_seven: np.ndarray, clients: dict[str, TestClient]
) -> None:
    response = clients["default"].post(P, **_send(case, case.image(mnist_seven)))
    assert response.status_code == 200, response.text[:400]
    body = response.json()
    assert body["digit"] == 7, f"read as {body['digit']} ({body['probabilities']})"
    assert len(body["preview"]) == 28 and all(len(row) == 28 for row in body["preview"])


@pytest.mark.parametrize(
    "body",
    [
        {"pixels": [[0] * 28] * 28},
        {"pixels": [0] * 784, "preprocess": False},
        {"pixels": [0.5] * 784, "preprocess": None},
        {"pixels": [255] * 784},
    ],
    ids=["28x28-zeros", "flat-zeros", "floats-preprocess-null", "all-ink"],
)
def test_valid_pixel_forms(body: dict[str, Any], clients: dict[str, TestClient]) -> None:
    response = clients["default"].post(P, json=body)
    assert response.status_code == 200, response.text[:400]
    assert 0 <= response.json()["digit"] <= 9


def test_json_content_type_variants_are_accepted(clients: dict[str, TestClient]) -> None:
    for ctype in (
        "application/json; charset=utf-8", "application/vnd.api+json", "APPLICATION/JSON"
    ):
        response = clients["default"].post(P, **raw(json.dumps({"pixels": [0] * 784}), ctype))
        assert response.status_code == 200, f"{ctype}: {response.text[:300]}"


# --------------------------------------------------------------------------- batch: per-item errors


ITEM_ERRORS: list[tuple[str, str, int, str]] = [
    ("783-pixels", "[" + ", ".join(["0"] * 783) + "]", 422, "has 783 entries"),
    ("NaN", "[NaN" + ", 0" * 783 + "]", 422, NOT_FINITE),
    ("out-of-range", "[300" + ", 0" * 783 + "]", 422, RANGE),
    ("string", '["x"' + ", 0" * 783 + "]", 422, NUMBERS),
    ("null", "null", 422, "must be a list"),
    ("huge-integer", "[1" + "0" * 400 + ", 0" * 783 + "]", 422, RANGE),
]


@pytest.mark.parametrize(("name", "item", "status", "says"), ITEM_ERRORS,
                         ids=[row[0] for row in ITEM_ERRORS])
def test_batch_reports_a_bad_item_in_its_place(
    name: str, item: str, status: int, says: str, clients: dict[str, TestClient]
) -> None:
    good = "[" + ", ".join(["0"] * 784) + "]"
    text = '{"pixels": [' + f"{good}, {item}, {good}" + "]}"
    response = clients["default"].post(B, **json_text(text))
    assert response.status_code == 200, response.text[:400]
    items = response.json()["predictions"]
    assert len(items) == 3
    assert items[0]["digit"] is not None and items[2]["digit"] is not None
    assert items[1]["status"] == status and says.lower() in items[1]["error"].lower(), items[1]
    assert items[1].get("digit") is None


def test_batch_of_images_reports_bad_images_in_place(clients: dict[str, TestClient]) -> None:
    good = data_url(png_bytes(drawn_seven()))
    images = [good, data_url(blank_png("RGB", (50, 50), (255, 255, 255))), "!!", data_url(
        huge_header_png()), data_url(b"hi", "text/plain"), good]
    response = clients["default"].post(B, json={"images": images})
    assert response.status_code == 200, response.text[:400]
    items = response.json()["predictions"]
    assert [item.get("status") for item in items] == [None, 422, 422, 413, 415, None]
    assert items[1]["code"] == "empty_drawing" and "drawing is empty" in items[1]["error"]


# --------------------------------------------------------------------------- /metrics


def _counter(text: str, route: str, method: str, status: int) -> int:
    return int(total(text, "mnist_canvas_requests_total", route=route, method=method,
                     status=str(status)))


def _send_and_count(
    client: TestClient, sent: dict[tuple[str, str, int], list[Kwargs]]
) -> dict[tuple[str, str, int], int]:
    """Send every request (its path from the route label), return how many /metrics counted."""
    paths = {"unmatched": "/nowhere", "/v2/models/{name}/infer": INFER}
    before = client.get("/metrics").text
    for (route, method, status), requests in sent.items():
        for kwargs in requests:
            response = client.request(method, paths.get(route, route), **kwargs)
            assert response.status_code == status, response.text[:300]
    after = client.get("/metrics").text
    assert 'status="500"' not in after
    return {key: _counter(after, *key) - _counter(before, *key) for key in sent}


def test_metrics_count_refused_requests(model_path: Path, tmp_path: Path) -> None:
    app = create_app(make_settings(model_path, tmp_path, max_body_bytes=SMALL_BODY))
    sent: dict[tuple[str, str, int], list[Kwargs]] = {
        ("/api/predict", "POST", 422): [as_json({}), pixels([0] * 783), pixels(flat(-1))],
        ("/api/predict", "POST", 415): [raw(b"x", "text/plain"), raw(b"xx", "image/png")],
        ("/api/predict", "POST", 400): [json_text("{")],
        ("/api/predict", "GET", 405): [{}],
        # Counted before the items are read: 1001 of anything is over the default maximum.
        ("/api/predict/batch", "POST", 413): [as_json({"pixels": [0] * 1001})],
        ("/api/predict", "POST", 413): [{"content": chunked(b"A" * (SMALL_BODY + 1)),
                                         "headers": {"content-type": "image/png"}}],
        ("/v2/models/{name}/infer", "POST", 400): [v2(datatype="INT8")],
        ("unmatched", "GET", 404): [{}, {}],
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        counted = _send_and_count(client, sent)
    assert counted == {key: len(requests) for key, requests in sent.items()}


def _total(text: str, method: str, status: int) -> int:
    """Requests counted with `method` and `status`, whatever their route label."""
    return int(total(text, "mnist_canvas_requests_total", method=method, status=str(status)))


def test_metrics_count_a_body_refused_by_its_declared_length(
    model_path: Path, tmp_path: Path
) -> None:
    """The 413 answered from Content-Length alone, before the body is read or the request is
    routed, is counted too (under any route label)."""
    app = create_app(make_settings(model_path, tmp_path, max_body_bytes=SMALL_BODY))
    with TestClient(app, raise_server_exceptions=False) as client:
        before = client.get("/metrics").text
        refused = client.post(P, **raw(b"A" * (SMALL_BODY + 1), "image/png"))
        assert refused.status_code == 413
        refused = client.post(INFER, **raw(b"0" * (SMALL_BODY + 1), "application/json"))
        assert refused.status_code == 400
        after = client.get("/metrics").text
    counted = {status: _total(after, "POST", status) - _total(before, "POST", status)
               for status in (413, 400)}
    assert counted == {413: 1, 400: 1}, "a request refused by its Content-Length is not counted"


# --------------------------------------------------------------------------- a live server


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


class Live(LiveServer):
    def path_url(self, path: str) -> str:
        return f"{self.url}{path}"

    @property
    def log_file(self) -> Path:
        assert self.log_path is not None
        return self.log_path


@pytest.fixture(scope="module")
def live(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The server on a free port with the small limits, logging to a file."""
    tmp = tmp_path_factory.mktemp("live")
    server = Live(model_path=model_path, data_dir=tmp / "no-data", log_path=tmp / "server.log",
                  MNIST_CANVAS_TRAIN_ON_START="never", MNIST_CANVAS_LOG_LEVEL="info",
                  MNIST_CANVAS_MAX_BODY_BYTES=str(SMALL_BODY))
    with server:
        try:
            server.wait_ready(timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(str(exc)[-3000:])
        yield server


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _read_response(sock: socket.socket, timeout: float) -> RawResponse | None:
    """One HTTP/1.1 response (Content-Length, chunked or close-delimited), or None if the
    server closed the connection without answering."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return None
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}

    def more() -> bool:
        nonlocal rest
        part = sock.recv(65536)
        rest += part
        return bool(part)

    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                if not more():
                    return RawResponse(status, headers, body)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                if not more():
                    break
            if size == 0:
                return RawResponse(status, headers, body)
            body, rest = body + rest[:size], rest[size + 2 :]
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length and more():
            pass
        return RawResponse(status, headers, rest[:length])
    while more():
        pass
    return RawResponse(status, headers, rest)


def _request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _exchange(server: Live, *pieces: bytes) -> RawResponse:
    """Send `pieces` on a new connection and read the answer, which must come. A send the
    server cuts short (it may answer and close before the client is done) is not an error."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_response(sock, 5)
    assert response is not None
    return response


def _log_size(server: Live) -> int:
    return server.log_file.stat().st_size


def _log_summary(log: str) -> str:
    """The ERROR lines and the exception lines of a log, without the stack frames."""
    keep = [ln for ln in log.splitlines()
            if " ERROR " in ln or (ln and not ln[0].isspace() and ("Error" in ln
                                                                 or "Exception" in ln
                                                                 or "Disconnect" in ln))]
    return "\n".join(keep[:20])


def _assert_healthy(server: Live, since: int) -> None:
    """Ready, and no internal error or traceback logged since byte `since` of the server log."""
    assert _status(server.path_url("/readyz")) == 200
    log = server.log_file.read_bytes()[since:].decode(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, (
        f"the server logged an internal error:\n{_log_summary(log)}"
    )


def test_live_content_length_smaller_than_body(live: Live) -> None:
    """The server reads Content-Length bytes, answers them, and does not choke on the rest."""
    since = _log_size(live)
    body = json.dumps({"pixels": [0] * 784}).encode()
    head = _request_head(P, {"Content-Type": "application/json", "Content-Length": "11",
                             "Connection": "close"})
    check_sentence(_exchange(live, head + body), 400, "not valid JSON", "detail")
    _assert_healthy(live, since)


def test_live_content_length_larger_than_body(live: Live) -> None:
    """A body shorter than declared is not answered as if complete, and a client that gives up
    is not an internal error."""
    since = _log_size(live)
    body = b'{"pixels": [0, 0]}'
    head = _request_head(P, {"Content-Type": "application/json", "Content-Length": "500"})
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(head + body)
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # the server is still waiting for the other 482 bytes
        sock.shutdown(socket.SHUT_WR)  # the client gives up
        try:
            response = _read_response(sock, 5)
        except (ConnectionResetError, TimeoutError):
            response = None
    if response is not None:  # an answer is optional here; a wrong one is not
        assert 400 <= response.status < 500, response.text
    time.sleep(0.3)
    _assert_healthy(live, since)
    metrics = urllib.request.urlopen(live.path_url("/metrics"), timeout=5).read().decode()
    assert 'status="500"' not in metrics, "a client disconnect was counted as a server error"


def test_live_declared_oversize_body_is_refused_before_it_is_sent(live: Live) -> None:
    since = _log_size(live)
    head = _request_head(P, {"Content-Type": "image/png",
                             "Content-Length": str(SMALL_BODY * 100)})
    check_sentence(_exchange(live, head), 413, TOO_BIG, "detail")
    _assert_healthy(live, since)


def test_live_chunked_oversize_body_is_refused(live: Live) -> None:
    since = _log_size(live)
    head = _request_head(P, {"Content-Type": "image/png", "Transfer-Encoding": "chunked"})
    piece = b"A" * 4096
    framed = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    chunks = [framed] * (SMALL_BODY // len(piece) + 4)
    check_sentence(_exchange(live, head, *chunks, b"0\r\n\r\n"), 413, TOO_BIG, "detail")
    _assert_healthy(live, since)


def test_live_json_type_with_png_body(live: Live) -> None:
    since = _log_size(live)
    payload = png_bytes(drawn_seven())
    head = _request_head(P, {"Content-Type": "application/json",
                             "Content-Length": str(len(payload)), "Connection": "close"})
    check_sentence(_exchange(live, head + payload), 400, "not UTF-8", "detail")
    _assert_healthy(live, since)
