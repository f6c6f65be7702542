"""The two HTML pages: the drawing canvas (GET /) and the model card (GET /model).

They render static templates only; everything model-specific is fetched by the page's own
JavaScript from the public REST API, so the pages and the API can never disagree.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from model.resources import package_dir

templates = Jinja2Templates(directory=package_dir("app.templates"))

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False, name="draw")
def draw(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "draw.html", {"active": "draw"})


@router.get("/model", response_class=HTMLResponse, include_in_schema=False, name="model_page")
def model_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "model.html", {"active": "model"})
