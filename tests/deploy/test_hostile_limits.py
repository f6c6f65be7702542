"""The deployment's side of hostile traffic, checked on the files: every serving container is
behind nginx, nginx limits rates, connections and slow clients, and every container is boxed
(read-only root, memory, CPU and pid limits) and given longer to stop than the server's grace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import LAST_RESORT_S
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = (ROOT / "deploy" / "nginx.conf").read_text()


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"])


def _is_nginx(service: dict[str, Any]) -> bool:
    return "nginx" in str(service.get("image", ""))


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert match, text
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def test_only_nginx_publishes_ports(services: dict[str, Any]) -> None:
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"lb", "lb-gpu"}
    assert all(_is_nginx(services[name]) for name in published)
    assert services["lb-gpu"]["depends_on"] == {"web-gpu": {"condition": "service_healthy"}}
    assert services["lb-gpu"]["profiles"] == services["web-gpu"]["profiles"]
    # lb-gpu publishes the port nginx.conf sends to web-gpu.
    assert services["lb-gpu"]["ports"][0].endswith(":8081")
    assert re.search(r"8081\s+http://web-gpu:8000;", NGINX_CONF)
    assert re.search(r"(?m)^\s*listen 8081;", NGINX_CONF)


def test_every_container_is_boxed(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert service.get("mem_limit") and service.get("cpus") and service.get("pids_limit"), name
        assert service.get("cap_drop") == ["ALL"], name


def test_servers_get_longer_to_stop_than_their_grace(services: dict[str, Any]) -> None:
    for name in ("web", "web-gpu"):
        service = services[name]
        grace = float(service["environment"].get("MNIST_CANVAS_SHUTDOWN_GRACE_S",
                                                  Settings().shutdown_grace_s))
        assert _seconds(service["stop_grace_period"]) > grace + LAST_RESORT_S, name


@pytest.mark.parametrize("directive", [
    r"limit_req_zone \$binary_remote_addr zone=\w+:\d+m rate=\d+r/s;",
    r"limit_conn_zone \$binary_remote_addr zone=\w+:\d+m;",
    r"limit_req zone=\w+ burst=\d+ nodelay;",
    r"limit_conn \w+ \d+;",
    r"client_header_timeout \d+s;",
    r"client_body_timeout \d+s;",
    r"send_timeout \d+s;",
    r"keepalive_timeout \d+s;",
    r"large_client_header_buffers \d+ \d+k;",
])
def test_nginx_limits_rates_connections_and_slow_clients(directive: str) -> None:
    assert re.search(directive, NGINX_CONF), directive


def test_nginx_waits_for_the_app_longer_than_its_deadline() -> None:
    read = re.search(r"proxy_read_timeout (\d+)s;", NGINX_CONF)
    assert read and int(read[1]) > Settings().request_timeout_s
