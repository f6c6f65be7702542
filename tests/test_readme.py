"""The README stays true: its configuration table, quick start and CI command."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def variable(name: str) -> str:
    """A setting's environment variable: MNIST_CANVAS_<NAME>, or its alias (a standard one)."""
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"MNIST_CANVAS_{name.upper()}"


def test_configuration_table_lists_every_setting() -> None:
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", README))
    expected = {variable(name) for name in Settings.model_fields}
    assert expected <= documented


def test_configuration_table_defaults_match_the_code() -> None:
    rows = dict(re.findall(r"^\| `([A-Z][A-Z_]+)` \| `([^`]+)`", README, re.M))
    for name, field in Settings.model_fields.items():
        if field.default_factory is None and not isinstance(field.default, Path | None):
            assert rows[variable(name)] == str(field.default).lower(), name


def test_quick_start_has_the_two_commands_and_ci_runs_the_test_one() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(\./scripts/\S+)", section, re.M)
    assert commands == ["./scripts/run.sh", "./scripts/test.sh"]
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()
