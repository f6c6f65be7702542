"""The two pages render without a browser: the hooks the JavaScript needs are in the HTML, and
every asset is served by the app itself (no CDN, works offline). Fast; no model is loaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

REPO = Path(__file__).resolve().parents[2]
ASSETS = ["/static/css/base.css", "/static/css/draw.css", "/static/css/model.css",
          "/static/js/common.js", "/static/js/draw.js", "/static/js/model.js",
          "/static/favicon.svg"]
EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?(?:https?:)?//"""  # <script src="https://...">, <link href="//...">
    r"""|url\(\s*["']?(?:https?:)?//"""  # CSS url(https://...) and @import url(...)
    r"""|@import\s+["']https?:"""
    r"""|fetch(?:JSON)?\(\s*["'`]https?:"""  # API calls to another site
)


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Without `with`, the lifespan (model loading) does not run: the pages need no model.
    return TestClient(create_app())


@pytest.mark.parametrize(
    ("path", "ids"),
    [
        ("/", ["canvas", "undo", "clear", "digit", "confidence", "status", "announce", "error",
               "probs", "preview", "template", "contrib", "versus", "scores"]),
        ("/model", ["model-card", "curves", "templates", "confusion", "gallery"]),
    ],
)
def test_page_renders_with_its_hooks(client: TestClient, path: str, ids: list[str]) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for element_id in ids:
        assert f'id="{element_id}"' in html, element_id
    assert 'href="/docs"' in html and 'href="/model"' in html and 'href="/"' in html
    if path == "/":
        assert len(re.findall(r'class="prob-bar" data-digit="\d"', html)) == 10
        assert 'aria-live="polite"' in html


def test_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/model" not in paths


@pytest.mark.parametrize("asset", ASSETS)
def test_assets_are_served_locally(client: TestClient, asset: str) -> None:
    response = client.get(asset)
    assert response.status_code == 200
    assert response.content


def test_no_external_resources() -> None:
    """No CDN, font service or analytics: the pages work offline."""
    files = [*REPO.joinpath("templates").glob("*.html"), *REPO.joinpath("static").rglob("*.js"),
             *REPO.joinpath("static").rglob("*.css")]
    assert files
    for file in files:
        text = file.read_text()
        assert not EXTERNAL.findall(text), f"{file.name} loads something from another site"


@pytest.mark.parametrize(("path", "own", "other"),
                         [("/", "draw.css", "model.css"), ("/model", "model.css", "draw.css")])
def test_each_page_links_the_shared_stylesheet_first_then_its_own(
    client: TestClient, path: str, own: str, other: str
) -> None:
    sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', client.get(path).text)
    assert sheets[0] == "/static/css/base.css"
    assert f"/static/css/{own}" in sheets and f"/static/css/{other}" not in sheets
    for sheet in sheets:
        assert client.get(sheet).status_code == 200, sheet
