"""A teacher's phone (390x844, touch) in a real browser: pages fit in about three screens, galleries
wrap instead of stacking full-width images, sidebar buttons keep their labels, a model trained in
the app opens on its map from a link, and nothing is fetched from outside the server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.loadtest import CHROMIUM, PHONE, app_server, page_errors, settle_seconds

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
SCREEN = PHONE["viewport"]["height"]


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    runs = tmp_path_factory.mktemp("runs")
    # a model as the Train page leaves it: saved in the runs folder with its map beside it
    from cl.layouts import build_layouts
    from cl.training import TrainConfig, resolve_config
    from cl.workflow import make_model
    from ui.jobs import MAP_METHODS, run_filename

    config = resolve_config(TrainConfig(dataset="digits", epochs=1))
    run = runs / run_filename(config)
    make_model(config, run, evaluate=False, made_by="app")
    build_layouts(run, progress=None, methods=MAP_METHODS)
    env = {"CL_DATA_DIR": os.environ.get("CL_DATA_DIR", ""), "CL_RUNS_DIR": str(runs)}
    with app_server(env) as (url, _proc, _runs), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        ctx = browser.new_context(**PHONE)
        page = ctx.new_page()
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url)
                if not r.url.startswith(("data:", "blob:", url)) else None)
        yield page, url, run, outside
        browser.close()


def open_page(page, url: str, path: str) -> None:
    page.goto(f"{url}/{path}", timeout=180_000)
    settle_seconds(page, time.time(), 180)
    assert not page_errors(page)


def image_widths(page, at_least: int) -> list[float]:
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=stImage] img').length >= {at_least}",
                           timeout=60_000)
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=stImage] img')]
                                  .map(i => i.getBoundingClientRect().width)""")


def main_height(page) -> int:
    return int(page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight"))


def test_retrieval_fits_in_three_screens_and_its_neighbours_wrap(phone):
    page, url, _run, _ = phone
    open_page(page, url, "retrieval?dataset=digits&model=digits-best")
    widths = image_widths(page, 11)
    assert len(widths) >= 11, "the query and its ten neighbours"
    assert max(widths[1:]) <= 150, f"neighbour images {max(widths[1:]):.0f} px wide: one per row on a phone"
    assert main_height(page) <= 3.2 * SCREEN, f"retrieval is {main_height(page)} px: more than about three screens"


def test_a_misclassified_image_is_not_shown_at_full_width(phone):
    page, url, _run, _ = phone
    open_page(page, url, "metrics?dataset=digits&model=digits-best")
    widths = image_widths(page, 1)
    assert widths, "the confused pair's images"
    assert max(widths) <= 150, f"an image {max(widths):.0f} px wide on a 390 px screen"


def test_sidebar_download_buttons_keep_their_labels(phone):
    page, url, _run, _ = phone
    open_page(page, url, "?dataset=digits&model=digits-best")
    page.locator("[data-testid=stExpandSidebarButton], [data-testid=stSidebarCollapsedControl] button").first.click()
    page.get_by_text("Bring your own, take it with you").click()
    page.wait_for_selector("[data-testid=stDownloadButton]", timeout=60_000)
    cut = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stDownloadButton] button')]
        .flatMap(b => [...b.querySelectorAll('p, span')])
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
    assert not cut, f"cut labels: {cut}"


def test_a_model_trained_in_the_app_opens_on_its_map_from_a_link(phone):
    page, url, run, _ = phone
    open_page(page, url, f"embedding?model=run:{run.stem}")
    page.wait_for_selector("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg", timeout=60_000)
    text = page.locator("[data-testid=stMain]").inner_text()
    assert run.stem in text and "t-SNE of 540 digits test images" in text
    box = page.locator("[data-testid=stVegaLiteChart]").first.bounding_box()
    assert box is not None and box["y"] < SCREEN, "the map starts on the first screen"


def test_nothing_is_fetched_from_outside_the_server(phone):
    page, url, _run, outside = phone
    open_page(page, url, "?dataset=digits")
    assert not outside, f"requests that fail offline: {outside[:3]}"


def test_a_tap_on_the_map_shows_that_image_and_its_class_on_the_first_screen(phone):
    page, url, _run, _ = phone
    open_page(page, url, "embedding?dataset=digits&model=digits-best&method=tsne")
    collapse = page.locator("[data-testid=stSidebarCollapseButton] button")
    if collapse.count() and collapse.first.is_visible():
        collapse.first.click()  # the browser remembers an earlier test's open sidebar, which covers the map
        page.wait_for_timeout(800)
    chart = page.locator("[data-testid=stVegaLiteChart]").first
    chart.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # Vega draws after the script has finished
    box = chart.bounding_box()
    assert box is not None
    # a tap (touch, no hover) near the middle of the plot: the nearest point is picked
    page.touchscreen.tap(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                           ".some(e => /^#\\d+ .*: /.test(e.innerText))", timeout=60_000)  # "#12 digits/0012: 3"
    settle_seconds(page, time.time(), 120)
    said = page.locator("[data-testid=stMarkdownContainer]", has_text="#").filter(has_text=":").first
    tapped = page.locator("[data-testid=stMain] [data-testid=stImage] img").first
    img_box, chart_box = tapped.bounding_box(), chart.bounding_box()
    assert img_box is not None and chart_box is not None
    assert img_box["y"] < chart_box["y"], "the tapped image is above the map, not a screen below it"
    view_top = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTop")
    assert img_box["y"] + img_box["height"] <= SCREEN, f"image at y={img_box['y']:.0f} (scrolled {view_top})"
    assert said.count() >= 1
