"""Settings, read from MNIST_CANVAS_* environment variables: the one place that reads the
environment (a test keeps it so). Command-line flags override them (`app.cli`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.device import Device
from model.gate import (
    DEFAULT_CORRECTION_WEIGHT,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_MAX_VALID_DROP,
)
from model.limits import MAX_IMAGE_PIXELS
from model.resources import shipped_model_path

TrainOnStart = Literal["never", "missing", "always"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


def default_data_dir() -> Path:
    """The user's cache: $XDG_CACHE_HOME/mnist-canvas/mnist, by default under ~/.cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mnist-canvas" / "mnist"


class Settings(BaseSettings):
    """Every knob an operator can turn; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="MNIST_CANVAS_", extra="ignore")

    model_path: Path = Field(
        default_factory=shipped_model_path, description="checkpoint to serve (or to train)"
    )
    data_dir: Path = Field(default_factory=default_data_dir, description="MNIST directory")
    download: bool = Field(True, description="download MNIST when files are missing")
    train_on_start: TrainOnStart = Field(
        "missing", description="train when the model file is missing, always, or never"
    )
    device: Device = "auto"
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads; 0: one per core")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body")
    max_batch: int = Field(1000, ge=1, description="most images in one batch request")
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1, description="largest decoded image")
    access_log: bool = Field(False, description="log every request (uvicorn's access log)")
    log_level: LogLevel = "info"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    # Corrections (app/db): SQLite in the data directory unless a postgresql:// URL is given.
    database_url: str | None = Field(
        None, description="postgresql:// or sqlite:/// URL; default: a SQLite file in data_dir"
    )
    database_migrate: bool = Field(True, description="apply database migrations at startup")
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for listing, deleting and exporting corrections"
    )
    # Model registry, hot reload and fine-tuning (issue 13).
    model_poll_seconds: float = Field(
        1.0, ge=0, description="how often each worker checks the registry; 0: never"
    )
    finetune_correction_weight: int = Field(
        DEFAULT_CORRECTION_WEIGHT, ge=1, description="times each correction counts in finetune"
    )
    finetune_holdout_fraction: float = Field(
        DEFAULT_HOLDOUT_FRACTION, gt=0, lt=1, description="share of corrections held out"
    )
    finetune_max_valid_drop: float = Field(
        DEFAULT_MAX_VALID_DROP, ge=0, description="largest MNIST validation loss the gate allows"
    )
    finetune_after_corrections: int = Field(
        0, ge=0, description="fine-tune in the background after N new corrections; 0: off"
    )
    feedback_per_minute: int = Field(
        30, ge=0, description="corrections one client may send per minute; 0: no limit"
    )
    # Not MNIST_CANVAS_*: prometheus_client reads this variable itself when it is imported.
    prometheus_multiproc_dir: Path | None = Field(
        None, validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where the workers share their metrics; `serve` makes a fresh one per start",
    )
    # Hostile traffic (app/limits.py, app/shutdown.py, app/listener.py): what one request may cost.
    max_request_pixels: int = Field(
        100_000_000, ge=1, description="decoded pixels in all the images of one request"
    )
    # Each slot is a worker process with its own GIL (app/workers.py): one per usable core.
    max_concurrent_work: int = Field(
        0, ge=0, description="requests decoding (one worker process each) at once; 0: the "
        "usable cores"
    )
    worker_processes: bool = Field(
        True, description="decode and parse large bodies in worker processes; false/0: threads"
    )
    worker_nice: int = Field(
        10, ge=0, le=19, description="CPU niceness of the worker processes (the server: 0)"
    )
    queue_wait_s: float = Field(1.0, ge=0, description="longest wait for a free worker, then 503")
    loop_lag_interval_s: float = Field(
        0.1, ge=0, description="how often the event loop's lag is sampled for /metrics; 0: never"
    )
    max_queue: int = Field(16, ge=0, description="requests waiting for a worker, then 503")
    request_timeout_s: float = Field(
        5.0, gt=0, description="deadline of one request, body included (504 past it)"
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0, description="on SIGTERM, time for requests in flight to finish"
    )
    header_timeout_s: float = Field(
        5.0, gt=0, description="time for a connection to send a request's headers"
    )
    max_header_bytes: int = Field(16384, ge=1024, description="largest request head")
    keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connections closed after it")
    train_lock_timeout_s: float = Field(
        900.0, gt=0, description="longest wait for another process's training to finish"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
