"""Data flows one way: model/ never imports the web layer, and serving never imports training
(creating the first optimizer pulls in torch._dynamo: about a second of imports here)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = ("app", "fastapi", "starlette", "jinja2", "uvicorn")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_model_package_never_imports_the_web_layer() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & set(WEB))
        for path in (REPO / "model").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_serving_a_model_does_not_import_training_code() -> None:
    code = (
        "import sys, app.main\n"
        "bad = [m for m in ('model.training', 'torch._dynamo') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
