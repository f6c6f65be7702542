"""Where a benchmark runs: the repository, the MNIST files, one compute thread, the server's
environment, and a description of the machine for the report."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "mnist-logreg.safetensors"
RESULTS_DIR = REPO / "benchmarks" / "results"


def data_dir() -> Path:
    """MNIST: $MNIST_CANVAS_DATA_DIR, else ../shared/data/mnist beside the repository."""
    env = os.environ.get("MNIST_CANVAS_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "mnist"


def limit_threads() -> None:
    """One compute thread everywhere (torch, BLAS): benchmark numbers per core."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    os.environ["MNIST_CANVAS_TORCH_THREADS"] = "1"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmarked server: CPU, one torch thread, no downloads."""
    env = {
        **os.environ,
        "MNIST_CANVAS_DATA_DIR": str(data_dir()),
        "MNIST_CANVAS_DOWNLOAD": "false",
        "MNIST_CANVAS_TORCH_THREADS": "1",
        "MNIST_CANVAS_DEVICE": "cpu",
        "MNIST_CANVAS_TRAIN_ON_START": "never",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, Python and torch versions: what a number was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:  # noqa: BLE001 - informational only
        torch_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "torch": torch_version,
        "platform": platform.platform(),
    }
