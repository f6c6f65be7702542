"""Settings, read from MNIST_CANVAS_* environment variables: the one place that reads the
environment (a test keeps it so). Command-line flags override them (`app.cli`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.device import Device
from model.preprocess import MAX_IMAGE_PIXELS
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
    # Not MNIST_CANVAS_*: prometheus_client reads this variable itself when it is imported.
    prometheus_multiproc_dir: Path | None = Field(
        None, validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where the workers share their metrics; `serve` makes a fresh one per start",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
