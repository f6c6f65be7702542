"""image_size: an image's width and height from its header alone, checked like decode_image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from model import preprocess as pp


def test_image_size_reads_the_header_without_decoding() -> None:
    img = Image.new("RGB", (640, 480), "white")
    out = io.BytesIO()
    img.save(out, "PNG")
    truncated = out.getvalue()[:100]  # the header and the start of the pixel data
    assert pp.image_size(truncated) == (640, 480)
    with pytest.raises(pp.PreprocessError) as info:
        pp.decode_image(truncated)
    assert info.value.code == "undecodable_image"


def test_image_size_refuses_what_decode_image_would_refuse() -> None:
    img = Image.new("L", (640, 480))
    out = io.BytesIO()
    img.save(out, "WEBP", lossless=True)
    with pytest.raises(pp.PreprocessError) as info:
        pp.image_size(out.getvalue(), max_pixels=640 * 480 - 1)
    assert info.value.code == "image_too_large" and "640x480" in str(info.value)
    for data in (b"", b"not an image"):
        with pytest.raises(pp.PreprocessError) as info:
            pp.image_size(data)
        assert info.value.code == "undecodable_image"


def test_the_default_limit_fits_a_phone_photo_not_a_bomb() -> None:
    assert 280 * 280 * 50 < pp.MAX_IMAGE_PIXELS < 4096 * 4096
