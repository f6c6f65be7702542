#!/usr/bin/env bash
# Offline image builds, step one (docs/deployment.md): on a machine that reaches the package
# indexes, download every wheel the image installs into wheelhouse/ (or the folder given):
# torch (the Dockerfile's TORCH_VERSION, from TORCH_INDEX_URL when set, e.g.
# https://download.pytorch.org/whl/cpu), the dependencies of pyproject.toml and its build
# backend. Step two: `docker build --build-arg PIP_NO_INDEX=1 .` installs from them alone.
# Wheels fit the Python that runs pip (PYTHON, default python3): run this with Python 3.11 on
# Linux x86-64, or inside the image's base (docs/deployment.md shows how). Idempotent: wheels
# already there are not downloaded again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
DEST="$(mkdir -p "${1:-$ROOT/wheelhouse}" && cd "${1:-$ROOT/wheelhouse}" && pwd)"
TORCH_VERSION="$(sed -n 's/^ARG TORCH_VERSION=//p' "$ROOT/Dockerfile")"
REQUIREMENTS="$(mktemp)"
trap 'rm -f "$REQUIREMENTS"' EXIT
# What the image installs, read from pyproject.toml as the Dockerfile reads it.
"$PY" - "$ROOT/pyproject.toml" > "$REQUIREMENTS" <<'PYTHON'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["project"]["dependencies"] + project["build-system"]["requires"]))
PYTHON
pip_download() {
  "$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$DEST" --find-links "$DEST" "$@"
}
# torch alone from its index; then the rest, with the torch just fetched satisfying the range.
pip_download ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
pip_download -r "$REQUIREMENTS" "torch==$TORCH_VERSION"
echo "wheelhouse: $(find "$DEST" -name '*.whl' | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
