"""The `mnist-canvas` command: the training library's commands plus `serve`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from app.settings import LogLevel, Settings, TrainOnStart
from model.cli import CommandDefaults, add_commands, run
from model.device import DEVICES

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """A stop signal, raised so that cleanup runs before the process ends by it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


def cmd_serve(args: argparse.Namespace) -> int:
    # A fresh, empty directory per server start, where every worker writes its metrics (set
    # before anything imports prometheus_client, which picks its storage at import); removed
    # when the server stops. uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the
    # signal again for the handler it found: with the default one the process would end
    # there, before the directory is removed; this one raises Stopped, and once the
    # directory is gone the signal ends the process as usual (its exit status unchanged).
    stopped: int | None = None
    handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-canvas-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            logger.info("workers share their metrics in %s", metrics_dir)
            return serve(args)
    except Stopped as exc:
        stopped = exc.signum
        return 128 + stopped
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if stopped is not None:
            signal.raise_signal(stopped)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.service import StartupError, preflight

    settings: Settings = args.settings.model_copy(update={
        "model_path": args.model, "data_dir": args.data_dir, "device": args.device,
        "train_on_start": args.train_on_start, "log_level": args.log_level,
    })
    # The workers build their own settings from the environment: the flags travel there.
    for name in ("model_path", "data_dir", "device", "train_on_start", "log_level"):
        os.environ[f"MNIST_CANVAS_{name.upper()}"] = str(getattr(settings, name))
    try:
        preflight(settings)  # before any worker starts: one clear line instead of tracebacks
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The commands, their defaults taken from `settings` (flags override them)."""
    parser = argparse.ArgumentParser(
        prog="mnist-canvas",
        description="Train, evaluate and serve a logistic-regression model of MNIST.",
    )
    parser.add_argument("--log-level", default=settings.log_level, type=str.lower,
                        choices=get_args(LogLevel))
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub, CommandDefaults(
        data_dir=settings.data_dir, download=settings.download, model_path=settings.model_path,
        device=settings.device, threads=settings.torch_threads,
    ))
    p = sub.add_parser("serve", help="run the web app and API (uvicorn)")
    p.add_argument("--host", default=settings.host,
                   help=f"bind address (default {settings.host})")
    p.add_argument("--port", type=int, default=settings.port,
                   help=f"port (default {settings.port})")
    p.add_argument("--workers", type=int, default=settings.workers,
                   help=f"worker processes (default {settings.workers})")
    p.add_argument("--model", type=Path, default=settings.model_path, help="checkpoint to serve")
    p.add_argument("--data-dir", type=Path, default=settings.data_dir,
                   help="MNIST directory for training")
    p.add_argument("--device", choices=DEVICES, default=settings.device)
    p.add_argument("--train-on-start", choices=get_args(TrainOnStart),
                   default=settings.train_on_start)
    p.set_defaults(func=cmd_serve, settings=settings)
    return parser


def settings_problem(exc: ValidationError) -> str:
    """One line naming each environment variable that is wrong and why."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        variable = name if name.isupper() else f"MNIST_CANVAS_{name.upper()}"
        problems.append(f"{variable}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()  # the environment, read once; flags override it
    except ValidationError as exc:
        print(f"error: {settings_problem(exc)}", file=sys.stderr)
        return 2
    return run(build_parser(settings), argv)


if __name__ == "__main__":
    raise SystemExit(main())
