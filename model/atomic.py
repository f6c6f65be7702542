"""Writing files so that a crash never leaves half a file behind, and one writer at a time.

`write_atomic` writes a temporary file beside the target, fsyncs it, renames it over the
target and fsyncs the directory, so the rename itself survives a power cut. `model_lock` is the
lock that every trainer of a model path takes (the server training on start and
`mnist-canvas train`); whoever holds it removes the temporaries a killed writer left behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from filelock import FileLock

logger = logging.getLogger(__name__)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


TEMP_SUFFIX = ".tmp"


def write_atomic(target: Path, payload: bytes) -> None:
    """Write to a temporary file beside `target`, fsync, rename over it, fsync the directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target),
                                    suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; a model or data file is meant to be read by other users
        # (a container's non-root user, for one).
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename still happened
        pass
    finally:
        os.close(fd)


def model_lock(target: Path, timeout_s: float) -> FileLock:
    """The lock every writer of `target` takes; acquiring it raises filelock.Timeout after
    `timeout_s` seconds (a negative timeout waits forever)."""
    return FileLock(str(target) + ".lock", timeout=timeout_s)


def temporaries(target: Path) -> list[Path]:
    """The temporary files of `target` that `write_atomic` makes (a writer's, or a dead one's)."""
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f"{_temp_prefix(target)}*{TEMP_SUFFIX}"))


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporary files that killed writers of `target` left; call with its lock held.

    Returns what was removed. Only names `write_atomic` makes are touched.
    """
    removed: list[Path] = []
    for path in temporaries(target):
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("could not remove the stale temporary file %s: %s", path, exc)
            continue
        logger.info("removed %s, left by a write that did not finish", path)
        removed.append(path)
    return removed
