#!/usr/bin/env bash
# Quick start, part two: install (first time only) and run every check: ruff, mypy, the whole
# test suite (unit, full-MNIST, live-server, browser and deployment tests).
# MNIST_CANVAS_DATA_DIR points at the MNIST files (default: ../shared/data/mnist beside the repo).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv "[dev]"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  # The browser tests drive Debian's Chromium; the proxy config is checked with nginx -t.
  missing=""
  [ -x /usr/bin/chromium ] || missing="$missing chromium"
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
  # The database tests start their own PostgreSQL server with Debian's initdb/pg_ctl.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
  # Letters in several fonts for the not-a-digit tests (benchmarks/nondigits.py).
  [ -d /usr/share/fonts/truetype/dejavu ] || missing="$missing fonts-dejavu-core"
  [ -d /usr/share/fonts/truetype/liberation ] || missing="$missing fonts-liberation"
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
if [ -z "${MNIST_CANVAS_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data/mnist" ]; then
  export MNIST_CANVAS_DATA_DIR="$(cd "$ROOT/../shared/data/mnist" && pwd)"
fi
export MNIST_CANVAS_TORCH_THREADS="${MNIST_CANVAS_TORCH_THREADS:-1}"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
exec "$VENV/bin/python" -m pytest "$@"
