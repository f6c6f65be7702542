"""GET /data: the corrections people sent, as a page (its JavaScript reads /api/feedback)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.routes.pages import templates

router = APIRouter()


@router.get("/data", response_class=HTMLResponse, include_in_schema=False, name="data_page")
def data_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "data.html", {"active": "data"})
