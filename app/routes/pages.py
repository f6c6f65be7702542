"""The two HTML pages: the drawing canvas (GET /) and the model card (GET /model).

They render static templates only; everything model-specific is fetched by the page's own
JavaScript from the public REST API, so the pages and the API can never disagree.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False, name="draw")
def draw(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "draw.html", {"active": "draw"})


@router.get("/model", response_class=HTMLResponse, include_in_schema=False, name="model_page")
def model_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "model.html", {"active": "model"})
