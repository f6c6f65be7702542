"""The compose deployment for real: scripts/deploy-check.sh builds the image, brings the stack up
under podman, checks it through nginx and tears it down.

It needs root, podman and the Debian and PyPI mirrors (the script installs what is missing).
Where podman cannot run, this fails with the script's reason: a deployment that was never
started is not a deployment that passed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_deploy_check_builds_runs_and_checks_the_stack() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy-check.sh")],
        capture_output=True, text=True, timeout=3600, cwd=ROOT,
    )
    output = result.stdout + result.stderr
    print(output)  # pytest shows it on failure, and with -s: the measurements
    assert result.returncode == 0, output[-6000:]
    assert "deploy-check: FAILED" not in output
    assert "0 failed" in output
    # Nothing of the stack is left behind, and the script says what it measured.
    assert "image size" in output and "up to ready" in output, output[-3000:]
