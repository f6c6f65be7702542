"""Limits the server's settings read without importing the image code (Pillow, SciPy)."""

from __future__ import annotations

#: Default limit on width * height, checked from the image header before decoding. 2048x2048
#: (4.2 megapixels) holds a 280x280 canvas 53 times and a phone photo of a digit, and decodes
#: in under 0.1 s of CPU whatever the format; 4096x4096 took 0.45 s (lossless WebP).
MAX_IMAGE_PIXELS: int = 2048 * 2048
