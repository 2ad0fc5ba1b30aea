"""Every page at a 390x844 phone viewport: no sideways scrolling, and on the Embedding page the
chart is on screen without scrolling past every control. Screenshots go to
``$CL_SCREENSHOTS`` (default: the test's temporary folder; docs/screenshots holds committed ones)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.loadtest import CHROMIUM, PHONE, app_server, page_errors, settle_seconds

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
PAGES = ["", "study", "train", "augmentations", "embedding", "metrics", "retrieval", "compare", "bring"]
ROOT = Path(__file__).resolve().parents[2]


def _exists(page: str) -> bool:
    return page == "" or (ROOT / "pages" / f"{page}.py").is_file()


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    shots = Path(os.environ.get("CL_SCREENSHOTS") or tmp_path_factory.mktemp("phone"))
    shots.mkdir(parents=True, exist_ok=True)
    env = {"CL_DATA_DIR": os.environ.get("CL_DATA_DIR", "")}
    with app_server(env) as (url, _proc, _runs), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        ctx = browser.new_context(**PHONE)
        yield ctx.new_page(), url, shots
        browser.close()


def dataset_and_model() -> tuple[str, str]:
    from cl.data import dataset_status

    return ("mnist", "mnist-best") if dataset_status("mnist").get("n_test") else ("digits", "digits-best")


@pytest.mark.parametrize("name", [p for p in PAGES if _exists(p)])
def test_no_sideways_scrolling_on_a_phone(phone, name):
    page, url, shots = phone
    dataset, model = dataset_and_model()
    page.goto(f"{url}/{name}?dataset={dataset}&model={model}", timeout=180_000)
    settle_seconds(page, time.time(), 180)
    assert not page_errors(page)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    page.screenshot(path=str(shots / f"phone-{name or 'overview'}.png"))
    assert width <= 391, f"{name or 'overview'}: the page is {width} px wide on a 390 px screen"


def test_the_embedding_chart_is_on_the_first_screen_of_a_phone(phone):
    page, url, shots = phone
    dataset, model = dataset_and_model()
    page.goto(f"{url}/embedding?dataset={dataset}&model={model}&method=tsne", timeout=180_000)
    settle_seconds(page, time.time(), 180)
    chart = page.locator("[data-testid=stVegaLiteChart], .vega-embed").first
    chart.wait_for(timeout=60_000)
    top = chart.bounding_box()["y"]
    page.screenshot(path=str(shots / "phone-embedding-first-screen.png"))
    # the chart starts within the first screen (844 px): the projection settings are folded away
    assert top < 844, f"the scatter starts {top:.0f} px down, below the first screen"
