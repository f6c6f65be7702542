"""benchmarks/reporting.py: statistics over measured times."""

from __future__ import annotations

import numpy as np

from benchmarks.reporting import percentile


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert np.isnan(percentile([], 50))
