"""A checkpoint whose metadata has wrong types or values that break the maths is refused at
load with one sentence; the smoke prediction catches what loading cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from model.checkpoint import METADATA_KEY, Checkpoint, CheckpointError, from_bytes
from model.inference import Predictor

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"

pytestmark = pytest.mark.skipif(not SHIPPED_MODEL.exists(), reason="no shipped model")


def with_meta(raw: bytes, **changes: Any) -> bytes:
    """The same safetensors file with its mnist-canvas metadata changed."""
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    meta.update(changes)
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + raw[8 + size :]


@pytest.fixture(scope="module")
def raw() -> bytes:
    return SHIPPED_MODEL.read_bytes()


def test_the_shipped_checkpoint_passes_every_check(raw: bytes) -> None:
    Predictor(from_bytes(with_meta(raw))).smoke_test()


@pytest.mark.parametrize(("changes", "named"), [
    ({"transforms": 5}, "'transforms' must be a list"),
    ({"transforms": [1]}, "'transforms' must be a list"),
    ({"valid": [1]}, "'valid' must be an object"),
    ({"test": "good"}, "'test' must be an object"),
    ({"history": {}}, "'history' must be a list"),
    ({"train_size": 1.5}, "'train_size' must be an integer"),
    ({"train_size": True}, "'train_size' must be an integer"),
    ({"mean": "0.13"}, "'mean' must be a number"),
    ({"std": True}, "'std' must be a number"),
    ({"schema_version": "1"}, "'schema_version' must be an integer"),
    ({"arch": ["linear"]}, "'arch' must be a string"),
])
def test_a_wrong_metadata_type_is_one_sentence_naming_the_key(
    raw: bytes, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(CheckpointError, match="the metadata is malformed") as info:
        from_bytes(with_meta(raw, **changes), "model.safetensors")
    assert named in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("changes", [{"std": 1e-300}, {"std": 1e-40}, {"mean": 1e300}])
def test_mean_and_std_that_overflow_the_logits_are_refused(
    raw: bytes, changes: dict[str, Any]
) -> None:
    with pytest.raises(CheckpointError, match="beyond float32's range"):
        from_bytes(with_meta(raw, **changes))


def test_a_reasonable_std_still_loads(raw: bytes) -> None:
    from_bytes(with_meta(raw, std=0.05))


def test_the_smoke_test_catches_probabilities_that_are_not_finite(raw: bytes) -> None:
    good = from_bytes(raw)
    broken = Checkpoint(weight=good.weight, bias=good.bias, arch=good.arch, mean=good.mean,
                        std=1e-300)
    with pytest.raises(ValueError, match="not finite"):
        Predictor(broken, device="cpu").smoke_test()
    nan_bias = Checkpoint(weight=good.weight, bias=torch.full((10,), float("nan")),
                          arch=good.arch, mean=good.mean, std=good.std)
    with pytest.raises(ValueError, match="not finite"):
        Predictor(nan_bias, device="cpu").smoke_test()


def test_serve_refuses_a_malformed_checkpoint_with_one_line(raw: bytes, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(with_meta(raw, transforms=5))
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--model", str(bad), "--port", "0",
         "--train-on-start", "never", "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: The model file is unusable:")
    assert "'transforms' must be a list" in lines[0]
