"""Build the image and run the compose stack for real under podman; check it through nginx.

Run by scripts/deploy-check.sh (which installs podman, runc, debootstrap and the venv first):

    python -m tests.deploy.stack            # build, up, check, print measurements, tear down
    python -m tests.deploy.stack --keep     # ... and leave it up; prints nginx's URL
    python -m tests.deploy.stack --down     # remove a stack left up by --keep

Containers are reached only through ports podman publishes on 127.0.0.1; podman itself is used
to look inside them (user, healthcheck, /metrics of each replica) and to break them (a
firewalled, killed or stopped replica). Each check prints one line: PASS, FAIL or SKIP with the
reason, and the run ends with what it measured. Images stay as a cache; nothing else does.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from PIL import Image

from tests.deploy import podman as pm
from tests.deploy.frontdoor import paced

ROOT = pm.ROOT
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
RESOLVER_TEMPLATE = ROOT / "deploy" / "nginx-resolver.conf.template"
WEB_UID = 10001
# compose.yaml's `postgres` service and its default password (POSTGRES_PASSWORD unset).
POSTGRES_ENV = {
    "MNIST_CANVAS_DATABASE_URL": "postgresql://mnist:mnist-canvas@postgres:5432/mnist",
}
SCALE = 3
MODEL = "/v2/models/mnist-logreg"


class Skip(Exception):
    """A check that this code cannot run yet, with the reason printed in its place."""


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    measured: dict[str, str] = field(default_factory=dict)

    def check(self, name: str, fn: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            note = fn()
            row = (name, "PASS", note)
        except Skip as skip:
            row = (name, "SKIP", str(skip))
        except Exception as error:  # every failure is reported, and the run goes on
            row = (name, "FAIL", f"{type(error).__name__}: {error}".strip())
        self.rows.append(row)
        took = time.monotonic() - started
        print(f"  {row[1]:4}  {name} ({took:.1f} s): {row[2]}", flush=True)

    def measure(self, name: str, value: str) -> None:
        self.measured[name] = value
        print(f"  measured  {name}: {value}", flush=True)

    @property
    def failed(self) -> list[str]:
        return [name for name, status, _ in self.rows if status == "FAIL"]


def step(title: str) -> None:
    print(f"deploy-check: {title}", flush=True)


# --------------------------------------------------------------------------- HTTP


def wait_ready(url: str, timeout: float = 300.0) -> float:
    """Seconds until GET /readyz through nginx answers 200."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except urllib.error.HTTPError as error:
            last = f"{error.code}"
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    raise AssertionError(f"/readyz not 200 within {timeout:.0f} s (last: {last})")


def json_sentence(response: httpx.Response, status: int, key: str = "detail") -> str:
    """The response is `status` with a JSON sentence under `key`, like the app's errors."""
    text = response.text[:300]
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {text}"
    assert response.headers.get("content-type", "").startswith("application/json"), text
    sentence = response.json().get(key)
    assert isinstance(sentence, str) and sentence.rstrip().endswith("."), text
    return sentence


def png(image: np.ndarray) -> bytes:
    """An MNIST digit as a canvas would send it: 280x280, dark ink on white."""
    big = Image.fromarray(255 - image).resize((280, 280), Image.Resampling.NEAREST)
    out = io.BytesIO()
    big.save(out, format="PNG")
    return out.getvalue()


def validation_digits(count: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """The first validation digits (never the test split): what the predictions are checked on."""
    from model.data import load_mnist

    configured = os.environ.get("MNIST_CANVAS_DATA_DIR")
    data_dir = Path(configured) if configured else ROOT.parent / "shared" / "data" / "mnist"
    mnist = load_mnist(data_dir, download=False)
    return mnist.valid_images[:count], mnist.valid_labels[:count]


@dataclass
class Oracle:
    """The same app in this process, with the shipped model: what the stack must answer."""

    png_digits: list[int]
    png_probabilities: list[list[float]]
    v2_digits: list[int]


def oracle(images: np.ndarray) -> Oracle:
    import tempfile
    import warnings

    with warnings.catch_warnings():  # starlette's notice about httpx, printed to the report
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(model_path=ROOT / "models" / "mnist-logreg.safetensors",
                            data_dir=Path(tmp), download=False, train_on_start="never",
                            device="cpu", log_level="warning")
        with TestClient(create_app(settings)) as client:
            answers = [client.post("/api/predict", content=png(img),
                                   headers={"content-type": "image/png"}).json()
                       for img in images]
            v2 = client.post(f"{MODEL}/infer", json=v2_body(images)).json()
    return Oracle([a["digit"] for a in answers], [a["probabilities"] for a in answers],
                  v2_outputs(v2))


def v2_body(images: np.ndarray) -> dict[str, Any]:
    data = (images.reshape(len(images), 784) / 255.0).astype(np.float32).ravel().tolist()
    return {"inputs": [{"name": "input", "shape": [len(images), 784], "datatype": "FP32",
                        "data": data}]}


def v2_outputs(answer: dict[str, Any]) -> list[int]:
    digits = next(o for o in answer["outputs"] if o["name"] == "digit")
    return [int(d) for d in digits["data"]]


# --------------------------------------------------------------------------- the checks


@dataclass
class Stack:
    url: str
    client: httpx.Client
    report: Report
    images: np.ndarray
    labels: np.ndarray
    expected: Oracle

    def web(self) -> list[str]:
        return pm.containers("web")

    # ---- through the front door

    def readyz(self) -> str:
        answer = self.client.get("/readyz")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ready", body
        return f"ready, model {body['model_version']} on {body['device']}"

    def page(self) -> str:
        page = self.client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)))
        assert assets, "the page links no /static/ files"
        for asset in assets:
            answer = self.client.get(asset)
            assert answer.status_code == 200 and answer.content, f"{asset}: {answer.status_code}"
        return f"/ and its {len(assets)} static files: {', '.join(a[8:] for a in assets)}"

    def png_predictions(self) -> str:
        for i, img in enumerate(self.images):
            answer = self.client.post("/api/predict", content=png(img),
                                      headers={"content-type": "image/png"})
            assert answer.status_code == 200, answer.text[:300]
            body = answer.json()
            assert body["digit"] == self.expected.png_digits[i], (i, body["digit"])
            assert np.allclose(body["probabilities"], self.expected.png_probabilities[i],
                               atol=1e-5), i
        right = sum(int(d == y) for d, y in zip(self.expected.png_digits, self.labels,
                                                strict=True))
        return (f"{len(self.images)} validation digits as PNG: the same digits and probabilities "
                f"as the app in-process ({right}/{len(self.images)} match their labels)")

    def v2_inference(self) -> str:
        answer = self.client.post(f"{MODEL}/infer", json=v2_body(self.images))
        assert answer.status_code == 200, answer.text[:300]
        digits = v2_outputs(answer.json())
        assert digits == self.expected.v2_digits, (digits, self.expected.v2_digits)
        return f"a batch of {len(digits)} digits: the same as the app in-process"

    def nginx_413(self) -> str:
        body = b"A" * (11 * 1024 * 1024)  # over nginx's client_max_body_size (10m)
        api = self.client.post("/api/predict", content=body, headers={"content-type": "image/png"})
        sentence = json_sentence(api, 413)
        v2 = self.client.post(f"{MODEL}/infer", content=body,
                              headers={"content-type": "application/json"})
        json_sentence(v2, 413, key="error")
        return f"11 MiB body: 413 {sentence!r} (/v2: under \"error\")"

    def nginx_limits(self) -> str:
        conf = NGINX_CONF.read_text()
        if not re.search(r"(?m)^\s*limit_req\s", conf):
            raise Skip("deploy/nginx.conf limits no request rate yet (the hostile-traffic issue "
                       "adds it); its error pages for 429 and 503 are in place")
        found = re.search(r"(?m)^\s*limit_req_status (\d+);", conf)
        status = int(found.group(1)) if found else 503
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda _: self.client.get("/healthz"), range(200)))
        refused = [a for a in answers if a.status_code == status]
        statuses = Counter(a.status_code for a in answers)
        assert refused, f"200 requests at once, none refused: {statuses}"
        sentence = json_sentence(refused[0], status)
        time.sleep(3)  # let the client's bucket drain before the next check
        return f"{len(refused)} of 200 requests at once refused: {status} {sentence!r}"

    def bad_inputs(self) -> str:
        env = dict(os.environ, MNIST_CANVAS_STACK_URL=self.url)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             str(ROOT / "tests" / "deploy" / "test_front_door.py")],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
        )
        lines = result.stdout.strip().splitlines() or ["no output"]
        summary = lines[-1]
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        assert result.returncode == 0, "; ".join(failed + [summary, result.stderr[-1000:]])
        return f"tests/deploy/test_front_door.py through nginx: {summary.strip('= ')}"

    # ---- inside the containers (through podman, not the network)

    def non_root(self) -> str:
        users = {}
        for name in self.web():
            users[name] = pm.exec_in(name, "id", "-u").stdout.strip()
            assert users[name] == str(WEB_UID), f"{name} runs as uid {users[name]}"
        lb = pm.containers("lb")[0]
        lb_uid = pm.exec_in(lb, "id", "-u").stdout.strip()
        assert lb_uid != "0", "nginx runs as root"
        return f"web as uid {WEB_UID}, lb as uid {lb_uid}"

    def read_only(self) -> str:
        web = compose_service("web")
        if not web.get("read_only"):
            raise Skip("compose.yaml's web has no read_only: true yet (the hostile-traffic "
                       "issue adds it)")
        for name in self.web():
            assert pm.inspect(name)["HostConfig"]["ReadonlyRootfs"], name
            # The user's own home: writable but for the read-only root filesystem.
            probe = pm.exec_in(name, "touch", "/home/mnist/written", check=False)
            assert probe.returncode != 0, f"{name} could write its home folder"
        return "web's root filesystem is read-only: even its user's home folder refuses writes"

    def healthcheck(self) -> str:
        test = pm.image_healthcheck(pm.APP_IMAGE)
        assert test[0] == "CMD", test
        for name in self.web():
            own = pm.exec_in(name, *test[1:], check=False)
            assert own.returncode == 0, f"the image's HEALTHCHECK failed in {name}: {own.stderr}"
            composed = pm.run(["podman", "healthcheck", "run", name], check=False)
            assert composed.returncode == 0, f"compose's healthcheck failed in {name}"
        return "the image's HEALTHCHECK command and compose's healthcheck pass in every replica"

    def nginx_504(self) -> str:
        replicas = self.web()
        pids = [str(pm.inspect(name)["State"]["Pid"]) for name in replicas]
        rule = ["INPUT", "-p", "tcp", "--dport", "8000", "-j", "DROP"]
        for pid in pids:  # the replicas stop answering connections: nginx's connect times out
            pm.run(["nsenter", "-t", pid, "-n", "iptables", "-I", *rule])
        try:
            started = time.monotonic()
            answer = self.client.post("/api/predict", content=png(self.images[0]),
                                      headers={"content-type": "image/png"}, timeout=120)
            took = time.monotonic() - started
        finally:
            for pid in pids:
                pm.run(["nsenter", "-t", pid, "-n", "iptables", "-D", *rule])
        sentence = json_sentence(answer, 504)
        return f"{len(pids)} unreachable replica(s): 504 after {took:.1f} s, {sentence!r}"

    def nginx_502(self) -> str:
        replicas = self.web()
        pm.podman("stop", "--time", "10", *replicas)
        try:
            # While nginx still holds the replicas' addresses (the resolver's `valid`), a
            # connection to one may time out (504) rather than fail (502): JSON either way,
            # until the name `web` is gone and nginx answers 502 at once.
            started = time.monotonic()
            seen: list[int] = []
            while not seen or seen[-1] != 502:
                assert time.monotonic() - started < 90, f"no 502 within 90 s: {seen}"
                answer = paced(lambda: self.client.get("/api/model", timeout=60))
                assert answer.status_code in (502, 504), answer.text[:300]
                json_sentence(answer, answer.status_code)
                seen.append(answer.status_code)
                time.sleep(1)
            took = time.monotonic() - started
            answer = paced(lambda: self.client.post("/api/predict", content=png(self.images[0]),
                                                    headers={"content-type": "image/png"}))
            sentence = json_sentence(answer, 502)
            v2 = paced(lambda: self.client.get(f"{MODEL}/ready", timeout=60))
            json_sentence(v2, 502, key="error")
        finally:
            pm.podman("start", *replicas)
        before = ", ".join(str(code) for code in seen[:-1]) or "nothing else"
        return (f"every replica stopped: 502 {sentence!r} after {took:.0f} s "
                f"(before it: {before})")

    # ---- replicas

    def scale_up(self) -> str:
        started = time.monotonic()
        pm.compose("up", "-d", "--scale", f"web={SCALE}")
        replicas = self.wait_replicas(SCALE)
        took = time.monotonic() - started
        self.report.measure("scale to 3, until every replica is healthy", f"{took:.1f} s")
        # nginx keeps the name's last DNS answer (one replica) for `valid` seconds: until it
        # asks again, every request still goes to the first replica.
        time.sleep(max(0.0, resolver_valid() + 1.0 - (time.monotonic() - started)))
        return f"{len(replicas)} replicas healthy after {took:.1f} s"

    def wait_replicas(self, count: int, timeout: float = 300.0) -> list[str]:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            replicas = self.web()
            healthy = [r for r in replicas
                       if pm.run(["podman", "healthcheck", "run", r], check=False).returncode == 0]
            if len(healthy) >= count:
                return healthy
            time.sleep(1)
        raise AssertionError(f"fewer than {count} healthy replicas after {timeout:.0f} s")

    def predictions_served(self) -> dict[str, int]:
        """Each replica's own count of answered POST /api/predict, read from its /metrics."""
        probe = ("import urllib.request; print(urllib.request.urlopen("
                 "'http://127.0.0.1:8000/metrics', timeout=5).read().decode())")
        counts = {}
        for name in self.web():
            text = pm.exec_in(name, "python", "-c", probe).stdout
            counts[name] = int(sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("mnist_canvas_requests_total{")
                and 'route="/api/predict"' in line and 'status="200"' in line
            ))
        return counts

    def spread(self, requests: int = 60) -> str:
        before = self.predictions_served()
        assert len(before) == SCALE, f"{len(before)} replicas: {sorted(before)}"
        body = png(self.images[1])
        for _ in range(requests):
            answer = paced(lambda: self.client.post("/api/predict", content=body,
                                                    headers={"content-type": "image/png"}))
            assert answer.status_code == 200, answer.text[:300]
        after = self.predictions_served()
        served = {name: after[name] - before[name] for name in before}
        assert sum(served.values()) == requests, served
        assert all(n > 0 for n in served.values()), f"a replica got nothing: {served}"
        spread = " / ".join(str(n) for n in served.values())
        self.report.measure(f"{requests} predictions over {SCALE} replicas", spread)
        return f"{requests} predictions: {spread} per replica (each counted by its /metrics)"

    def kill_one(self) -> str:
        victim = self.web()[0]
        state = pm.inspect(victim)
        restarts_before = int(state.get("RestartCount", 0))
        window = retry_window()
        body = png(self.images[2])
        os.kill(int(state["State"]["Pid"]), signal.SIGKILL)  # as the kernel's OOM killer would
        killed = time.monotonic()
        failures: list[tuple[float, str]] = []
        slowest = 0.0
        back = None
        sent = 0
        while time.monotonic() - killed < window + 20:
            started = time.monotonic()
            try:
                answer = self.client.post("/api/predict", content=body,
                                          headers={"content-type": "image/png"}, timeout=30)
                ok, what = answer.status_code == 200, str(answer.status_code)
            except httpx.HTTPError as error:
                ok, what = False, type(error).__name__
            sent += 1
            slowest = max(slowest, time.monotonic() - started)
            if not ok:
                failures.append((time.monotonic() - killed, what))
            if back is None and int(pm.inspect(victim).get("RestartCount", 0)) > restarts_before:
                if pm.run(["podman", "healthcheck", "run", victim], check=False).returncode == 0:
                    back = time.monotonic() - killed
            time.sleep(0.1)
        late = [(t, what) for t, what in failures if t > window]
        self.report.measure("kill one replica: failed requests", f"{len(failures)} of {sent} "
                            f"(slowest answer {slowest:.1f} s)")
        assert not late, f"failures after the {window:.0f} s retry window: {late}"
        assert back is not None, f"{victim} did not come back by its restart policy"
        self.report.measure("killed replica healthy again after", f"{back:.1f} s")
        return (f"{victim} killed: {sent} requests, {len(failures)} failed "
                f"({', '.join(f'{w} at {t:.1f} s' for t, w in failures) or 'none'}), none after "
                f"the {window:.0f} s retry window; back by its restart policy in {back:.1f} s")

    # ---- features of other issues, checked once they exist

    def corrections_survive(self) -> str:
        if "postgres" not in compose_services():
            raise Skip("compose.yaml has no postgres service yet (the corrections issue adds "
                       "it): a correction surviving down and up is checked once it does")
        if "/api/feedback" not in self.client.get("/openapi.json").json().get("paths", {}):
            raise Skip("compose.yaml has postgres but the app has no POST /api/feedback")
        pm.compose("build", "postgres", profiles=("postgres",))
        self.restart(profiles=("postgres",), env=POSTGRES_ENV)
        stats = "/api/feedback/stats"
        empty = database_ready(lambda: self.client.get(stats)).json()
        sent = database_ready(lambda: self.client.post("/api/feedback", json={
            "pixels": self.images[3].ravel().tolist(), "label": int(self.labels[3])}))
        assert sent.status_code in (200, 201), sent.text[:300]
        stored = database_ready(lambda: self.client.get(stats)).json()
        assert stored != empty, f"the correction changed no statistic: {stored}"
        self.restart(profiles=("postgres",), env=POSTGRES_ENV)
        after = database_ready(lambda: self.client.get(stats)).json()
        assert after == stored, f"before down: {stored}; after up: {after}"
        database = pm.containers("postgres")
        assert database, "no postgres container"
        return (f"correction {sent.json().get('id')} in PostgreSQL ({database[0]}) survived "
                "down and up (named volume)")

    def restart(self, *, profiles: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        """`down` (the volumes stay) and `up` again; nginx gets a new port on 127.0.0.1."""
        pm.compose("down", "--remove-orphans", profiles=profiles, env=env)
        pm.compose("up", "-d", profiles=profiles, env=env)
        self.url = pm.published_url(pm.containers("lb")[0], 8080)
        self.client.base_url = httpx.URL(self.url)
        wait_ready(self.url)

    def promotion_everywhere(self) -> str:
        paths = self.client.get("/openapi.json").json().get("paths", {})
        if "/api/models" not in paths:
            raise Skip("the app has no model registry yet (the learning issue adds it): a "
                       "promotion served by every replica is checked once it does")
        replicas = self.web()
        before = {name: served_version(name) for name in replicas}
        assert len(set(before.values())) == 1, f"replicas disagree before: {before}"
        # A new version made inside the stack, as `mnist-canvas finetune` would store one,
        # promoted in the registry that every replica shares (SQLite in the `data` volume).
        made = pm.exec_in(replicas[0], "python", "-c", PROMOTE).stdout.strip().splitlines()
        version = made[-1]
        assert version and version not in before.values(), made
        promoted = time.monotonic()
        seen: dict[str, str] = {}
        while time.monotonic() - promoted < 60:
            seen = {name: served_version(name) for name in replicas}
            if all(v == version for v in seen.values()):
                break
            time.sleep(0.2)
        took = time.monotonic() - promoted
        assert all(v == version for v in seen.values()), f"after {took:.0f} s: {seen}"
        self.report.measure(f"promotion to all {len(replicas)} replicas serving it",
                            f"{took:.1f} s")
        answers = [self.client.post("/api/predict", json={
            "pixels": self.images[4].ravel().tolist()}) for _ in range(3 * len(replicas))]
        versions = {a.json().get("model_version") for a in answers if a.status_code == 200}
        assert versions == {version}, f"answers through nginx came from {versions}"
        return (f"version {version} promoted in the registry: all {len(replicas)} replicas "
                f"served it within {took:.1f} s, and every answer through nginx names it")


#: Run inside a web container: the current version's weights with the bias nudged (a new
#: version, as a fine-tune makes one), stored and promoted in the registry; prints its hash.
PROMOTE = """
import dataclasses
from app.db import Database, database_url, registry
from app.settings import Settings
settings = Settings()
db = Database(database_url(settings.database_url, settings.data_dir))
assert db.prepare(force=True), db.error
with db.session() as session:
    row = registry.current(session)
    current = registry.checkpoint_of(row)
    nudged = dataclasses.replace(current, bias=current.bias + 1e-3)
    added = registry.add_version(session, nudged, source="deploy-check", parent_id=row.id)
    registry.set_current(session, added, action="promote", actor="deploy-check")
    print(nudged.model_version)
db.dispose()
"""


def served_version(container: str) -> str:
    """The model version one replica serves, asked of it directly (its own /readyz)."""
    probe = ("import json, urllib.request; print(json.load(urllib.request.urlopen("
             "'http://127.0.0.1:8000/readyz', timeout=5))['model_version'])")
    return pm.exec_in(container, "python", "-c", probe).stdout.strip()


def database_ready(send: Callable[[], httpx.Response], timeout: float = 120.0) -> httpx.Response:
    """Send until the corrections database is ready: the app answers 503 while it migrates or
    while PostgreSQL is still starting, and says so."""
    started = time.monotonic()
    while True:
        answer = send()
        if answer.status_code != 503 or time.monotonic() - started > timeout:
            return answer
        time.sleep(1)


def compose_services() -> dict[str, Any]:
    with (ROOT / "compose.yaml").open() as f:
        services: dict[str, Any] = yaml.safe_load(f)["services"]
    return services


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose_services()[name]
    return service


def resolver_valid() -> float:
    """How long nginx keeps a DNS answer (deploy/nginx-resolver.conf.template)."""
    valid = re.search(r"valid=(\d+)s", RESOLVER_TEMPLATE.read_text())
    assert valid, "resolver valid= not found"
    return float(valid.group(1))


def retry_window() -> float:
    """How long nginx may send requests to a dead replica: its DNS answer's life, plus the
    connect timeout of the last request that tries it (deploy/nginx.conf)."""
    connect = re.search(r"proxy_connect_timeout (\d+)s;", NGINX_CONF.read_text())
    assert connect, "proxy_connect_timeout not found"
    return resolver_valid() + float(connect.group(1))


# --------------------------------------------------------------------------- the run


def build(report: Report) -> None:
    step("base images (debootstrap bookworm, Debian's python3; cached)")
    took = pm.build_debian_base()
    report.measure("debootstrap base", f"{took:.0f} s" if took else "cached")
    pm.build_python_base()
    step("wheelhouse (scripts/fill-wheelhouse.sh)")
    env_python = dict(os.environ, PYTHON=sys.executable)
    filled = subprocess.run(["bash", str(ROOT / "scripts" / "fill-wheelhouse.sh")], env=env_python,
                            capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if filled.returncode != 0:
        raise pm.CommandFailed(f"fill-wheelhouse.sh failed:\n{filled.stderr[-3000:]}")
    print("  " + filled.stdout.strip().splitlines()[-1], flush=True)
    step("build: podman-compose build (offline, from the wheelhouse)")
    started = time.monotonic()
    pm.compose("build")
    report.measure("podman-compose build", f"{time.monotonic() - started:.0f} s")
    report.measure("image size (CPU torch, Debian python3 base)",
                   f"{pm.image_size(pm.APP_IMAGE) / 1e6:.0f} MB "
                   f"(base {pm.image_size(pm.PYTHON_IMAGE) / 1e6:.0f} MB)")


def up(report: Report) -> str:
    step("up: podman-compose up -d")
    started = time.monotonic()
    pm.compose("up", "-d")
    lb = pm.containers("lb")
    assert len(lb) == 1, f"lb containers: {lb}"
    url = pm.published_url(lb[0], 8080)
    wait_ready(url)
    report.measure("up to ready (/readyz 200 through nginx)", f"{time.monotonic() - started:.1f} s")
    return url


def check(report: Report, url: str) -> str:
    """Every check, in order; the stack's URL at the end (a restart publishes a new port)."""
    images, labels = validation_digits()
    with httpx.Client(base_url=url, timeout=60) as client:
        stack = Stack(url, client, report, images, labels, oracle(images))
        step(f"checks through {url} (one replica)")
        for name, fn in [
            ("readyz", stack.readyz), ("page and static files", stack.page),
            ("PNG predictions", stack.png_predictions), ("v2 inference", stack.v2_inference),
            ("nginx 413 is JSON", stack.nginx_413),
            ("nginx's rate limit is JSON", stack.nginx_limits),
            ("bad inputs through nginx", stack.bad_inputs), ("non-root", stack.non_root),
            ("read-only root filesystem", stack.read_only),
            ("HEALTHCHECK inside the container", stack.healthcheck),
            ("nginx 504 is JSON", stack.nginx_504),
        ]:
            report.check(name, fn)
        step(f"replicas: --scale web={SCALE}")
        report.check(f"scale to {SCALE}", stack.scale_up)
        report.check("requests spread over the replicas", stack.spread)
        report.check("one replica killed", stack.kill_one)
        report.check("a promotion is served by every replica", stack.promotion_everywhere)
        report.check("nginx 502 is JSON", stack.nginx_502)
        wait_ready(stack.url)
        report.check("corrections survive down and up", stack.corrections_survive)
    return stack.url


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    parser = argparse.ArgumentParser(prog="deploy-check", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="leave the stack up; print its URL")
    mode.add_argument("--down", action="store_true", help="remove a stack left up by --keep")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.down:
        removed = pm.remove_project()
        print(f"deploy-check: removed {len(removed)}: {' '.join(removed) or 'nothing was up'}")
        return 0
    pm.podman("info", "--format", "{{.Host.OCIRuntime.Name}}")  # fails loudly if podman can't
    report = Report()
    build(report)
    pm.remove_project()  # whatever an earlier run left: idempotent
    url = ""
    try:
        url = check(report, up(report))
    finally:
        if not args.keep or report.failed:
            step("down: containers, networks and volumes (images stay)")
            pm.remove_project()
            left = pm.leftovers()
            if left:
                report.rows.append(("tear down", "FAIL", f"left behind: {left}"))
    report.measure("total", f"{time.monotonic() - started:.0f} s")
    print("deploy-check: summary")
    for name, value in report.measured.items():
        print(f"  {name}: {value}")
    counts = {s: sum(1 for _, status, _ in report.rows if status == s)
              for s in ("PASS", "FAIL", "SKIP")}
    print(f"deploy-check: {counts['PASS']} passed, {counts['FAIL']} failed, "
          f"{counts['SKIP']} skipped")
    if report.failed:
        print(f"deploy-check: FAILED: {', '.join(report.failed)}")
        return 1
    if args.keep:
        print(f"deploy-check: the stack is up at {url} (remove it: scripts/deploy-check.sh --down)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
