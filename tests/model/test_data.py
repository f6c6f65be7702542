"""MNIST reading, verification, download and the lesson's split, on the real files."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model.data import (
    FILES,
    Mnist,
    MnistDataError,
    Prefetch,
    load_idx,
    load_mnist,
    pixel_stats,
)


def test_counts_and_split(mnist: Mnist) -> None:
    assert mnist.train_images.shape == (50_000, 28, 28)
    assert mnist.valid_images.shape == (10_000, 28, 28)
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert len(mnist.train_labels) == 50_000 and len(mnist.test_labels) == 10_000
    assert mnist.train_images.dtype == np.uint8


def test_first_labels_match_the_canonical_files(mnist: Mnist) -> None:
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_training_statistics(mnist: Mnist) -> None:
    mean, std = pixel_stats(mnist.train_images)
    assert mean == pytest.approx(0.13096, abs=5e-5)
    assert std == pytest.approx(0.30849, abs=5e-5)
    all_mean, all_std = pixel_stats(np.concatenate([mnist.train_images, mnist.valid_images]))
    assert all_mean == pytest.approx(0.13066, abs=5e-5)
    assert all_std == pytest.approx(0.30811, abs=5e-5)


def test_reads_uncompressed_files_too(data_dir: Path, tmp_path: Path) -> None:
    spec = FILES["test_labels"]
    raw = gzip.decompress((data_dir / f"{spec.name}.gz").read_bytes())
    (tmp_path / spec.name).write_bytes(raw)
    labels = load_idx(tmp_path / spec.name, spec)
    assert labels[:3].tolist() == [7, 2, 1]


def _copy_all(data_dir: Path, target: Path) -> None:
    for spec in FILES.values():
        (target / f"{spec.name}.gz").write_bytes((data_dir / f"{spec.name}.gz").read_bytes())


def test_missing_file_with_download_off_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(MnistDataError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message
    assert "Downloading is turned off" in message


def test_truncated_gzip_is_reported(data_dir: Path, tmp_path: Path) -> None:
    spec = FILES["test_labels"]
    payload = (data_dir / f"{spec.name}.gz").read_bytes()
    (tmp_path / f"{spec.name}.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(MnistDataError, match="truncated or corrupt"):
        load_idx(tmp_path / f"{spec.name}.gz", spec)


def test_wrong_magic_number_is_reported(tmp_path: Path) -> None:
    spec = FILES["test_labels"]
    bad = (1234).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(10_000)
    (tmp_path / spec.name).write_bytes(bad)
    with pytest.raises(MnistDataError, match="wrong magic number 1234"):
        load_idx(tmp_path / spec.name, spec)


def test_short_file_is_reported(tmp_path: Path) -> None:
    spec = FILES["test_labels"]
    bad = (2049).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(9_000)
    (tmp_path / spec.name).write_bytes(bad)
    with pytest.raises(MnistDataError, match="truncated or padded"):
        load_idx(tmp_path / spec.name, spec)


def test_checksum_mismatch_is_reported(data_dir: Path, tmp_path: Path) -> None:
    spec = FILES["test_labels"]
    raw = bytearray(gzip.decompress((data_dir / f"{spec.name}.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # a different, still valid, label
    (tmp_path / spec.name).write_bytes(bytes(raw))
    with pytest.raises(MnistDataError, match="SHA-256"):
        load_idx(tmp_path / spec.name, spec)
    assert load_idx(tmp_path / spec.name, spec, verify=False)[100 - 8] == raw[100]  # 8-byte header


@pytest.fixture()
def mirror(data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP mirror serving the real files, to exercise the download path."""
    served = tmp_path / "mirror"
    served.mkdir()
    _copy_all(data_dir, served)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()


def test_download_falls_back_to_the_next_mirror_and_verifies(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = mirror
    cache = tmp_path / "cache"
    dead = "http://127.0.0.1:9/"  # nothing listens on the discard port
    data = load_mnist(cache, download=True, mirrors=(dead, url))
    assert data.test_labels[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s.name}.gz" for s in FILES.values())


def test_corrupt_download_is_refused_and_nothing_is_left(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = mirror
    spec = FILES["test_labels"]
    (served / f"{spec.name}.gz").write_bytes(gzip.compress(b"not mnist"))
    cache = tmp_path / "cache"
    with pytest.raises(MnistDataError, match="Could not download t10k-labels"):
        load_mnist(cache, download=True, mirrors=(url,))
    assert not (cache / f"{spec.name}.gz").exists()
    assert not list(cache.glob(".*.tmp"))


def test_corrupt_cached_file_is_fetched_again(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, served = mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    _copy_all(served, cache)
    spec = FILES["test_labels"]
    payload = (cache / f"{spec.name}.gz").read_bytes()
    (cache / f"{spec.name}.gz").write_bytes(payload[: len(payload) // 3])  # interrupted download
    data = load_mnist(cache, download=True, mirrors=(url,))
    assert data.test_labels[:3].tolist() == [7, 2, 1]
    assert (cache / f"{spec.name}.gz").read_bytes() == (served / f"{spec.name}.gz").read_bytes()


@pytest.mark.parametrize("shape", [(3, 28, 28), (257, 28, 28), (1, 1, 1)])
def test_pixel_stats_equal_the_float64_definition(shape: tuple[int, ...]) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    scaled = images.astype(np.float64) / 255.0
    mean, std = pixel_stats(images)
    assert pixel_stats(images, rows=2) == (mean, std)  # summed in chunks of images: exact
    assert mean == pytest.approx(float(scaled.mean()), rel=1e-14, abs=1e-15)
    assert std == pytest.approx(float(scaled.std()), rel=1e-12, abs=1e-15)
    assert pixel_stats(images.astype(np.float32)) == pytest.approx((mean, std), rel=1e-6)


def test_prefetch_gives_what_load_mnist_gives(data_dir: Path) -> None:
    prefetch = Prefetch(data_dir, download=False)
    data, direct = prefetch.result(), load_mnist(data_dir, download=False)
    assert data.sha256 == direct.sha256
    assert np.array_equal(data.train_images, direct.train_images)
    assert prefetch.seconds > 0 and prefetch.waited >= 0


def test_prefetch_raises_load_mnists_error_when_asked_for_the_result(tmp_path: Path) -> None:
    prefetch = Prefetch(tmp_path, download=False)
    with pytest.raises(MnistDataError, match="missing"):
        prefetch.result()
