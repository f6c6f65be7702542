"""podman and podman-compose as scripts/deploy-check.sh drives them: commands, images, containers.

Every command runs with deploy/podman/containers.conf (runc; default ulimits under this
machine's hard limits) and builds in docker format, which keeps the Dockerfile's HEALTHCHECK
(OCI images have no place for it). Containers are found by podman-compose's labels, so a
scaled service's replicas are all seen whatever their names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "mnist-canvas-check"
COMPOSE_FILES = [ROOT / "compose.yaml", ROOT / "deploy" / "test" / "compose.podman.yaml"]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
DEBIAN_IMAGE = "localhost/mnist-canvas-test/debian:bookworm"
PYTHON_IMAGE = "localhost/mnist-canvas-test/python:3.11-bookworm"
APP_IMAGE = "localhost/mnist-canvas-check:latest"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


class CommandFailed(RuntimeError):
    pass


def compose_files() -> list[Path]:
    """compose.yaml and the test's override; the PostgreSQL stand-in once compose.yaml has it."""
    files = list(COMPOSE_FILES)
    if "\n  postgres:\n" in (ROOT / "compose.yaml").read_text():
        files.append(ROOT / "deploy" / "test" / "compose.podman-postgres.yaml")
    return files


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The host's own MNIST_CANVAS_* settings (a developer's, or a test session's temporary
    # database and poll interval) must not reach compose.yaml's ${...} substitutions: the
    # stack runs with the file's defaults and what a check passes in `extra`.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_CANVAS_")}
    env.update(extra or {})
    env.update(
        CONTAINERS_CONF=str(CONTAINERS_CONF),
        BUILDAH_FORMAT="docker",
        # compose.yaml passes these to the app: nothing to download inside, the shipped model.
        MNIST_CANVAS_DOWNLOAD="false",
        MNIST_CANVAS_TRAIN_ON_START="never",
    )
    return env


def run(
    args: list[str], *, timeout: float = 900, check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output's tail, which says why."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=environment(env), cwd=ROOT
    )
    if check and result.returncode != 0:
        tail = ((result.stdout or "") + (result.stderr or ""))[-3000:]
        raise CommandFailed(f"`{' '.join(args[:6])}` exited {result.returncode}:\n{tail}")
    return result


def podman(*args: str, check: bool = True, timeout: float = 900) -> str:
    return run(["podman", *args], check=check, timeout=timeout).stdout.strip()


def compose(
    *args: str, profiles: tuple[str, ...] = (), env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "podman-compose"
    files = [arg for path in compose_files() for arg in ("-f", str(path))]
    chosen = [arg for profile in profiles for arg in ("--profile", profile)]
    return run([str(tool), "-p", PROJECT, *files, *chosen, *args], timeout=timeout, env=env)


def image_exists(name: str) -> bool:
    return run(["podman", "image", "exists", name], check=False).returncode == 0


def image_size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name))


def image_healthcheck(name: str) -> list[str]:
    """The image's own HEALTHCHECK test, e.g. ["CMD", "python", "-c", ...]."""
    found = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", name))
    if not found or not found.get("Test"):
        raise AssertionError(f"{name} has no HEALTHCHECK (was it built in OCI format?)")
    return list(found["Test"])


def build_debian_base() -> float:
    """debootstrap a minimal bookworm and import it: the root of every test image."""
    if image_exists(DEBIAN_IMAGE):
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mnist-canvas-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
            timeout=1800)
        # What a container never needs: the package lists and caches apt fetches again anyway.
        for leftover in ("var/cache/apt", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", "CMD [\"bash\"]", "-", DEBIAN_IMAGE],
            stdin=tar.stdout, capture_output=True, text=True, env=environment(), timeout=900,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise CommandFailed(f"podman import failed: {imported.stderr[-2000:]}")
    return time.monotonic() - started


def build_python_base() -> None:
    podman("build", "--quiet", "--tag", PYTHON_IMAGE, "--build-arg",
           f"DEBIAN_IMAGE={DEBIAN_IMAGE}", "--file", str(ROOT / "deploy/test/python.Dockerfile"),
           str(ROOT / "deploy" / "test"), timeout=1800)


def containers(service: str, *, all_states: bool = False) -> list[str]:
    """Names of the project's containers of `service`, sorted."""
    args = ["ps", "--format", "{{.Names}}",
            "--filter", f"label=io.podman.compose.project={PROJECT}",
            "--filter", f"label=io.podman.compose.service={service}"]
    if all_states:
        args.insert(1, "--all")
    return sorted(podman(*args).split())


def inspect(container: str) -> dict[str, Any]:
    data = json.loads(podman("container", "inspect", container))
    assert isinstance(data, list) and data, data
    result: dict[str, Any] = data[0]
    return result


def published_url(container: str, port: int) -> str:
    """http://127.0.0.1:PORT where podman published the container's `port`."""
    address = podman("port", container, str(port)).splitlines()[0].strip()
    host, _, published = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise AssertionError(f"{container}:{port} is published on {address}, not on 127.0.0.1")
    return f"http://127.0.0.1:{published}"


def exec_in(container: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", "exec", container, *command], check=check, timeout=120)


def remove_project() -> list[str]:
    """Containers, pods, networks and volumes of the project, whatever state they are in.

    Images stay: they are the cache that makes the next run quick. Returns what was removed.
    """
    label = f"label=io.podman.compose.project={PROJECT}"
    removed: list[str] = []
    names = podman("ps", "--all", "--format", "{{.Names}}", "--filter", label).split()
    if names:
        # --depend: nginx's container requires web's (podman-compose's --requires), so it goes too.
        podman("rm", "--force", "--depend", "--time", "5", *names)
        removed += names
    for kind in ("volume", "network"):
        found = podman(kind, "ls", "--format", "{{.Name}}", "--filter", label).split()
        # A network or volume named after the project but created without labels, too.
        found += [
            n for n in podman(kind, "ls", "--format", "{{.Name}}").split()
            if n.startswith(f"{PROJECT}_") and n not in found
        ]
        if found:
            podman(kind, "rm", "--force", *found)
            removed += found
    pods = podman("pod", "ls", "--format", "{{.Name}}", "--filter", f"name=pod_{PROJECT}").split()
    if pods:
        podman("pod", "rm", "--force", *pods)
        removed += pods
    return removed


def leftovers() -> list[str]:
    label = f"label=io.podman.compose.project={PROJECT}"
    found = podman("ps", "--all", "--format", "{{.Names}}", "--filter", label).split()
    for kind in ("volume", "network"):
        found += [n for n in podman(kind, "ls", "--format", "{{.Name}}").split()
                  if n.startswith(f"{PROJECT}_")]
    return found
