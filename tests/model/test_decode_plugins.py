"""The header probe and the decoder load no Pillow plugin beyond the formats they accept.

Pillow registers WebP (and every format but PNG, JPEG, GIF, BMP and PPM) only in `Image.init()`,
which imports all of its plugins the first time it is needed; the server probes headers on its
event loop, so that first time stalled every request behind it.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import io, sys
from PIL import Image
import model.preprocess as pp

def webp():
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, "WEBP", lossless=True)
    return out.getvalue()

data = webp()
before = {m for m in sys.modules if m.startswith("PIL.")}
pp.image_size(data)
for bad in (b"GIF87a", b"not an image", b"II*\\x00"):
    try:
        pp.image_size(bad)
    except pp.PreprocessError:
        pass
try:
    pp.preprocess_image(data)
except pp.PreprocessError:
    pass  # an empty drawing: decoded all the same
print(sorted({m for m in sys.modules if m.startswith("PIL.")} - before))
print(Image._initialized)
"""


def test_reading_images_imports_no_other_pillow_plugin() -> None:
    # A fresh interpreter: this test process has long since imported every plugin.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "[]", f"imported while reading images: {out[0]}"
    assert out[1] == "1", "Image.init() ran: every Pillow plugin was imported"
