"""Deskewing straightens a slanted digit and is applied the same way everywhere."""

from __future__ import annotations

import numpy as np

from model.data import Mnist
from model.transforms import apply_transforms, deskew


def shear(image: np.ndarray, alpha: float) -> np.ndarray:
    """Slant an image: row r moves right by alpha * (r - 13.5), bilinearly."""
    out = np.zeros_like(image, dtype=np.float32)
    cols = np.arange(28, dtype=np.float32)
    for r in range(28):
        src = cols - alpha * (r - 13.5)
        out[r] = np.interp(src, cols, image[r].astype(np.float32), left=0, right=0)
    return out


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_deskewing_a_digit_and_its_slanted_copy_gives_nearly_the_same_image(mnist: Mnist) -> None:
    scores = []
    for image in mnist.test_images[:50]:
        straight = deskew(image)
        for alpha in (-0.3, 0.3):
            scores.append(corr(straight, deskew(shear(image, alpha))))
    assert np.mean(scores) > 0.95
    assert np.min(scores) > 0.85


def test_deskew_reduces_the_slant_measured_by_moments(mnist: Mnist) -> None:
    def slant(img: np.ndarray) -> float:
        r, c = np.mgrid[:28, :28]
        w = img / img.sum()
        cy, cx = (w * r).sum(), (w * c).sum()
        return float((w * (r - cy) * (c - cx)).sum() / (w * (r - cy) ** 2).sum())

    before = [abs(slant(i.astype(np.float64))) for i in mnist.test_images[:100]]
    after = [abs(slant(deskew(i).astype(np.float64))) for i in mnist.test_images[:100]]
    assert np.mean(after) < 0.2 * np.mean(before)


def test_batch_and_single_give_the_same_result(mnist: Mnist) -> None:
    batch = deskew(mnist.test_images[:5])
    for i in range(5):
        np.testing.assert_allclose(batch[i], deskew(mnist.test_images[i]), atol=1e-4)


def test_empty_image_stays_empty() -> None:
    assert deskew(np.zeros((28, 28))).sum() == 0


def test_apply_transforms_refuses_unknown_names() -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown input transform"):
        apply_transforms(np.zeros((1, 28, 28)), ["sharpen"])
