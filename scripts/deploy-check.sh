#!/usr/bin/env bash
# Build the image and run the compose stack for real under podman, check it through nginx, print
# what was measured, tear it down (images stay as a cache). CI runs it through
# tests/deploy/test_deploy_check.py. Needs root (podman, debootstrap) and no image registry:
# the base images are built here from Debian packages, the app's wheels come from a wheelhouse.
#   scripts/deploy-check.sh            # check, then remove containers, networks, volumes
#   scripts/deploy-check.sh --keep     # leave the stack up and print nginx's URL
#   scripts/deploy-check.sh --down     # remove it
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
if [ "$(id -u)" != "0" ]; then
  echo "deploy-check: needs root (rootful podman, debootstrap)" >&2
  exit 2
fi
missing=""
for tool in podman runc debootstrap nsenter iptables; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  # podman with runc (crun fails on this kernel's hybrid cgroups), netavark and aardvark-dns for
  # the compose network's DNS; debootstrap for the base image; iptables to make a replica
  # unreachable in the 504 check.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc netavark aardvark-dns \
    debootstrap iptables util-linux >/dev/null
fi
ensure_venv "[dev]"
if [ -z "${MNIST_CANVAS_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data/mnist" ]; then
  export MNIST_CANVAS_DATA_DIR="$(cd "$ROOT/../shared/data/mnist" && pwd)"
fi
cd "$ROOT"
exec "$VENV/bin/python" -m tests.deploy.stack "$@"
