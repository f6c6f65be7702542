"""The `mnist-canvas` command: the training library's commands plus `serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from model.cli import add_commands, run

logger = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    # A fresh, empty directory per server start, where every worker writes its metrics (set
    # before anything imports prometheus_client, which picks its storage at import); removed
    # when the server stops.
    with tempfile.TemporaryDirectory(prefix="mnist-canvas-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        logger.info("workers share their metrics in %s", metrics_dir)
        return serve(args)


def serve(args: argparse.Namespace) -> int:
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
    from app.service import StartupError, preflight
    from app.settings import Settings

    settings = Settings()
    try:
        preflight(settings)  # before any worker starts: one clear line instead of tracebacks
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
