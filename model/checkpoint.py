"""Checkpoints: weights in safetensors, everything needed to rebuild and explain them in metadata.

One format for both architectures: `weight` (10, 784) and `bias` (10,) float32, plus an optional
gallery of misclassified test digits. The JSON metadata holds the architecture, the training
mean/std and input transforms, the training config, per-epoch history, validation and test
metrics, the data checksum, versions and a short model version (a hash of the weights).
Loading verifies all of it; a file that fails is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from model.atomic import write_atomic
from model.errors import CheckpointError as CheckpointError  # re-exported: defined there
from model.network import ARCHITECTURES, N_CLASSES, N_PIXELS
from model.transforms import KNOWN_TRANSFORMS

FORMAT = "mnist-canvas/logreg"
SCHEMA_VERSION = 1
METADATA_KEY = "mnist_canvas"
#: Extra tensors a checkpoint may carry (older readers ignore them).
EXTRA_PREFIXES = ("verdict_",)
REQUIRED_KEYS = (
    "format", "schema_version", "arch", "mean", "std", "transforms", "model_version",
)
#: Optional metadata the server and the model page read, and the JSON types each must have.
OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "config": (dict,), "history": (list,), "valid": (dict,), "test": (dict,),
    "train_size": (int,), "train_seconds": (int, float), "device": (str,), "created": (str,),
    "torch_version": (str,), "data_sha256": (str,),
}
#: Largest |logit| the weights may reach on any image: far below float32's 3.4e38, so softmax
#: always gives finite probabilities.
MAX_LOGIT = 1e30


@dataclass
class Checkpoint:
    """Weights (10, 784), bias (10,) and the metadata that travels with them."""

    weight: torch.Tensor
    bias: torch.Tensor
    arch: str
    mean: float
    std: float
    transforms: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # config, history, metrics, provenance
    gallery_images: torch.Tensor | None = None  # (K, 28, 28) uint8 misclassified test digits
    gallery_true: torch.Tensor | None = None  # (K,) int64
    gallery_pred: torch.Tensor | None = None  # (K,) int64
    # Named tensors beside the model's own, e.g. the verdict's typicality model ("verdict_*").
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        return model_version(self.weight, self.bias)


def model_version(weight: torch.Tensor, bias: torch.Tensor) -> str:
    """A short, stable id of the weights: the first 12 hex digits of their SHA-256."""
    digest = hashlib.sha256()
    digest.update(weight.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    digest.update(bias.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def to_bytes(ckpt: Checkpoint) -> bytes:
    tensors = {
        "weight": ckpt.weight.detach().to(torch.float32).cpu().contiguous(),
        "bias": ckpt.bias.detach().to(torch.float32).cpu().contiguous(),
    }
    if ckpt.gallery_images is not None:
        assert ckpt.gallery_true is not None and ckpt.gallery_pred is not None
        tensors["gallery_images"] = ckpt.gallery_images.to(torch.uint8).contiguous()
        tensors["gallery_true"] = ckpt.gallery_true.to(torch.int64).contiguous()
        tensors["gallery_pred"] = ckpt.gallery_pred.to(torch.int64).contiguous()
    for name, tensor in ckpt.extra_tensors.items():
        if not name.startswith(EXTRA_PREFIXES):
            raise ValueError(f"extra tensor {name!r} must start with one of {EXTRA_PREFIXES}")
        tensors[name] = tensor.detach().cpu().contiguous()
    header = {
        **ckpt.meta,
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "arch": ckpt.arch,
        "mean": ckpt.mean,
        "std": ckpt.std,
        "transforms": list(ckpt.transforms),
        "model_version": ckpt.model_version,
        "torch_version": torch.__version__,
    }
    return bytes(st_save(tensors, metadata={METADATA_KEY: json.dumps(header)}))


def save_checkpoint(ckpt: Checkpoint, path: Path | str) -> Path:
    """Write atomically (temporary file, fsync, rename). Raises CheckpointError on I/O failure."""
    target = Path(path)
    payload = to_bytes(ckpt)
    try:
        write_atomic(target, payload)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write the model to {target}: {exc.strerror or exc}. "
            "Check that the directory exists, is writable and has free space."
        ) from exc
    return target


def _read_metadata(raw: bytes, source: str) -> dict[str, Any]:
    # safetensors: 8-byte little-endian header length, then a JSON header.
    if len(raw) < 8:
        raise CheckpointError(f"{source}: file is too short to be a checkpoint ({len(raw)} bytes).")
    size = int.from_bytes(raw[:8], "little")
    if size <= 0 or 8 + size > len(raw):
        raise CheckpointError(f"{source}: truncated or not a safetensors file.")
    try:
        header = json.loads(raw[8 : 8 + size])
        meta = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}: no mnist-canvas metadata in the header ({exc}).") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: metadata is not a JSON object.")
    return meta


def from_bytes(raw: bytes, source: str = "<bytes>") -> Checkpoint:
    """Parse and verify a checkpoint; every problem is a CheckpointError naming `source`."""
    meta = _read_metadata(raw, source)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{source}: metadata lacks {', '.join(missing)}.")
    check_metadata_types(meta, source)
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{source}: format {meta['format']!r} is not {FORMAT!r}.")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise CheckpointError(
            f"{source}: metadata schema {meta['schema_version']} is not supported "
            f"(this version reads {SCHEMA_VERSION}); retrain with `mnist-canvas train`."
        )
    if meta["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{source}: unknown architecture {meta['arch']!r}.")
    unknown = [t for t in meta["transforms"] if t not in KNOWN_TRANSFORMS]
    if unknown:
        raise CheckpointError(f"{source}: unknown input transforms {unknown}.")
    mean, std = meta["mean"], meta["std"]
    if not all(_is_number(v) and math.isfinite(v) for v in (mean, std)) or std <= 0:
        raise CheckpointError(f"{source}: mean/std must be finite numbers with std > 0.")
    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: tensors are corrupt or truncated ({exc}).") from exc
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or bias is None:
        raise CheckpointError(f"{source}: tensors 'weight' and 'bias' are required.")
    if tuple(weight.shape) != (N_CLASSES, N_PIXELS) or tuple(bias.shape) != (N_CLASSES,):
        raise CheckpointError(
            f"{source}: weight must be ({N_CLASSES}, {N_PIXELS}) and bias ({N_CLASSES},), "
            f"found {tuple(weight.shape)} and {tuple(bias.shape)}."
        )
    if weight.dtype != torch.float32 or bias.dtype != torch.float32:
        raise CheckpointError(f"{source}: weights must be float32.")
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise CheckpointError(f"{source}: weights contain NaN or infinity.")
    version = model_version(weight, bias)
    if version != meta["model_version"]:
        raise CheckpointError(
            f"{source}: weights hash to {version} but the metadata says "
            f"{meta['model_version']}; the file was altered or corrupted."
        )
    check_logit_range(weight, bias, float(mean), float(std), source)
    gallery = tensors.get("gallery_images")
    if gallery is not None:
        check_gallery(gallery, tensors.get("gallery_true"), tensors.get("gallery_pred"), source)
    extra = {k: v for k, v in meta.items() if k not in REQUIRED_KEYS}
    return Checkpoint(
        weight=weight,
        bias=bias,
        arch=meta["arch"],
        mean=float(mean),
        std=float(std),
        transforms=list(meta["transforms"]),
        meta=extra,
        gallery_images=gallery,
        gallery_true=tensors.get("gallery_true") if gallery is not None else None,
        gallery_pred=tensors.get("gallery_pred") if gallery is not None else None,
        extra_tensors={k: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIXES)},
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_metadata_types(meta: dict[str, Any], source: str) -> None:
    """Every key the code reads has the JSON type it expects: one sentence naming the first that
    does not (`"transforms": 5` or `"valid": [1]` would otherwise fail far from here)."""
    problems = []
    for key in ("format", "arch", "model_version"):
        if not isinstance(meta[key], str):
            problems.append(f"{key!r} must be a string")
    if type(meta["schema_version"]) is not int:
        problems.append("'schema_version' must be an integer")
    for key in ("mean", "std"):
        if not _is_number(meta[key]):
            problems.append(f"{key!r} must be a number")
    transforms = meta["transforms"]
    if not isinstance(transforms, list) or not all(isinstance(t, str) for t in transforms):
        problems.append("'transforms' must be a list of names")
    for key, types in OPTIONAL_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            names = " or ".join(TYPE_NAMES[t] for t in types)
            problems.append(f"{key!r} must be {names} or null, not {json.dumps(value)[:40]}")
    if problems:
        raise CheckpointError(f"{source}: the metadata is malformed: {'; '.join(problems)}.")


TYPE_NAMES = {dict: "an object", list: "a list", int: "an integer", float: "a number",
              str: "a string"}


def check_logit_range(weight: torch.Tensor, bias: torch.Tensor, mean: float, std: float,
                      source: str) -> None:
    """Refuse weights and mean/std whose logits can leave float32's range on some image.

    A pixel x in [0, 1] is normalised to (x - mean) / std, so |logit| is at most
    |bias| + sum|w| * max(|mean|, |1 - mean|) / std; `"std": 1e-300` breaks this long
    before any request does.
    """
    reach = max(abs(mean), abs(1.0 - mean)) / std
    bound = float(bias.double().abs().max()) + float(weight.double().abs().sum(dim=1).max()) * reach
    if not math.isfinite(bound) or bound > MAX_LOGIT or not math.isfinite(1.0 / std):
        raise CheckpointError(
            f"{source}: mean {mean:g} and std {std:g} with these weights give logits up to "
            f"{bound:.3g}, beyond float32's range: the file was altered or trained wrongly."
        )


def check_gallery(images: torch.Tensor, true: torch.Tensor | None, pred: torch.Tensor | None,
                  source: str) -> None:
    """The misclassified-digit gallery must be K uint8 images with K labels 0..9 that differ."""
    k = images.shape[0] if images.ndim == 3 else -1
    ok = (
        true is not None and pred is not None and images.dtype == torch.uint8
        and tuple(images.shape[1:]) == (28, 28)
        and tuple(true.shape) == (k,) and tuple(pred.shape) == (k,)
        and bool(((true >= 0) & (true <= 9) & (pred >= 0) & (pred <= 9) & (true != pred)).all())
    )
    if not ok:
        raise CheckpointError(f"{source}: the gallery of misclassified digits is inconsistent; "
                              "the file was altered or corrupted.")


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read and verify a checkpoint file."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{source}: no model file there.") from exc
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot be read ({exc.strerror or exc}).") from exc
    return from_bytes(raw, str(source))
