"""The training library's errors a command line reports as one line, without importing torch."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated or incompatible."""
