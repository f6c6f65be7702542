"""MNIST's geometry: the 28x28 field, the 20 px box a digit is scaled into, and where its
centre of mass sits; preprocessing works at SUPERSAMPLE x that resolution."""

from __future__ import annotations

from typing import Final

FIELD: Final = 28  # MNIST's field


BOX: Final = 20  # the longer side of the digit's bounding box in MNIST


SUPERSAMPLE: Final = 4  # work at 4x (an 80 px box) so stroke changes and shifts are fractional


HI_BOX: Final = BOX * SUPERSAMPLE


#: Mean centre of mass of MNIST's training digits, (row, column) in pixel-index coordinates
#: (pixel i's centre is i): 13.996 and 14.008 over the 50,000 training images. MNIST moved
#: each digit by whole pixels, so single digits lie within +-0.5 of it; here it is exact.
MNIST_CENTRE: Final = (14.0, 14.0)
