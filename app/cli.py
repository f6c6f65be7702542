"""The `mnist-canvas` command: the training library's commands plus `serve`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from model.cli import add_commands, run

if TYPE_CHECKING:
    from app.settings import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Settings travel to every worker process through the environment.
    overrides = {
        "MNIST_CANVAS_MODEL_PATH": args.model,
        "MNIST_CANVAS_DEVICE": args.device,
        "MNIST_CANVAS_TRAIN_ON_START": args.train_on_start,
        "MNIST_CANVAS_DATA_DIR": args.data_dir,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    from app.settings import Settings

    settings = Settings()
    check_model(settings)
    uvicorn.run(
        "app.main:app",
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def check_model(settings: Settings) -> None:
    """Fail before starting workers when the model cannot be served: one clear line, exit 2."""
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.device import resolve_device

    resolve_device(settings.device)  # a ValueError: one line, exit 2
    path = settings.model_path
    if settings.train_on_start == "always":
        return
    if path.exists():
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            raise CheckpointError(
                f"The model file is unusable: {exc} Delete it or set "
                "MNIST_CANVAS_TRAIN_ON_START=always to train a new one."
            ) from exc
    elif settings.train_on_start == "never":
        raise CheckpointError(
            f"No model at {path} and MNIST_CANVAS_TRAIN_ON_START=never. Train one with "
            "`mnist-canvas train --out PATH` or allow training on start."
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-canvas",
        description="Train, evaluate and serve a logistic-regression model of MNIST.",
    )
    parser.add_argument("--log-level", default=os.environ.get("MNIST_CANVAS_LOG_LEVEL", "info"))
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    p = sub.add_parser("serve", help="run the web app and API (uvicorn)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint to serve")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST directory for training")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None)
    p.add_argument("--train-on-start", choices=("never", "missing", "always"), default=None)
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
