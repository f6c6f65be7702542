#!/usr/bin/env bash
# Quick start, part one: install (first time only) and serve the app on http://127.0.0.1:8000
# with the shipped model. Extra arguments go to `mnist-canvas serve` (e.g. --port 9000).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv ""
exec "$VENV/bin/mnist-canvas" serve "$@"
