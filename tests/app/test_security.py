"""Security headers on every response, /docs without a CDN or inline script, 415 for JSON
routes, and the request pixel budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.security import CONTENT_SECURITY_POLICY
from tests.app.conftest import make_settings

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"), ("GET", "/model"), ("GET", "/docs"), ("GET", "/healthz"),
    ("GET", "/static/js/common.js"), ("GET", "/nowhere"), ("POST", "/api/predict"),
])
def test_every_response_carries_the_security_headers(client: TestClient, method: str,
                                                      path: str) -> None:
    response = client.request(method, path)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/", "/model", "/docs"])
def test_pages_load_nothing_from_elsewhere_and_run_no_inline_script(client: TestClient,
                                                                    path: str) -> None:
    html = client.get(path).text
    assert INLINE_SCRIPT.search(html) is None
    assert re.search(r"""(src|href)=["']?(https?:)?//""", html) is None


def test_swagger_ui_files_come_from_the_package_and_nothing_else_is_served(
    client: TestClient,
) -> None:
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text[:5000]
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/docs/assets/redoc.standalone.js").status_code == 404
    assert client.get("/docs/assets/..%2F__init__.py").status_code == 404
    assert client.get("/redoc").status_code == 404


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_json_routes_refuse_the_types_a_cross_site_form_can_send(client: TestClient,
                                                                 ctype: str) -> None:
    body = b'{"inputs": []}'
    v2 = client.post("/v2/models/mnist-logreg/infer", content=body,
                     headers={"content-type": ctype})
    assert v2.status_code == 415 and "application/json" in v2.json()["error"]
    batch = client.post("/api/predict/batch", content=body, headers={"content-type": ctype})
    assert batch.status_code == 415 and "application/json" in batch.json()["detail"]


def test_v2_infer_leaves_octet_stream_to_the_binary_extension(client: TestClient) -> None:
    response = client.post("/v2/models/mnist-logreg/infer", content=b"\x00\x01",
                           headers={"content-type": "application/octet-stream"})
    assert response.status_code != 415


def test_the_request_budget_counts_pixels_from_headers(default_model_path: Path,
                                                       data_dir: Path) -> None:
    from tests.app.test_hostile import batch_of, dots_webp

    settings = make_settings(default_model_path, data_dir, max_request_pixels=1_000_000)
    with TestClient(create_app(settings)) as c:
        small = c.post("/api/predict/batch", content=batch_of(dots_webp(500), 4),
                       headers={"content-type": "application/json"})
        assert small.status_code == 200  # 4 x 250,000 pixels: exactly the budget
        over = c.post("/api/predict/batch", content=batch_of(dots_webp(500), 5),
                      headers={"content-type": "application/json"})
        assert over.status_code == 413
        assert "1,250,000 pixels in all" in over.json()["detail"]
