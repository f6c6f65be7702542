"""Hot reload: every worker watches the registry and serves its current version within seconds.

A daemon thread per worker process polls the registry's one-row `model_current` table every
`model_poll_seconds`. When it names another version, the thread reads the bytes, verifies them
(SHA-256, then every checkpoint check), builds the Predictor and its JSON views, and only then
swaps the service's references: a request reads the predictor once, so each answer is wholly
from one version and says which. A version that fails verification is never swapped in: the
error is logged and counted (`mnist_canvas_model_reload_failures_total`), and the old model
keeps serving. On first start, the served model is registered as the first version.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.autofinetune import BackgroundFinetune
from app.db import Database, DatabaseUnavailable
from app.db import registry as model_registry
from app.metrics import Registry
from app.service import ModelService
from model.checkpoint import CheckpointError
from model.inference import Predictor

logger = logging.getLogger(__name__)


class ModelWatcher:
    """Polls the registry and swaps in new versions off the request path."""

    def __init__(self, service: ModelService, database: Database, metrics: Registry, *,
                 interval: float, finetune_after: int = 0) -> None:
        self.service = service
        self.database = database
        self.metrics = metrics
        self.interval = interval
        self.served_id: int | None = None  # registry id of what this worker serves
        self.refused: set[int] = set()  # versions that failed verification: never retried
        # Off the request path too: a background fine-tune after N new corrections (0: off).
        self.finetune = BackgroundFinetune(database, every=finetune_after)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            logger.info("model registry polling is off (MNIST_CANVAS_MODEL_POLL_SECONDS=0)")
            return
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                if self.service.predictor is not None and self.database.ready:
                    self.finetune.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                logger.exception("model registry poll failed; the current model keeps serving")
            self._stop.wait(self.interval)

    def poll(self) -> bool:
        """One look at the registry; True when a new version was swapped in."""
        predictor = self.service.predictor
        if predictor is None or not self.database.prepare():
            return False  # the model is still training, or the database is not ready yet
        try:
            with self.database.session() as session:
                if self.served_id is None:
                    row = model_registry.ensure_registered(session, predictor.checkpoint,
                                                           actor="startup")
                    wanted = row.id
                    same = row.model_version == predictor.version
                else:
                    wanted = model_registry.current_id(session) or self.served_id
                    same = wanted == self.served_id
                if same:
                    self.served_id = wanted
                    return False
                if wanted in self.refused:
                    return False
                found = session.get(model_registry.ModelVersion, wanted)
                row_id, version = wanted, found.model_version if found else "?"
                ckpt = model_registry.checkpoint_of(found) if found is not None else None
        except IntegrityError:
            return False  # another worker registered the first version; read it next time
        except (DatabaseUnavailable, SQLAlchemyError) as exc:
            logger.warning("model registry unreachable: %s", exc)
            return False
        except CheckpointError as exc:
            self.refused.add(wanted)
            self.metrics.count_model_reload(ok=False)
            logger.error("model version %s is broken and will not be served: %s", wanted, exc)
            return False
        if ckpt is None:
            return False
        started = time.perf_counter()
        try:
            fresh = Predictor(ckpt, device=self.settings_device())
        except (RuntimeError, ValueError) as exc:
            self.refused.add(row_id)
            self.metrics.count_model_reload(ok=False)
            logger.error("model version %s cannot be loaded: %s", row_id, exc)
            return False
        self.service.swap(fresh)
        self.served_id = row_id
        self.metrics.count_model_reload(ok=True)
        logger.info("hot reload: worker %d now serves registry version %d (%s), loaded in "
                    "%.1f ms", os.getpid(), row_id, version, 1000 * (time.perf_counter() - started))
        return True

    def settings_device(self) -> str:
        return self.service.settings.device
