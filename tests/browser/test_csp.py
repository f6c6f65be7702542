"""The Content-Security-Policy holds in a real browser: both pages and /docs work under it,
with no violation reported and no console error, and nothing is loaded from another origin."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.browser.drawing import ZERO, draw_mouse, shown_digit, wait_idle
from tests.browser.test_model_page import open_model

# Runs before any page script (Playwright's init scripts are not subject to the page's CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def _watch(page: Any, base: str) -> list[str]:
    """Start recording CSP violations; returns the list of other-origin requests it fills."""
    page.add_init_script(RECORD_VIOLATIONS)
    origin = urlsplit(base).netloc
    foreign: list[str] = []
    page.on("request", lambda req: foreign.append(req.url)
            if urlsplit(req.url).scheme in ("http", "https")
            and urlsplit(req.url).netloc != origin else None)
    return foreign


def _assert_clean(page: Any, foreign: list[str]) -> None:
    assert page.evaluate("window.__cspViolations") == []
    assert page.errors == [], page.errors
    assert foreign == []


def test_draw_page_works_under_the_csp(desktop_page: Any, live_server: str) -> None:
    page = desktop_page
    foreign = _watch(page, live_server)
    response = page.goto("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    draw_mouse(page, ZERO)
    wait_idle(page)
    assert shown_digit(page) is not None  # the page drew, posted and showed an answer
    _assert_clean(page, foreign)


def test_model_page_works_under_the_csp(desktop_page: Any, live_server: str) -> None:
    page = desktop_page
    foreign = _watch(page, live_server)
    open_model(page)
    # The confusion matrix colours its cells with styles set from script.
    assert page.locator("#confusion td[style]").count() > 0
    _assert_clean(page, foreign)


def test_swagger_ui_loads_from_this_server_under_the_csp(desktop_page: Any,
                                                         live_server: str) -> None:
    page = desktop_page
    foreign = _watch(page, live_server)
    page.goto("/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/predict" in p for p in paths)
    _assert_clean(page, foreign)
