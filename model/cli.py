"""The training library's commands: download, train, evaluate.

The `mnist-canvas` console script (`app.cli`) adds them next to `serve` and hands them their
defaults from the settings (`CommandDefaults`); this module reads no environment.

    mnist-canvas train --epochs 8 --lr 0.005 --out models/mnist-logreg.safetensors
    mnist-canvas evaluate --model models/mnist-logreg.safetensors
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model.data import Mnist, MnistDataError, Prefetch, ensure_files, load_mnist
from model.device import DEVICES, Device

if TYPE_CHECKING:  # torch-free at start-up: --help and download never import torch
    from model.checkpoint import Checkpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandDefaults:
    """What the commands use where a flag is not given (the caller's settings)."""

    data_dir: Path
    download: bool
    model_path: Path
    device: Device
    threads: int
    lock_timeout: float = 900.0


def add_data_args(parser: argparse.ArgumentParser, defaults: CommandDefaults) -> None:
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir,
                        help=f"MNIST directory (default: {defaults.data_dir})")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        default=defaults.download,
                        help="never download; fail if files are missing")


def add_commands(sub: argparse._SubParsersAction, defaults: CommandDefaults) -> None:
    """Add `download`, `train` and `evaluate` to a subcommand parser."""
    from model.config import ARCHITECTURES, OPTIMIZERS, SCHEDULES, TrainConfig

    config = TrainConfig()
    p = sub.add_parser("download", help="download and verify MNIST")
    add_data_args(p, defaults)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("train", help="train a model and save a checkpoint")
    add_data_args(p, defaults)
    p.add_argument("--arch", choices=ARCHITECTURES, default=config.arch)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=config.optimizer)
    p.add_argument("--lr", type=float, default=config.lr, help="learning rate")
    p.add_argument("--momentum", type=float, default=config.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=config.weight_decay)
    p.add_argument("--batch-size", type=int, default=config.batch_size)
    p.add_argument("--epochs", type=int, default=config.epochs)
    p.add_argument("--schedule", choices=SCHEDULES, default=config.schedule,
                   help="learning-rate schedule")
    p.add_argument("--seed", type=int, default=config.seed)
    p.add_argument("--deskew", action="store_true", help="deskew every input by its moments")
    p.add_argument("--device", choices=DEVICES, default=defaults.device)
    p.add_argument("--threads", type=int, default=defaults.threads,
                   help="torch threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=defaults.model_path,
                   help=f"checkpoint path (default: {defaults.model_path})")
    p.add_argument("--dry-run", action="store_true",
                   help="one epoch on 2,000 images; nothing is saved")
    p.add_argument("--lock-timeout", type=float, default=defaults.lock_timeout,
                   help="seconds to wait while another process trains the same model path")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip fitting the verdict and temperature (see `calibrate`)")
    p.add_argument("--refit-verdict", action="store_true",
                   help="fit the verdict's models of the inputs anew, even when the model at "
                        "--out or the shipped one stores them for the same inputs")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="fit a checkpoint's not-a-digit verdict and "
                       "temperature on the validation split and store them in it")
    add_data_args(p, defaults)
    p.add_argument("--model", type=Path, default=defaults.model_path,
                   help="checkpoint to calibrate (in place)")
    p.add_argument("--out", type=Path, default=None, help="write here instead of in place")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="report a checkpoint's accuracy on validation and test")
    add_data_args(p, defaults)
    p.add_argument("--model", type=Path, default=defaults.model_path,
                   help=f"checkpoint to evaluate (default: {defaults.model_path})")
    p.add_argument("--device", choices=DEVICES, default=defaults.device)
    p.set_defaults(func=cmd_evaluate)


def cmd_download(args: argparse.Namespace) -> int:
    paths = ensure_files(args.data_dir, download=args.download)
    load_mnist(args.data_dir, download=args.download)
    for path in paths.values():
        print(f"ok  {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    # Read MNIST while torch is imported (the next lines): about 0.25 s of wall time saved
    # where a core is free.
    data = Prefetch(args.data_dir, download=args.download)
    started = time.perf_counter()
    from filelock import Timeout

    from model.atomic import model_lock, remove_stale_temporaries
    from model.checkpoint import CheckpointError

    args.import_seconds = time.perf_counter() - started
    if args.dry_run:
        return train_and_save(args, data, None)
    out = args.out
    # The server's lock too: a server training this path on start, or another `train`, and this
    # one never write it at once; whoever waits then trains and replaces the file in turn.
    lock = model_lock(out, args.lock_timeout)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout as exc:
        raise CheckpointError(
            f"another process has held {lock.lock_file} for longer than {args.lock_timeout:g} s "
            "(--lock-timeout): let its training finish, or stop it."
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot lock {lock.lock_file}: {exc.strerror or exc}.") from exc
    try:
        remove_stale_temporaries(out)
        return train_and_save(args, data, out)
    finally:
        lock.release()


def train_and_save(args: argparse.Namespace, prefetch: Prefetch, out: Path | None) -> int:
    """Train as the flags say; save to `out` unless it is None (a dry run)."""
    started = time.perf_counter()
    from model.checkpoint import save_checkpoint
    from model.evaluation import format_report
    from model.training import TrainConfig, train

    imports = getattr(args, "import_seconds", 0.0) + time.perf_counter() - started

    config = TrainConfig(
        arch=args.arch, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs,
        seed=args.seed, schedule=args.schedule, deskew=args.deskew,
    )
    data = prefetch.result()
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
    phases = {"imports": imports, "reading MNIST": prefetch.waited, **result.phases}
    if out is None:
        print(format_phases(phases, prefetch.seconds))
        print("dry run: nothing saved")
        return 0
    started = time.perf_counter()
    ckpt = result.to_checkpoint()
    if not args.no_calibrate:
        ckpt = calibrate_trained(ckpt, data, out, refit=args.refit_verdict)
        phases["calibration"] = time.perf_counter() - started
        print(format_verdict(ckpt))
        started = time.perf_counter()
    save_checkpoint(ckpt, out)
    phases["checkpoint"] = time.perf_counter() - started
    print(format_phases(phases, prefetch.seconds))
    print(f"saved {out} (model version {ckpt.model_version})")
    return 0


def format_phases(phases: dict[str, float], read_seconds: float) -> str:
    """One line: the seconds of each part of the command (imports: torch's, mostly), and how
    long reading MNIST took in its thread (`reading MNIST` is what was left to wait for)."""
    parts = [f"{name} {seconds:.3f} s" for name, seconds in phases.items()]
    return (f"phases: {', '.join(parts)} (MNIST was read in {read_seconds:.3f} s, "
            "beside the imports: the first figure is what was left to wait)")


def calibrate_trained(ckpt: Checkpoint, data: Mnist, out: Path, *, refit: bool) -> Checkpoint:
    """Fit the new weights' verdict. Its models of the inputs (typicality, detector: most of
    the time) depend on the training digits, the input transforms, mean and std, not on the
    weights: when the checkpoint at `out` or the shipped one stores them for the same inputs
    (``inputs_key``), they are reused and only the thresholds, the temperature and the "not
    sure" line are fitted anew, seconds instead of a quarter of a minute."""
    from model.calibrate import calibrate, stored_input_models
    from model.resources import shipped_model_path

    stored = None if refit else stored_input_models([out, shipped_model_path()], ckpt, data)
    if stored is None:
        return calibrate(ckpt, data)
    typicality, detector, source = stored
    print(f"verdict: the models of the inputs stored in {source} are reused (the same digits, "
          "transforms, mean and std); --refit-verdict fits them anew")
    return calibrate(ckpt, data, typicality=typicality, detector=detector)


def format_verdict(ckpt: object) -> str:
    info = getattr(ckpt, "meta", {}).get("verdict", {})
    rel = info.get("reliability", {})
    return (
        f"verdict: {100 * info['valid_rejection']:.2f}% of validation digits called not a "
        f"digit; temperature {info['temperature']:.3f}; not sure under {info['sure_above']:.4f} "
        f"({100 * info['sure_coverage']:.1f}% of validation answered sure); ECE validation "
        f"{rel['valid_before']['ece']:.4f} -> {rel['valid_after']['ece']:.4f}, test "
        f"{rel['test_before']['ece']:.4f} -> {rel['test_after']['ece']:.4f}"
    )


def cmd_calibrate(args: argparse.Namespace) -> int:
    from model.calibrate import calibrate
    from model.checkpoint import load_checkpoint, save_checkpoint

    path = args.model
    ckpt = calibrate(load_checkpoint(path),
                     load_mnist(args.data_dir, download=args.download))
    out = args.out or path
    save_checkpoint(ckpt, out)
    print(format_verdict(ckpt))
    print(f"saved {out} (model version {ckpt.model_version}, weights unchanged)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from model.evaluation import format_report, metrics_from_predictions
    from model.inference import Predictor

    predictor = Predictor.from_path(args.model, device=args.device)
    data = load_mnist(args.data_dir, download=args.download)
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


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, configure logging, dispatch; known errors become one readable line and exit 2."""
    from model.errors import CheckpointError  # not model.checkpoint: `--help` needs no torch

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (MnistDataError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

