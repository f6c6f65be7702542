"""Server settings, read from MNIST_CANVAS_* environment variables (one class, one prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.cli import DEFAULT_MODEL_PATH
from model.data import default_data_dir
from model.preprocess import MAX_IMAGE_PIXELS


class Settings(BaseSettings):
    """Every knob an operator can turn; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="MNIST_CANVAS_", extra="ignore")

    model_path: Path = Field(DEFAULT_MODEL_PATH, description="checkpoint to serve (or to train)")
    data_dir: Path = Field(default_factory=default_data_dir, description="MNIST directory")
    download: bool = Field(True, description="download MNIST when files are missing")
    train_on_start: Literal["never", "missing", "always"] = Field(
        "missing", description="train when the model file is missing, always, or never"
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads; 0: one per core")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body")
    max_batch: int = Field(1000, ge=1, description="most images in one batch request")
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1, description="largest decoded image")
    access_log: bool = Field(False, description="log every request (uvicorn's access log)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    # Hostile traffic (app/limits.py, app/shutdown.py, app/listener.py): what one request may cost.
    max_request_pixels: int = Field(
        100_000_000, ge=1, description="decoded pixels in all the images of one request"
    )
    max_concurrent_work: int = Field(
        0, ge=0, description="requests decoding or predicting at once; 0: the usable cores"
    )
    queue_wait_s: float = Field(1.0, ge=0, description="longest wait for a free worker, then 503")
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
