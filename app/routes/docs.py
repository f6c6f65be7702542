"""GET /docs: Swagger UI served from this server, its files from the fastapi-offline package.

FastAPI's own /docs page loads Swagger UI from a CDN and starts it with an inline script; the
Content-Security-Policy (app/security.py) allows neither. This page loads the same Swagger UI
from the package's files and starts it from /static/js/docs.js. ReDoc (/redoc) is off: it
injects inline styles the policy refuses.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(str(files("fastapi_offline") / "static"))
#: The package's files this page uses, and their types; nothing else there is served.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - API</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/static/js/docs.js"></script>
</body>
</html>
"""


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return HTMLResponse(PAGE.format(title=app.title, openapi_url=app.openapi_url))


@router.get("/docs/assets/{name}")
async def swagger_asset(name: str) -> FileResponse:
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, detail=f"There is no Swagger UI file named {name!r}.")
    return FileResponse(ASSETS / name, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400"})
