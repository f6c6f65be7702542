"""The one error preprocessing raises: a code for machines and a sentence for people."""

from __future__ import annotations

from typing import Final

ERROR_CODES: Final = ("empty_drawing", "undecodable_image", "image_too_large", "bad_pixels")


_DEFAULT_MESSAGES: Final = {
    "empty_drawing": "The drawing is empty: draw a digit (or send an image of one) first.",
    "undecodable_image": "The image could not be decoded (truncated or corrupt?): send a "
    "complete PNG, JPEG, GIF, BMP or WebP file.",
    "image_too_large": "The image has too many pixels: send a "
    "smaller one; a 280x280 drawing is plenty.",
    "bad_pixels": "The pixels must be 28x28 (or 784) finite numbers in 0..255, 0 = background.",
}


class PreprocessError(ValueError):
    """An image or pixel array that cannot become a digit.

    `code` is one of ERROR_CODES, for machines; the message is a sentence telling the client
    what to fix, for people (a default one per code when none is given).
    """

    code: str

    def __init__(self, code: str, message: str | None = None) -> None:
        text = message if message is not None else _DEFAULT_MESSAGES.get(code, code)
        super().__init__(text)
        self.code = code
        self.message = text

    def __reduce__(self) -> tuple[type[PreprocessError], tuple[str, str]]:
        return (type(self), (self.code, self.message))
