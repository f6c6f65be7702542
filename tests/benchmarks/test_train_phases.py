"""benchmarks/train.py reads what `mnist-canvas train` prints: its phases, and -X importtime."""

from __future__ import annotations

import pytest

from benchmarks.train import import_seconds, parse_phases
from model.cli import format_phases


def test_the_phases_line_train_prints_is_read_back() -> None:
    phases = {"imports": 1.0312, "reading MNIST": 0.0, "statistics": 0.033, "fit": 0.5091,
              "calibration": 6.8287, "checkpoint": 0.0031}
    line = format_phases(phases, 0.654)
    read = parse_phases(f"test: accuracy 0.9268\n{line}\nsaved /tmp/x (model version ab)\n")
    assert read == {**{k: pytest.approx(v, abs=5e-4) for k, v in phases.items()},
                    "reading MNIST, beside the imports": pytest.approx(0.654)}


def test_importtime_self_times_are_summed_by_package() -> None:
    text = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       500 |        500 |     torch._C\n"
        "import time:      1500 |       2000 |   torch\n"
        "import time:       250 |        250 | numpy.core\n"
        "import time:       100 |        100 | model.cli\n"
        "import time:        40 |         40 | argparse\n"
    )
    totals = import_seconds(text)
    assert totals["torch"] == pytest.approx(0.002)
    assert totals["numpy"] == pytest.approx(0.00025)
    assert totals["the project (app, model)"] == pytest.approx(0.0001)
    assert totals["other (standard library, ...)"] == pytest.approx(0.00004)
