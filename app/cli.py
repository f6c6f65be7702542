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

from app.db.cli import add_database_commands
from app.registry_cli import add_registry_commands
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
    before = args.settings.prometheus_multiproc_dir  # what the environment said at start
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-canvas-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            return serve(args, metrics_dir)
    except Stopped as exc:
        stopped = exc.signum
        return 128 + stopped
    finally:
        # The variable names a removed directory now: a caller that goes on (a test, a
        # refused start) must not see it.
        if before is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(before)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if stopped is not None:
            signal.raise_signal(stopped)


def serve(args: argparse.Namespace, metrics_dir: str) -> int:
    import uvicorn

    from app.db import DatabaseConfigError, database_url
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
        database_url(settings.database_url, settings.data_dir)
    except (StartupError, DatabaseConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # After the preflight, so that a refused start says one line and nothing else.
    logger.info("workers share their metrics in %s", metrics_dir)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        # The listener's limits (app/listener.py); production runs behind nginx as well.
        http=http_protocol(),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_s,
        # SIGTERM first drains for up to shutdown_grace_s (app/shutdown.py); this is uvicorn's
        # last resort after that, for a request that still runs (answered with a JSON 503).
        timeout_graceful_shutdown=LAST_RESORT_S,
    )
    return 0


#: Seconds uvicorn waits after the drain before it cancels what still runs. Work checks the
#: grace between items and single images decode in well under a second, so this is rarely hit.
LAST_RESORT_S = 5


def http_protocol() -> str:
    """uvicorn's fastest HTTP protocol, with the head limits, as an import string."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "app.listener:GuardedH11Protocol"
    return "app.listener:GuardedHttpToolsProtocol"


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
        lock_timeout=settings.train_lock_timeout_s,
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
    add_database_commands(sub)
    add_registry_commands(sub)
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


def console() -> None:
    """The `mnist-canvas` console script (and `python -m app.cli`): main(), then the exit.

    A command that used only the training library (train, evaluate, calibrate) has nothing left
    to do when main returns but free memory: its files are written, renamed and closed and its
    lock released. Python's teardown of torch's modules and objects costs 0.3 s of CPU here
    (`python -c "import torch"`: 1.22 s user, 0.89 s when it ends with os._exit), a sixth of
    `mnist-canvas train --no-calibrate`; so such a process flushes its output and logs and
    ends with os._exit. A server (uvicorn) or a database command (SQLAlchemy) exits normally,
    as their cleanups may need.
    """
    rc = main()
    if "torch" in sys.modules and not {"uvicorn", "sqlalchemy"} & sys.modules.keys():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    raise SystemExit(rc)


if __name__ == "__main__":
    console()
