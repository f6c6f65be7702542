"""Command line of the training library: download, train, evaluate.

    python -m model.cli train --epochs 8 --lr 0.005 --out models/mnist-logreg.safetensors
    python -m model.cli evaluate --model models/mnist-logreg.safetensors

The `mnist-canvas` console script adds `serve` to these (see `app.cli`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from model.data import MnistDataError, default_data_dir, ensure_files, load_mnist
from model.resources import shipped_model_path

logger = logging.getLogger(__name__)



def env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="MNIST directory (default: $MNIST_CANVAS_DATA_DIR or ~/.cache/mnist-canvas/mnist)",
    )
    parser.add_argument(
        "--no-download", action="store_true",
        help="never download; fail if files are missing (also: MNIST_CANVAS_DOWNLOAD=false)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `download`, `train` and `evaluate` to a subcommand parser."""
    from model.network import ARCHITECTURES
    from model.training import OPTIMIZERS, SCHEDULES, TrainConfig

    defaults = TrainConfig()
    p = sub.add_parser("download", help="download and verify MNIST")
    add_data_args(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("train", help="train a model and save a checkpoint")
    add_data_args(p)
    p.add_argument("--arch", choices=ARCHITECTURES, default=defaults.arch)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    p.add_argument("--lr", type=float, default=defaults.lr, help="learning rate")
    p.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                   help="learning-rate schedule")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--deskew", action="store_true", help="deskew every input by its moments")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                   default=os.environ.get("MNIST_CANVAS_DEVICE", "auto"))
    p.add_argument("--threads", type=int,
                   default=int(os.environ.get("MNIST_CANVAS_TORCH_THREADS", "1")),
                   help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None,
                   help="checkpoint path (default: $MNIST_CANVAS_MODEL_PATH or the shipped model)")
    p.add_argument("--dry-run", action="store_true",
                   help="one epoch on 2,000 images; nothing is saved")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="report a checkpoint's accuracy on validation and test")
    add_data_args(p)
    p.add_argument("--model", type=Path, default=None, help="checkpoint to evaluate")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(func=cmd_evaluate)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir) if args.data_dir else default_data_dir()


def _download_allowed(args: argparse.Namespace) -> bool:
    return not args.no_download and env_flag("MNIST_CANVAS_DOWNLOAD", True)


def model_path_default() -> Path:
    env = os.environ.get("MNIST_CANVAS_MODEL_PATH")
    return Path(env) if env else shipped_model_path()


def cmd_download(args: argparse.Namespace) -> int:
    directory = _data_dir(args)
    paths = ensure_files(directory, download=_download_allowed(args))
    load_mnist(directory, download=_download_allowed(args))
    for path in paths.values():
        print(f"ok  {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from model.checkpoint import save_checkpoint
    from model.evaluation import format_report
    from model.training import TrainConfig, train

    config = TrainConfig(
        arch=args.arch, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs,
        seed=args.seed, schedule=args.schedule, deskew=args.deskew,
    )
    data = load_mnist(_data_dir(args), download=_download_allowed(args))
    if args.dry_run:
        from dataclasses import replace

        config.epochs = 1
        data = replace(data, train_images=data.train_images[:2000],
                       train_labels=data.train_labels[:2000])
    result = train(data, config, device=args.device, threads=args.threads)
    print(f"trained in {result.train_seconds:.2f} s on {result.device}")
    print(format_report(result.valid, "validation"))
    if result.test is not None:
        print(format_report(result.test, "test"))
    if args.dry_run:
        print("dry run: nothing saved")
        return 0
    out = args.out or model_path_default()
    ckpt = result.to_checkpoint()
    save_checkpoint(ckpt, out)
    print(f"saved {out} (model version {ckpt.model_version})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from model.evaluation import format_report, metrics_from_predictions
    from model.inference import Predictor

    predictor = Predictor.from_path(args.model or model_path_default(), device=args.device)
    data = load_mnist(_data_dir(args), download=_download_allowed(args))
    print(f"model {predictor.version} ({predictor.checkpoint.arch}, "
          f"transforms: {list(predictor.transforms) or 'none'})")
    for title, images, labels in (
        ("validation", data.valid_images, data.valid_labels),
        ("test", data.test_images, data.test_labels),
    ):
        probs = predictor.probabilities(images)
        nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())
        metrics = metrics_from_predictions(
            torch.from_numpy(labels), torch.from_numpy(probs.argmax(axis=1)), nll
        )
        print(format_report(metrics, title))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-canvas", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default=os.environ.get("MNIST_CANVAS_LOG_LEVEL", "info"))
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, configure logging, dispatch; known errors become one readable line and exit 2."""
    from model.checkpoint import CheckpointError

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (MnistDataError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
