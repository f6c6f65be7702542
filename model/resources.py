"""Files shipped inside the installed packages, found through importlib.resources and never by
walking up from `__file__`: a wheel does not carry the repository around the code.

pyproject.toml maps the repository's top-level `models/` folder to the package `model.weights`
(and `static/`, `templates/` to `app.static`, `app.templates`), so the same call finds them in
an editable checkout and in site-packages.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED_MODEL_NAME = "mnist-logreg.safetensors"


def package_dir(package: str) -> Path:
    """The folder of an installed package as a file-system path (servers and torch read files)."""
    found = files(package)
    if not isinstance(found, Path):
        raise RuntimeError(
            f"package {package} is not a folder on disk ({found!r}); install mnist-canvas from "
            "its wheel or source, not from a zip file"
        )
    return found


def shipped_model_path() -> Path:
    """The checkpoint that ships with the package (the default model to serve)."""
    return package_dir("model.weights") / SHIPPED_MODEL_NAME
