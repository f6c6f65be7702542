"""The simulated writers of benchmarks/learning.py: deterministic, a hand per writer, MNIST form."""

from __future__ import annotations

import numpy as np

from benchmarks.writers import Writer, draw_writers


def test_the_same_seed_draws_the_same_digits() -> None:
    a = draw_writers(range(3), per_writer=4, seed=11)
    b = draw_writers(range(3), per_writer=4, seed=11)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_drawings_are_mnist_form_with_labels_and_writer_ids() -> None:
    images, labels, writers = draw_writers(range(2), per_writer=10, seed=3)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert sorted(labels[:10].tolist()) == list(range(10))  # each writer draws every digit
    assert len(set(writers.tolist())) == 2
    assert images[:, 0, :].max() < 64 and images.max() == 255  # centred ink, MNIST polarity


def test_writers_have_different_hands() -> None:
    hands = {(w.slant, w.pen, w.styles) for w in (Writer.sample(i, 5) for i in range(20))}
    assert len(hands) == 20
    one, other = draw_writers([0], per_writer=10, seed=5), draw_writers([1], per_writer=10, seed=5)
    assert not np.array_equal(one[0], other[0])
