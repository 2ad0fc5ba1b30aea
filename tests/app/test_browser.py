"""The app in a real browser: `streamlit run app.py` on a free port, driven with Playwright and
Debian's Chromium. Visits every page, hovers the embedding scatter until Vega's tooltip shows a
thumbnail, uploads an image on the Retrieval page, and runs five sessions against one server
while one of them trains. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time

import pytest

from benchmarks.loadtest import wait_until_settled

from test_app_helpers import SHOTS, digit_png

pytestmark = pytest.mark.browser

PAGES = {"": "Contrastive Explorer", "train": "Train", "augmentations": "Augmentations",
         "embedding": "Embedding space", "metrics": "Metrics", "retrieval": "Retrieval", "compare": "Compare"}
VIEWPORT = {"width": 1400, "height": 2200}


def server_cache_dir(prefix: str):
    """A fresh cache folder (uploaded archives) in ``CL_CACHE_DIR`` for one test module's server,
    set before the server starts and restored after; for a module-scoped autouse fixture to
    ``yield from``."""
    folder = tempfile.mkdtemp(prefix=prefix)
    old = os.environ.get("CL_CACHE_DIR")
    os.environ["CL_CACHE_DIR"] = folder
    yield folder
    if old is None:
        os.environ.pop("CL_CACHE_DIR", None)
    else:
        os.environ["CL_CACHE_DIR"] = old
    shutil.rmtree(folder, ignore_errors=True)


def idle(page, stable: float = 0.8, timeout: float = 150) -> None:
    wait_until_settled(page, stable, timeout, poll_ms=150)


def visit(page, path: str) -> None:
    page.goto(f"{page.context._cl_url}/{path}")
    idle(page)
    assert page.locator("[data-testid=stException]").count() == 0, page.locator("[data-testid=stException]").first.inner_text()


def new_page(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    context._cl_url = server["url"]
    # Generous limits: CI's 2 cores serve five sessions and a training at once.
    context.set_default_timeout(120_000)
    context.set_default_navigation_timeout(120_000)
    return context.new_page()


def sidebar_text(page) -> str:
    """The sidebar's text, including what its select boxes show."""
    return page.evaluate(
        "() => { const s = document.querySelector('[data-testid=stSidebar]'); if (!s) return '';"
        " const vals = [...s.querySelectorAll('input')].map(i => i.value || i.getAttribute('aria-label') || '');"
        " const sel = [...s.querySelectorAll('[data-testid=stSelectbox]')].map(e => e.textContent);"
        " return s.innerText + '\\n' + vals.join('\\n') + '\\n' + sel.join('\\n'); }")


def tooltip_has_image(page) -> bool:
    return page.evaluate("() => { const t = document.getElementById('vg-tooltip-element');"
                         " return !!(t && t.classList.contains('visible') && t.querySelector('img')); }")


def find_tooltip_image(page, tries: int = 25, timeout: float = 60) -> bool:
    """Hover scatter points until Vega's tooltip shows an <img> (the point's thumbnail).

    Vega draws small charts as SVG (one path per point: hover those) and may draw large ones on
    a canvas (then scan the plot area from the centre outwards)."""
    chart = page.locator("[data-testid=stVegaLiteChart]").first
    chart.scroll_into_view_if_needed()
    points = chart.locator("g.mark-symbol path")
    n = points.count()
    if n:
        for i in range(0, n, max(1, n // tries)):
            box = points.nth(i).bounding_box()
            if not box:
                continue
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_timeout(120)
            if tooltip_has_image(page):
                return True
        return False
    box = chart.locator("canvas").first.bounding_box()
    assert box and box["width"] > 100, "the scatter is drawn"
    cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2
    t0 = time.time()
    for radius in range(0, int(box["height"] / 2), 5):
        steps = max(1, radius // 2)
        for k in range(steps):
            if time.time() - t0 > timeout:
                return False
            x = cx + radius * math.cos(2 * math.pi * k / steps)
            y = cy + radius * math.sin(2 * math.pi * k / steps)
            page.mouse.move(x, y)
            if tooltip_has_image(page):
                return True
    return False


# ------------------------------------------------------------------------------------------ tests
def test_every_page_and_the_scatter_tooltip(browser, server):
    page = new_page(browser, server)
    # A fresh server's first request is a page URL (a bookmark): it must still get the sidebar.
    visit(page, "embedding")
    assert "Data set" in sidebar_text(page) and "Model" in sidebar_text(page)
    assert page.get_by_text("540 of 540 points").count() >= 1
    assert find_tooltip_image(page), "hovering a point shows a tooltip with the image"
    tooltip = page.locator("#vg-tooltip-element")
    src = tooltip.locator("img").first.get_attribute("src")
    assert "/app/static/thumbs/" in src or src.startswith("data:image/png;base64,")  # by URL (ui/images.py)
    assert "class" in tooltip.inner_text()
    page.screenshot(path=str(SHOTS / "embedding-tooltip.png"))
    # clicking the point under the mouse selects it and shows its image below the chart
    page.mouse.down()
    page.mouse.up()
    idle(page)
    assert page.get_by_text("Selected:").count() >= 1
    page.screenshot(path=str(SHOTS / "embedding-selected.png"))

    for path, title in PAGES.items():
        visit(page, path)
        assert page.get_by_role("heading", name=title).count() >= 1, path
        assert "Data set" in sidebar_text(page)
        page.screenshot(path=str(SHOTS / f"page-{path or 'overview'}.png"))
        if path == "metrics":  # clicking a confusion-matrix cell lists those images
            cells = page.locator("[data-testid=stVegaLiteChart]").nth(1).locator("g.mark-rect.role-mark path")
            assert cells.count() == 100, "a 10x10 confusion matrix"
            cells.first.scroll_into_view_if_needed()
            cells.first.click()
            idle(page)
            assert page.get_by_text("of class 0 classified correctly").count() >= 1
            page.screenshot(path=str(SHOTS / "metrics-cell-clicked.png"))
    page.context.close()


def test_upload_on_retrieval_shows_preprocessing_and_neighbours(browser, server):
    page = new_page(browser, server)
    visit(page, "retrieval")
    page.get_by_role("tab", name="Your own image").click()
    uploader = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploader.set_input_files(files=[{"name": "my-digit.png", "mimeType": "image/png", "buffer": digit_png()}])
    idle(page)
    page.get_by_text("neighbours of your image").first.wait_for(timeout=120000)
    assert page.get_by_text("inverted colours").count() >= 1, "the preprocessing steps are shown"
    panel = page.locator("[data-testid=stTabPanel]:visible, [role=tabpanel]:visible").first
    assert panel.locator("img").count() >= 12, "original, preprocessed and ten neighbours"
    page.screenshot(path=str(SHOTS / "retrieval-upload.png"))

    uploader.set_input_files(files=[{"name": "vector.svg", "mimeType": "image/svg+xml",
                                     "buffer": b'<svg xmlns="http://www.w3.org/2000/svg"/>'}])
    idle(page)
    assert page.get_by_text("Cannot use this file").count() >= 1
    assert page.locator("[data-testid=stException]").count() == 0
    page.screenshot(path=str(SHOTS / "retrieval-hostile-upload.png"))
    page.context.close()


def test_five_sessions_on_one_server_while_one_trains(browser, server):
    pages = [new_page(browser, server) for _ in range(5)]
    trainer, others = pages[0], pages[1:]
    visit(trainer, "train")
    epochs = trainer.get_by_label("Epochs")
    epochs.fill("1")
    epochs.press("Tab")
    trainer.get_by_role("button", name="Start training").click()
    trainer.get_by_text("Cancel training").first.wait_for(timeout=120000)

    # while it trains, four other sessions use every page and see nothing of it
    t0 = time.time()
    for i, page in enumerate(others):
        for path in (("embedding", "retrieval"), ("metrics", "compare"), ("augmentations", "embedding"),
                     ("retrieval", "metrics"))[i]:
            visit(page, path)
            assert "in the background" not in sidebar_text(page)
    responsive_s = time.time() - t0

    trainer.get_by_text("Training finished").first.wait_for(timeout=400000)
    idle(trainer)
    assert "trained this session" in sidebar_text(trainer)
    assert "images/s" in trainer.locator("[data-testid=stProgress]").first.inner_text() or \
        trainer.get_by_text("images/s").count() >= 1
    trainer.screenshot(path=str(SHOTS / "train-finished.png"))
    saved = list(server["runs"].glob("*.safetensors"))
    assert len(saved) == 1

    for page in others:
        visit(page, "retrieval")
        assert "trained this session" not in sidebar_text(page), "another session's model must not leak"
    assert responsive_s < 240, f"pages took {responsive_s:.0f} s while a model trained"
    for page in pages:
        page.context.close()
