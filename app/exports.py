"""Corrections written out: CSV (Kaggle's MNIST layout), ndjson, or an IDX pair in a .tar.gz.

    label,pixel0,...,pixel783        one row per correction, pixels 0..255 row-major
    {"id": 1, "label": 7, ...}       one JSON object per line, with "pixels" (784 numbers)
    corrections-{images,labels}-...  read back by model.idx.read_idx_tar (model.data's checks)
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

from app.corrections import CorrectionFilter, image_from_row, iterate
from app.db.database import Database
from app.db.models import Correction
from model.idx import write_idx_tar

MEDIA_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "idx": "application/gzip"}
SUFFIXES = {"csv": "csv", "ndjson": "ndjson", "idx": "tar.gz"}
CSV_HEADER = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"


def csv_line(row: Correction) -> str:
    return f"{row.label}," + ",".join(map(str, image_from_row(row).ravel().tolist())) + "\n"


def ndjson_line(row: Correction) -> bytes:
    body: dict[str, Any] = row.as_dict()
    body["pixels"] = image_from_row(row).ravel().tolist()
    return orjson.dumps(body) + b"\n"


def export_corrections(database: Database, fmt: str,
                       where: CorrectionFilter | None = None) -> tuple[bytes, int]:
    """The whole export as bytes, and how many corrections it holds."""
    rows = iterate(database, where or CorrectionFilter())
    if fmt == "csv":
        text = io.StringIO()
        text.write(CSV_HEADER)
        count = 0
        for row in rows:
            text.write(csv_line(row))
            count += 1
        return text.getvalue().encode(), count
    if fmt == "ndjson":
        out = io.BytesIO()
        count = 0
        for row in rows:
            out.write(ndjson_line(row))
            count += 1
        return out.getvalue(), count
    if fmt == "idx":
        images: list[np.ndarray] = []
        labels: list[int] = []
        for row in rows:
            images.append(image_from_row(row))
            labels.append(row.label)
        stack = np.stack(images) if images else np.zeros((0, 28, 28), dtype=np.uint8)
        return write_idx_tar(stack, np.asarray(labels, dtype=np.uint8)), len(labels)
    raise ValueError(f"unknown export format {fmt!r}: use csv, ndjson or idx")
