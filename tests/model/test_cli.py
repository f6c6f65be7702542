"""The command line: train, evaluate and download, and their errors, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import load_checkpoint
from tests.conftest import SHIPPED_MODEL

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "MNIST_CANVAS_TORCH_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_then_evaluate(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    run = cli("train", "--data-dir", str(data_dir), "--no-download", "--epochs", "2",
              "--arch", "logreg", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
              "--batch-size", "256", "--seed", "3", "--device", "cpu", "--out", str(out))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["epoch", "trn_loss", "val_loss", "accuracy"]
    assert lines[1].split()[0] == "0" and lines[2].split()[0] == "1"
    assert "confusion matrix" in run.stdout and "saved" in run.stdout
    # Other weights, the same inputs: the shipped model's models of the inputs are reused, and
    # the verdict is fitted for these weights.
    assert f"the models of the inputs stored in {SHIPPED_MODEL} are reused" in run.stdout
    ckpt = load_checkpoint(out)
    assert ckpt.meta["verdict"]["model_version"] == ckpt.model_version
    assert ckpt.arch == "logreg" and ckpt.meta["config"]["momentum"] == 0.9
    report = cli("evaluate", "--model", str(out), "--data-dir", str(data_dir), "--no-download")
    assert report.returncode == 0, report.stderr
    test_line = next(line for line in report.stdout.splitlines() if line.startswith("test:"))
    assert f"{ckpt.meta['test']['accuracy']:.4f}" in test_line
    assert "precision" in report.stdout and "confusion matrix" in report.stdout


def test_dry_run_saves_nothing(data_dir: Path, tmp_path: Path) -> None:
    run = cli("train", "--dry-run", "--data-dir", str(data_dir), "--no-download",
              "--out", str(tmp_path / "m.safetensors"))
    assert run.returncode == 0, run.stderr
    assert "dry run" in run.stdout and not (tmp_path / "m.safetensors").exists()


def test_missing_data_with_download_off_is_one_clear_line(tmp_path: Path) -> None:
    run = cli("train", "--data-dir", str(tmp_path), "--no-download")
    assert run.returncode == 2
    assert run.stderr.startswith("error: MNIST files missing from")
    assert "Traceback" not in run.stderr


def test_evaluate_refuses_a_corrupt_model(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    run = cli("evaluate", "--model", str(bad), "--data-dir", str(data_dir))
    assert run.returncode == 2 and "error:" in run.stderr and "Traceback" not in run.stderr


def test_download_reports_verified_files(data_dir: Path) -> None:
    run = cli("download", "--data-dir", str(data_dir), "--no-download")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("ok ") == 4
