# syntax=docker/dockerfile:1
#
# mnist-canvas: the web app and the CLI in one image.
#
#   docker build -t mnist-canvas .                                   # CPU torch (default)
#   docker build -t mnist-canvas:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # CUDA torch
#   docker build --build-arg PIP_NO_INDEX=1 -t mnist-canvas .       # offline: wheels from wheelhouse/
#
# Offline (air-gapped) builds: fill wheelhouse/ on a connected machine with
# scripts/fill-wheelhouse.sh (docs/deployment.md); with PIP_NO_INDEX=1 pip installs from those
# wheels alone and never asks an index. PYTHON_IMAGE names the base image (a mirror's copy, or
# the Debian-built stand-in of scripts/deploy-check.sh); nothing else differs between builds.
#
# Two stages: the builder makes a virtual environment at /opt/venv, the runtime stage copies
# it onto a clean base, so the build's leftovers (downloads, the build backend) stay behind.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# Where torch comes from decides CPU or CUDA; everything else comes from PyPI.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Inside the range pyproject.toml allows ("torch>=2.3,<2.15"); the same wheel the tests run on.
ARG TORCH_VERSION=2.13.0
# pip reads both from its environment (build args are): 1 = the wheelhouse alone, no index.
ARG PIP_NO_INDEX=0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheelhouse \
    PATH=/opt/venv/bin:$PATH

# torch first and alone (with the empty venv it goes into): the largest layer (hundreds of MB on
# CPU, GBs on CUDA) and the one that changes least, so edits to the other dependencies or to the
# code never download it again. wheelhouse/ is mounted, never copied: no layer keeps the wheels.
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \
    python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /app

# The other dependencies, read from pyproject.toml alone so that a code change keeps this layer.
# torch is already there and satisfies the pin, so pip leaves it alone.
COPY pyproject.toml ./
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \
    python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, as its wheel, without touching the dependencies. The wheel carries the
# page (static/, templates/) and the shipped model as package data (pyproject.toml package-dir),
# found with importlib.resources: the runtime stage needs the venv alone, no source tree.
COPY README.md ./
COPY app ./app
COPY model ./model
COPY static ./static
COPY templates ./templates
COPY models/__init__.py models/mnist-logreg.safetensors ./models/
RUN --mount=type=bind,source=wheelhouse,target=/wheelhouse \
    pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist . \
    && pip install --no-cache-dir --no-deps /tmp/dist/mnist_canvas-*.whl \
    && rm -rf /tmp/dist

FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MNIST_CANVAS_MODEL_PATH=/models/mnist-logreg.safetensors \
    MNIST_CANVAS_DATA_DIR=/data

# A fixed numeric uid/gid: files in the volumes keep one owner across rebuilds, and an
# orchestrator can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --gid 10001 mnist \
    && useradd --uid 10001 --gid 10001 --no-log-init --create-home --shell /usr/sbin/nologin mnist \
    && install --directory --owner=10001 --group=10001 --mode=0755 /models /data

# Code and assets (inside the venv) stay root-owned: the server can read but not change them.
COPY --from=builder /opt/venv /opt/venv

# Model path choice: MNIST_CANVAS_MODEL_PATH points into the /models volume, and the shipped model
# is copied there, owned by the server's user. Docker fills a new, empty named volume from the
# image's contents, so a first `docker compose up` serves the shipped model at once, and
# `mnist-canvas train --out /models/mnist-logreg.safetensors` (the compose `train` service)
# replaces it in place; the retrained model survives rebuilds and upgrades. An empty bind mount
# is not filled: then the app trains at start (MNIST_CANVAS_TRAIN_ON_START=missing) or the model
# can be restored from the copy inside the installed package (docs/deployment.md).
COPY --chown=10001:10001 models/mnist-logreg.safetensors /models/mnist-logreg.safetensors

# Declared after their contents and owners are final: later changes to a volume path are lost.
VOLUME ["/models", "/data"]

USER 10001:10001

EXPOSE 8000

# Ready, not merely alive: /readyz answers 200 only once a model is loaded. Python's own urllib,
# because the slim image has no curl; a non-200 answer raises, which also exits non-zero.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=3).status == 200 else 1)"]

# Exec form: the server is PID 1 and gets docker's SIGTERM directly.
CMD ["mnist-canvas", "serve", "--host", "0.0.0.0", "--port", "8000"]
