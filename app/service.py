"""The served model: load it, or train it once (one trainer across processes), and say how it is.

Loading a verified checkpoint happens in the lifespan before the server answers. Training, when
the file is missing (or `train_on_start=always`), runs in a background thread so that /healthz
answers at once and /readyz says 503 until the model is ready.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import Timeout

from app.settings import Settings
from model.atomic import model_lock, remove_stale_temporaries, temporaries
from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.device import resolve_device, set_threads
from model.inference import Predictor

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The server cannot start: no usable model and no way to make one."""


@dataclass
class ModelViews:
    """JSON bodies derived once from the checkpoint, served as they are."""

    card: bytes
    weights: bytes
    errors: bytes


class ModelService:
    """Holds the Predictor once ready; its status drives /readyz."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.predictor: Predictor | None = None
        self.views: ModelViews | None = None
        self.status = "starting"
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._started = time.time()

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    # -- startup --------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model now, or start training it in the background. Raises StartupError."""
        set_threads(self.settings.torch_threads)
        checkpoint = preflight(self.settings)
        self._remove_stale_temporaries()
        if checkpoint is not None:
            try:
                self._use(Predictor(checkpoint, device=self.settings.device))
            except CheckpointError as exc:
                raise StartupError(f"The model file is unusable: {exc}") from exc
            return
        self.status = "training"
        self._thread = threading.Thread(target=self._train_or_wait, name="train", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background training run ends; True when the model is ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def _train_or_wait(self) -> None:
        path = self.settings.model_path
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CheckpointError(
                    f"cannot create the model directory {path.parent}: {exc.strerror or exc}. "
                    "Set MNIST_CANVAS_MODEL_PATH to a writable location."
                ) from exc
            # One trainer per model path (`mnist-canvas train` too): the others block here, then
            # load its file.
            lock = model_lock(path, self.settings.train_lock_timeout_s)
            try:
                lock.acquire()
            except Timeout as exc:
                raise CheckpointError(
                    f"another process has held {lock.lock_file} for longer than "
                    f"{self.settings.train_lock_timeout_s:g} s "
                    "(MNIST_CANVAS_TRAIN_LOCK_TIMEOUT_S): let its training finish, or stop it"
                ) from exc
            try:
                remove_stale_temporaries(path)
                fresh = path.exists() and (
                    self.settings.train_on_start != "always"
                    or path.stat().st_mtime >= self._started
                )
                if not fresh:
                    self._train(path)
                else:
                    logger.info("another process trained %s; loading it", path)
            finally:
                lock.release()
            self._use(Predictor.from_path(path, device=self.settings.device))
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and the log
            logger.exception("could not make a model at %s", path)
            self.status = "failed"
            self.error = f"Training the model failed: {exc}"

    def _train(self, path: Path) -> None:
        # Training code is imported only here, so a server that loads a model never pays for it.
        from model.calibrate import calibrate
        from model.checkpoint import save_checkpoint
        from model.data import load_mnist
        from model.training import train

        logger.info("no usable model at %s: training the default recipe", path)
        data = load_mnist(self.settings.data_dir, download=self.settings.download)
        result = train(
            data, device=self.settings.device, threads=self.settings.torch_threads,
            out=_LogWriter(),
        )
        save_checkpoint(calibrate(result.to_checkpoint(), data), path)
        accuracy = result.test.accuracy if result.test else float("nan")
        logger.info("saved %s (test accuracy %.4f)", path, accuracy)

    def swap(self, predictor: Predictor) -> None:
        """Hot reload (app.rollout): serve `predictor` from now on. Its views are built before
        the references change; a request reads one of them once, so it sees one version."""
        self._use(predictor)

    def _remove_stale_temporaries(self) -> None:
        """Remove what a killed write left beside the model, unless a writer is at work now."""
        path = self.settings.model_path
        if not temporaries(path):
            return  # the usual case: no lock taken, no lock file left beside the model
        try:
            with model_lock(path, 0):
                remove_stale_temporaries(path)
        except (Timeout, OSError):
            pass  # someone is writing (or the directory is read-only): leave it to them

    def _use(self, predictor: Predictor) -> None:
        try:
            predictor.smoke_test()  # before /readyz says ready
        except ValueError as exc:
            raise CheckpointError(f"a test prediction failed: {exc}.") from exc
        self.views = build_views(predictor)
        self.predictor = predictor
        self.status = "ready"
        logger.info(
            "serving model %s (%s) on %s", predictor.version, predictor.checkpoint.arch,
            predictor.device,
        )

    # -- answers ---------------------------------------------------------------------------

    def readiness(self) -> tuple[int, dict[str, Any]]:
        if self.predictor is not None:
            return 200, {
                "status": "ready",
                "model_version": self.predictor.version,
                "device": str(self.predictor.device),
            }
        body: dict[str, Any] = {"status": self.status}
        body["detail"] = self.error or f"The model is {self.status}; try again shortly."
        return 503, body


def preflight(settings: Settings) -> Checkpoint | None:
    """What startup needs, checked: the device, and the model file unless it will be trained.

    Returns the verified checkpoint to serve, or None when training comes first; anything that
    cannot serve is a StartupError with one sentence.
    """
    try:
        resolve_device(settings.device)
    except ValueError as exc:
        raise StartupError(f"{exc} (MNIST_CANVAS_DEVICE).") from exc
    path = settings.model_path
    if settings.train_on_start != "always" and path.exists():
        try:
            checkpoint = load_checkpoint(path)
            Predictor(checkpoint, device="cpu").smoke_test()
            return checkpoint
        except ValueError as exc:  # the smoke test's finding
            raise StartupError(f"The model file is unusable: a test prediction failed: {exc}. "
                               "Delete it or set MNIST_CANVAS_TRAIN_ON_START=always to train a "
                               "new one.") from exc
        except CheckpointError as exc:
            raise StartupError(
                f"The model file is unusable: {exc} Delete it or set "
                "MNIST_CANVAS_TRAIN_ON_START=always to train a new one."
            ) from exc
    if settings.train_on_start == "never":
        raise StartupError(
            f"No model at {path} and MNIST_CANVAS_TRAIN_ON_START=never. Train one with "
            "`mnist-canvas train --out PATH` or allow training on start."
        )
    return None


class _LogWriter:
    """A text stream that sends the fit loop's table to the log, line by line."""

    def __init__(self) -> None:
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                logger.info("train: %s", line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def model_card(predictor: Predictor) -> dict[str, Any]:
    ckpt = predictor.checkpoint
    meta = ckpt.meta
    return {
        "model_version": predictor.version,
        "arch": ckpt.arch,
        "parameters": int(ckpt.weight.numel() + ckpt.bias.numel()),
        "device": str(predictor.device),
        "mean": ckpt.mean,
        "std": ckpt.std,
        "transforms": list(ckpt.transforms),
        "train_size": meta.get("train_size"),
        "valid_size": (meta.get("valid") or {}).get("n"),
        "config": meta.get("config"),
        "history": meta.get("history", []),
        "valid": meta.get("valid"),
        "test": meta.get("test"),
        "train_seconds": meta.get("train_seconds"),
        "trained_on": meta.get("device"),
        "created": meta.get("created"),
        "torch_version": meta.get("torch_version"),
        "data_sha256": meta.get("data_sha256"),
    }


def build_views(predictor: Predictor) -> ModelViews:
    ckpt = predictor.checkpoint
    weights = {
        "weights": ckpt.weight.reshape(10, 28, 28).tolist(),
        "bias": ckpt.bias.tolist(),
        "mean": ckpt.mean,
        "std": ckpt.std,
    }
    items = []
    if ckpt.gallery_images is not None:
        assert ckpt.gallery_true is not None and ckpt.gallery_pred is not None
        for image, true, pred in zip(
            ckpt.gallery_images.tolist(), ckpt.gallery_true.tolist(),
            ckpt.gallery_pred.tolist(), strict=True,
        ):
            items.append({"image": image, "true": true, "predicted": pred})
    return ModelViews(
        card=json.dumps(model_card(predictor)).encode(),
        weights=json.dumps(weights).encode(),
        errors=json.dumps({"items": items}).encode(),
    )
