"""A benchmark's results: statistics over measured times, and the end of its command line."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of already sorted values; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values) - 1e-9)))
    return float(sorted_values[rank - 1])


def finish(args: Any, result: dict[str, Any]) -> int:
    """A benchmark CLI's end: write --json if asked; exit 0 when every goal was met."""
    if args.json:
        write_json(args.json, result)
    return 0 if result["ok"] else 1


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {target}")
