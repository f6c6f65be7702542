# Shared by scripts/run.sh and scripts/test.sh: create .venv and install what the app needs.
# Idempotent: a stamp records what was installed; a second run installs nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"

ensure_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  stamp="$VENV/.mnist-canvas-installed"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  # torch first, pinned, so the project's range is satisfied without pulling a CUDA build.
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives the small CPU-only wheel.
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
  fi
  "$VENV/bin/pip" install --quiet -e "$ROOT$extras"
  echo "$want" > "$stamp"
}
