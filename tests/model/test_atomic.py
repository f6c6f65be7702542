"""Atomic writes: no temporaries left, the directory fsynced; stale temporaries of killed
writers removed under the lock; one lock for every trainer, with a timeout."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from model.atomic import model_lock, remove_stale_temporaries, write_atomic

REPO = Path(__file__).resolve().parents[2]


def test_write_atomic_fsyncs_the_directory_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "model.safetensors"
    write_atomic(target, b"payload")
    assert target.read_bytes() == b"payload"
    assert synced == [False, True]  # the file's data, then the directory's entry
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_stale_temporaries_of_the_target_are_removed_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    stale = [tmp_path / ".model.safetensors.k2j3h4.tmp", tmp_path / ".model.safetensors.x.tmp"]
    kept = [tmp_path / ".other.safetensors.a.tmp", tmp_path / "model.safetensors",
            tmp_path / "notes.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(target)) == sorted(stale)
    assert sorted(p for p in tmp_path.iterdir()) == sorted(kept)


def test_train_waits_for_the_lock_then_says_who_holds_it(tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    (tmp_path / ".model.safetensors.left.tmp").write_bytes(b"half a model")
    with model_lock(out, 0):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "train", "--out", str(out), "--lock-timeout",
             "0.3", "--data-dir", str(tmp_path), "--no-download"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 2
    assert "another process has held" in done.stderr and "--lock-timeout" in done.stderr
    # The holder may be writing: its temporaries are not the waiter's to remove.
    assert (tmp_path / ".model.safetensors.left.tmp").exists()
