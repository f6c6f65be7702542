"""Images and labels as an IDX pair in a .tar.gz: MNIST's own format, for data of our own.

`write_idx_tar` packs (N, 28, 28) uint8 images and N labels as `<name>-images-idx3-ubyte` and
`<name>-labels-idx1-ubyte`; `read_idx_tar` reads them back through `model.data.parse_idx`, the
same checks MNIST's files get (magic number, count, size).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from model.data import IdxFile, MnistDataError, parse_idx

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of uint8 labels (N,) or images (N, 28, 28)."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    if data.ndim == 1:
        header = LABELS_MAGIC.to_bytes(4, "big") + len(data).to_bytes(4, "big")
    elif data.ndim == 3:
        header = IMAGES_MAGIC.to_bytes(4, "big") + b"".join(
            int(n).to_bytes(4, "big") for n in data.shape)
    else:
        raise ValueError(f"IDX here holds labels (N,) or images (N, H, W), not {data.shape}")
    return header + data.tobytes()


def member_names(name: str) -> tuple[str, str]:
    return f"{name}-images-idx3-ubyte", f"{name}-labels-idx1-ubyte"


def write_idx_tar(images: np.ndarray, labels: np.ndarray, name: str = "corrections") -> bytes:
    """A .tar.gz holding the images/labels IDX pair."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for member, payload in zip(member_names(name), (idx_bytes(images), idx_bytes(labels)),
                                   strict=True):
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


def _parse(raw: bytes, name: str, magic: int, source: str) -> np.ndarray:
    if len(raw) < 8:
        raise MnistDataError(f"{source}: {name} is too short for an IDX header.")
    count = int.from_bytes(raw[4:8], "big")
    return parse_idx(raw, IdxFile(name, magic, count, sha256=""), f"{source}:{name}")


def read_idx_tar(source: Path | bytes, name: str = "corrections") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) from a file or bytes of `write_idx_tar`."""
    label = str(source) if isinstance(source, Path) else "<bytes>"
    payload = source.read_bytes() if isinstance(source, Path) else source
    images_name, labels_name = member_names(name)
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            files = {m.name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in (images_name, labels_name) if n not in files]
            if missing:
                raise MnistDataError(f"{label}: the archive lacks {', '.join(missing)}.")
            raw = {n: tar.extractfile(files[n]).read()  # type: ignore[union-attr]
                   for n in (images_name, labels_name)}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise MnistDataError(f"{label}: not a readable .tar.gz ({exc}).") from exc
    images = _parse(raw[images_name], images_name, IMAGES_MAGIC, label)
    labels = _parse(raw[labels_name], labels_name, LABELS_MAGIC, label).astype(np.int64)
    if len(images) != len(labels):
        raise MnistDataError(f"{label}: {len(images)} images but {len(labels)} labels.")
    return images, labels
