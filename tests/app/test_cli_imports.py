"""What `mnist-canvas` imports before it does anything: no torch (about a second) for commands
that do not train, and no database libraries for `train` (issue 15, CLI start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "sqlalchemy", "alembic", "scipy", "PIL", "fastapi")


def imported_by(*args: str) -> tuple[int, str, list[str]]:
    """Run `mnist-canvas ARGS` in a fresh interpreter; its exit code, stdout and heavy imports."""
    code = (
        "import contextlib, io, json, sys\n"
        "from app.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        rc = main({list(args)!r})\n"
        "    except SystemExit as exc:\n"
        "        rc = exc.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'out': out.getvalue(), 'heavy': heavy}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return int(result["rc"] or 0), result["out"], result["heavy"]


@pytest.mark.parametrize("args", [("--help",), ("train", "--help"), ("db", "--help")])
def test_help_imports_neither_torch_nor_the_database(args: tuple[str, ...]) -> None:
    rc, out, heavy = imported_by(*args)
    assert rc == 0 and "usage: mnist-canvas" in out
    assert heavy == []


def test_download_verifies_the_files_without_torch(data_dir: Path) -> None:
    rc, out, heavy = imported_by("download", "--data-dir", str(data_dir), "--no-download")
    assert rc == 0 and out.count("ok ") == 4
    assert heavy == []


def test_a_dry_run_trains_with_torch_but_without_the_database_or_image_libraries(
    data_dir: Path,
) -> None:
    rc, out, heavy = imported_by("train", "--dry-run", "--data-dir", str(data_dir),
                                 "--no-download", "--device", "cpu", "--threads", "1")
    assert rc == 0 and "dry run: nothing saved" in out
    assert heavy == ["torch"]
