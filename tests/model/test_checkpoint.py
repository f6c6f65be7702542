"""Checkpoints round-trip everything, are written atomically and refuse to be silently wrong."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    Checkpoint,
    CheckpointError,
    from_bytes,
    load_checkpoint,
    save_checkpoint,
    to_bytes,
)
from model.inference import Predictor
from model.network import build_model, set_linear
from model.training import TrainConfig, train
from tests.model.test_training import synthetic


@pytest.fixture(scope="module")
def trained() -> Checkpoint:
    result = train(synthetic(), TrainConfig(epochs=2, arch="logreg"), device="cpu",
                   out=io.StringIO())
    return result.to_checkpoint()


def test_checkpoint_roundtrip_keeps_weights_mean_std_and_metadata(
    trained: Checkpoint, tmp_path: Path
) -> None:
    path = save_checkpoint(trained, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.weight, trained.weight) and torch.equal(loaded.bias, trained.bias)
    assert (loaded.mean, loaded.std, loaded.arch) == (trained.mean, trained.std, "logreg")
    assert loaded.model_version == trained.model_version and len(loaded.model_version) == 12
    meta = loaded.meta
    assert meta["config"]["arch"] == "logreg" and len(meta["history"]) == 2
    assert set(meta["valid"]) >= {"accuracy", "confusion", "precision", "recall"}
    assert meta["test"]["confusion"] and meta["data_sha256"] == "synthetic"
    assert meta["torch_version"] == torch.__version__ and meta["created"]


def test_a_checkpoint_from_one_form_loads_into_the_other(trained: Checkpoint) -> None:
    seq = build_model("sequential")
    set_linear(seq, trained.weight, trained.bias)
    hand = build_model("logreg")
    set_linear(hand, trained.weight, trained.bias)
    x = torch.randn(16, 784)
    torch.testing.assert_close(seq(x), hand(x), rtol=1e-5, atol=1e-5)
    probs = Predictor(trained, device="cpu").probabilities_of_input(
        ((x.numpy() * trained.std + trained.mean) * 255).reshape(16, 28, 28)
    )
    torch.testing.assert_close(torch.from_numpy(probs).log(), seq(x), rtol=1e-3, atol=1e-3)


def test_truncated_checkpoint_is_refused(trained: Checkpoint) -> None:
    raw = to_bytes(trained)
    for cut in (4, 100, len(raw) // 2, len(raw) - 10):
        with pytest.raises(CheckpointError):
            from_bytes(raw[:cut], "cut")


def test_flipped_weight_bytes_are_detected_by_the_hash(trained: Checkpoint) -> None:
    raw = bytearray(to_bytes(trained))
    raw[-50] ^= 0xFF
    with pytest.raises(CheckpointError, match="altered or corrupted|NaN"):
        from_bytes(bytes(raw), "flipped")


def _with_meta(raw: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["mnist_canvas"])
    edit(meta)
    header["__metadata__"]["mnist_canvas"] = json.dumps(meta)
    encoded = json.dumps(header).encode()
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + raw[8 + size :]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema 99"),
        (lambda m: m.pop("mean"), "lacks mean"),
        (lambda m: m.update(arch="mlp"), "unknown architecture"),
        (lambda m: m.update(std=0), "std > 0"),
        (lambda m: m.update(transforms=["sharpen"]), "unknown input transforms"),
    ],
)
def test_incompatible_metadata_is_refused(trained: Checkpoint, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError, match=message):
        from_bytes(_with_meta(to_bytes(trained), edit), "edited")


def test_checkpoint_with_wrong_shapes_is_refused(trained: Checkpoint) -> None:
    from safetensors.torch import save

    raw = to_bytes(trained)
    size = int.from_bytes(raw[:8], "little")
    metadata = json.loads(raw[8 : 8 + size])["__metadata__"]
    bad = save({"weight": torch.zeros(10, 100), "bias": torch.zeros(10)}, metadata=metadata)
    with pytest.raises(CheckpointError, match=r"\(10, 784\)"):
        from_bytes(bad, "shapes")


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world, not a model")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "x")
    with pytest.raises(CheckpointError, match="no model file"):
        load_checkpoint(tmp_path / "missing")


def test_save_is_atomic_and_leaves_no_temporary_files(trained: Checkpoint, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(trained, path)
    save_checkpoint(trained, path)  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_gives_a_clear_error(trained: Checkpoint, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="cannot write the model"):
            save_checkpoint(trained, ro / "m.safetensors")
    finally:
        ro.chmod(0o700)


def test_unwritable_target_gives_a_clear_error(trained: Checkpoint, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(CheckpointError, match="cannot write the model"):
        save_checkpoint(trained, blocker / "m.safetensors")


def test_full_disk_gives_a_clear_error(trained: Checkpoint) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    from model import atomic

    original = atomic.tempfile.mkstemp

    def on_full_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        fd, name = original(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    atomic.tempfile.mkstemp = on_full_disk  # type: ignore[assignment]
    try:
        with pytest.raises(CheckpointError, match="free space|No space"):
            save_checkpoint(trained, Path("/tmp") / "mnist-canvas-full-disk.safetensors")
    finally:
        atomic.tempfile.mkstemp = original  # type: ignore[assignment]
    assert not Path("/tmp/mnist-canvas-full-disk.safetensors").exists()
