"""The model page in a real browser: model card, training curves, ten templates, confusion
matrix and the gallery of misclassified test digits, at desktop and phone sizes."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NO_HORIZONTAL_SCROLL = (
    "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
)


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.loads(response.read())


def open_model(page: Any) -> None:
    page.goto("/model")
    for section in ("#model-card", "#curves", "#templates", "#confusion", "#gallery"):
        page.wait_for_selector(f"{section}:not([data-state=loading])")


def canvas_is_drawn(page: Any, selector: str) -> list[bool]:
    """For each canvas: is it painted (opaque) and not one flat colour?"""
    return page.locator(selector).evaluate_all(
        """els => els.map(c => {
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let opaque = true, varied = false;
             for (let i = 0; i < d.length; i += 4) {
               if (d[i + 3] !== 255) opaque = false;
               if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) varied = true;
             }
             return opaque && varied; })"""
    )


def test_model_page_desktop(desktop_page: Any, live_server: str, screenshots: Any) -> None:
    page = desktop_page
    card = api(live_server, "/api/model")
    errors = api(live_server, "/api/model/errors")["items"]
    open_model(page)

    # The model card, in words.
    assert page.locator("#model-card").get_attribute("data-state") == "ready"
    text = page.locator("#model-card").inner_text()
    for expected in (
        "7,850", "Logistic regression", f"{card['train_size']:,}", f"{card['valid_size']:,}",
        f"{card['mean']:.4f}", f"{card['std']:.4f}", card["model_version"], card["device"],
        f"learning rate {card['config']['lr']}", f"{100 * card['valid']['accuracy']:.2f}%",
    ):
        assert expected in text, expected
    if card["test"]:
        assert f"{100 * card['test']['accuracy']:.2f}%" in text

    # Training curves: one point per epoch for each of trn_loss, val_loss and accuracy.
    epochs = len(card["history"])
    assert page.locator("#curves svg").count() == 2
    for series in ("trn_loss", "val_loss", "accuracy"):
        line = page.locator(f"#curves polyline[data-series={series}]")
        assert line.count() == 1
        assert len(line.get_attribute("points").split()) == epochs

    # Ten weight templates as heatmaps.
    assert page.locator("#templates .template canvas").count() == 10
    assert all(canvas_is_drawn(page, "#templates .template canvas"))

    # The confusion matrix: 100 cells that add up to the evaluated set.
    cells = page.locator("#confusion td[data-true]")
    assert cells.count() == 100
    shown = sum(int(v) for v in cells.all_inner_texts())
    split = card["test"] or card["valid"]
    assert shown == sum(map(sum, split["confusion"]))
    if card["test"]:
        page.locator("#confusion-split button[data-split=Validation]").click()
        assert page.locator("#confusion table").get_attribute("data-split") == "Validation set"
        shown = sum(int(v) for v in cells.all_inner_texts())
        assert shown == sum(map(sum, card["valid"]["confusion"]))
        page.locator("#confusion-split button[data-split=Test]").click()

    # The gallery of mistakes, with true and predicted labels.
    items = page.locator("#gallery .error-item")
    assert items.count() == len(errors)
    if errors:
        assert all(canvas_is_drawn(page, "#gallery .error-item canvas"))
        first = items.first
        assert first.get_attribute("data-true") == str(errors[0]["true"])
        assert first.get_attribute("data-predicted") == str(errors[0]["predicted"])
        assert f"true {errors[0]['true']}" in first.inner_text()
        assert f"read {errors[0]['predicted']}" in first.inner_text()

    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    assert page.errors == []  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "model-desktop.png"), full_page=True)


def test_model_page_phone(phone_page: Any, screenshots: Any) -> None:
    page = phone_page
    open_model(page)
    assert page.locator("#curves svg").count() == 2
    assert page.locator("#templates .template canvas").count() == 10
    assert page.locator("#confusion td[data-true]").count() == 100
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    # The confusion matrix fits the phone's width without a scroll bar of its own.
    assert page.evaluate(
        "() => { const w = document.getElementById('confusion');"
        " return w.scrollWidth <= w.clientWidth; }"
    )
    assert page.errors == []  # type: ignore[attr-defined]
    page.screenshot(path=str(screenshots / "model-phone.png"), full_page=True)


def test_pages_link_to_each_other_and_the_api(desktop_page: Any) -> None:
    page = desktop_page
    page.goto("/")
    page.get_by_role("link", name="Model", exact=True).click()
    page.wait_for_url("**/model")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Model"
    assert page.locator("a[href='/docs']").count() >= 1
    page.get_by_role("link", name="Draw", exact=True).click()
    page.wait_for_url(lambda url: url.endswith("/"))
    assert page.locator("#canvas").is_visible()


def test_model_page_shows_api_errors(desktop_page: Any) -> None:
    page = desktop_page
    page.route("**/api/model/errors", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"detail": "The model is not ready yet."})))
    open_model(page)
    assert page.locator("#gallery").get_attribute("data-state") == "error"
    assert "The model is not ready yet." in page.locator("#gallery").inner_text()
    assert page.locator("#templates").get_attribute("data-state") == "ready"
