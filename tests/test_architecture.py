"""Data flows one way: model/ never imports the web layer, and serving never imports training
(creating the first optimizer pulls in torch._dynamo: about a second of imports here).
Configuration has one source: only app/settings.py reads the environment."""

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


def environment_reads(path: Path) -> list[int]:
    """Lines that read the environment (os.environ, os.getenv); writing `os.environ[k] = v`
    (the CLI handing flags to its worker processes) is not reading."""
    tree = ast.parse(path.read_text())
    writes = {
        id(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
    }
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os"
                and id(node) not in writes):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                alias.name in ("environ", "environb", "getenv") for alias in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_the_settings_class_reads_the_environment() -> None:
    offenders = {
        str(path.relative_to(REPO)): environment_reads(path)
        for top in ("app", "model")
        for path in (REPO / top).rglob("*.py")
        if path != REPO / "app" / "settings.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}, "read it through app.settings"


def test_the_environment_guard_sees_a_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nos.environ['A'] = '1'\nx = os.environ.get('B')\n"
                      "y = os.getenv('C')\nfrom os import environ\n")
    assert environment_reads(sample) == [3, 4, 5]
