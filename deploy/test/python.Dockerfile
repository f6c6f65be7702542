# Test stand-in for python:3.11-slim-bookworm, built by scripts/deploy-check.sh where no image
# registry can be reached: Debian's own Python 3.11 on a debootstrap'd bookworm base. The app's
# Dockerfile takes it as PYTHON_IMAGE; `python` is on PATH as in the official image.
ARG DEBIAN_IMAGE=localhost/mnist-canvas-test/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
