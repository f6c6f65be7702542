"""App fixtures: the real app with its real lifespan, on a small model and the default one."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings


def make_settings(model_path: Path, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_path": model_path, "data_dir": data_dir, "download": False,
        "train_on_start": "never", "torch_threads": 1, "device": "cpu", "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(default_model_path: Path, data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(default_model_path, data_dir))) as c:
        yield c


def canvas_png(digit: np.ndarray, *, mode: str = "transparent", scale: int = 10,
               offset: tuple[int, int] = (0, 0), size: int = 280, fmt: str = "PNG") -> bytes:
    """An MNIST digit drawn on a canvas: upscaled, moved, in one of three polarities."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale),
                                                   Image.Resampling.BILINEAR))
    ink = np.zeros((size, size), dtype=np.uint8)
    y, x = offset
    h = min(big.shape[0], size - y)
    w = min(big.shape[1], size - x)
    ink[y : y + h, x : x + w] = big[:h, :w]
    if mode == "transparent":
        rgba = np.zeros((size, size, 4), dtype=np.uint8)
        rgba[..., 3] = ink
        image = Image.fromarray(rgba, "RGBA")
    elif mode == "dark-on-light":
        image = Image.fromarray(255 - ink, "L").convert("RGB")
    else:
        image = Image.fromarray(ink, "L")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def data_url(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode()
