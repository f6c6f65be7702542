"""IDX pairs in a .tar.gz: written by model.idx, read with model.data's own checks."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest

from model.data import FILES, MnistDataError
from model.idx import idx_bytes, read_idx_tar, write_idx_tar


def test_round_trip_keeps_images_and_labels() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (17, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 17)
    back_images, back_labels = read_idx_tar(write_idx_tar(images, labels))
    assert np.array_equal(back_images, images) and np.array_equal(back_labels, labels)


def test_written_files_are_byte_for_byte_mnists_own(mnist) -> None:  # type: ignore[no-untyped-def]
    """Written from MNIST's 60,000 training digits, the files hash exactly as MNIST's do."""
    images = np.concatenate([mnist.train_images, mnist.valid_images])
    labels = np.concatenate([mnist.train_labels, mnist.valid_labels])
    assert hashlib.sha256(idx_bytes(images)).hexdigest() == FILES["train_images"].sha256
    assert hashlib.sha256(idx_bytes(labels)).hexdigest() == FILES["train_labels"].sha256


def test_a_damaged_archive_is_refused_with_a_reason() -> None:
    good = write_idx_tar(np.zeros((2, 28, 28), np.uint8), np.array([1, 2]))
    with pytest.raises(MnistDataError, match="not a readable"):
        read_idx_tar(good[:40])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz"):
        pass
    with pytest.raises(MnistDataError, match="lacks"):
        read_idx_tar(out.getvalue())
    with pytest.raises(ValueError, match="labels"):
        write_idx_tar(np.zeros((2, 28, 28), np.uint8), np.array([1]))
