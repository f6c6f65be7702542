"""The installable wheel: every code package listed, the assets carried as package data and
found through importlib.resources, and a wheel installed into a fresh virtual environment that
serves the page, its static files and a prediction from a directory outside the repository."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model.data import Mnist
from model.inference import Predictor
from model.resources import package_dir, shipped_model_path
from tests.live import LiveServer
from tests.scrape import total

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
ASSET_FOLDERS: dict[str, str] = SETUPTOOLS["package-dir"]  # package -> top-level folder


def git_files(*folders: str) -> list[str]:
    """Files a checkout holds (tracked, plus new ones that are not ignored), repo-relative."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *folders],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return sorted({line for line in out.stdout.splitlines() if (REPO / line).is_file()})


def test_every_code_package_is_listed_for_the_wheel() -> None:
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("app", "model")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found - set(SETUPTOOLS["packages"]) == set(), "add them to pyproject.toml"


def test_asset_folders_are_packages_found_through_importlib_resources() -> None:
    assert set(ASSET_FOLDERS.values()) == {"static", "templates", "models"}
    for package, folder in ASSET_FOLDERS.items():
        assert package in SETUPTOOLS["packages"]
        # The marker setuptools' editable finder needs to import a mapped folder.
        assert (REPO / folder / "__init__.py").is_file()
        assert package_dir(package).resolve() == (REPO / folder).resolve()
    assert shipped_model_path().resolve() == (REPO / "models/mnist-logreg.safetensors").resolve()


def test_code_never_finds_files_from_its_own_path() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for top in ("app", "model")
        for path in (REPO / top).rglob("*.py")
        if any(isinstance(node, ast.Name) and node.id == "__file__"
               for node in ast.walk(ast.parse(path.read_text())))
    ]
    assert offenders == [], "use importlib.resources (model.resources.package_dir)"


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def build_wheels(tmp_path: Path, venv_python: Path) -> tuple[Path, Path]:
    """`pip wheel .` of a clean copy of the checkout, and a wheel built from its sdist."""
    source = tmp_path / "source"
    for name in git_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())

    def run(*args: str | Path, cwd: Path = tmp_path) -> None:
        done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
        "--wheel-dir", tmp_path / "direct", source)
    # The sdist through setuptools' own PEP 517 hook (pip builds wheels only), in the fresh
    # venv with the setuptools that pyproject.toml asks for.
    run(venv_python, "-m", "pip", "install", "--quiet", "setuptools>=68")
    run(venv_python, "-c", "import setuptools.build_meta as b; b.build_sdist('../sdist')",
        cwd=source)
    (sdist,) = (tmp_path / "sdist").glob("*.tar.gz")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
        "--wheel-dir", tmp_path / "from-sdist", sdist)
    (direct,) = (tmp_path / "direct").glob("*.whl")
    (from_sdist,) = (tmp_path / "from-sdist").glob("*.whl")
    return direct, from_sdist


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_page_static_files_and_a_prediction(
    tmp_path: Path, data_dir: Path, mnist: Mnist
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    python = venv / "bin" / "python"
    direct, from_sdist = build_wheels(tmp_path, python)

    names = wheel_names(direct)
    assert wheel_names(from_sdist) == names, "the sdist must carry what the wheel carries"
    expected = {f"app/{name}" for name in git_files("static", "templates")}
    expected.add("model/weights/mnist-logreg.safetensors")
    assert expected - names == set()

    # The dependencies (torch is large) come from this environment, after the fresh venv's own
    # site-packages; mnist-canvas itself comes only from the wheel.
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", direct],
                   check=True, timeout=300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [python, "-c", "import app.main, model.weights; print(app.main.__file__)"],
        cwd=outside, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    server = LiveServer(model_path=None, data_dir=data_dir,
                        command=[str(venv / "bin/mnist-canvas")],
                        cwd=outside, log_path=tmp_path / "server.log", PYTHONPATH="",
                        MNIST_CANVAS_TRAIN_ON_START="never")
    with server:
        ready = server.wait_ready()
        shipped = Predictor.from_path(REPO / "models/mnist-logreg.safetensors", device="cpu")
        assert ready["model_version"] == shipped.version

        with urllib.request.urlopen(server.url + "/", timeout=10) as response:
            page = response.read().decode()
        assert "/static/css/" in page and "/static/js/draw.js" in page
        for name in git_files("static"):
            with urllib.request.urlopen(f"{server.url}/{name}", timeout=10) as response:
                assert response.read() == (REPO / name).read_bytes(), name

        image = mnist.valid_images[0]
        request = urllib.request.Request(
            server.url + "/api/predict", data=json.dumps({"pixels": image.tolist()}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        probs = shipped.probabilities(image[None])[0]
        assert answer["digit"] == int(probs.argmax())
        assert np.allclose(answer["probabilities"], probs, atol=1e-5)
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert total(metrics, "mnist_canvas_predictions_total") == 1
