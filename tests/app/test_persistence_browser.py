"""What a person makes survives a reload and a copied link, in a real browser (issue 28): a digits
training reloaded while it runs, and an uploaded image set reloaded on another page. Uses the
server and browser of tests/app/test_browser.py (its own server: module-scoped fixtures)."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest

from test_browser import SHOTS, idle, new_page, server_cache_dir, sidebar_text, visit
from test_byo_app import colour_zip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def cache_dir():
    """The server's cache folder (uploaded archives), set before the server starts."""
    yield from server_cache_dir("cl-persist-cache-")


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def main_text(page) -> str:
    return page.locator("[data-testid=stMain]").inner_text()


def test_a_reload_mid_training_keeps_its_progress_cancel_result_and_replay(browser, server):
    page = new_page(browser, server)
    visit(page, "train")
    epochs = page.get_by_label("Epochs")
    epochs.fill("10")
    epochs.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Cancel training").first.wait_for(timeout=120000)
    idle(page, stable=0.5)
    run = query(page).get("run")
    assert run and run.startswith("digits-"), f"the URL names the run: {page.url}"

    page.reload()  # mid-training: a new Streamlit session, the same browser
    page.get_by_text("Cancel training").first.wait_for(timeout=60000)
    assert query(page).get("run") == run, page.url
    assert page.locator("[data-testid=stProgress]").count() >= 1, "live progress after the reload"
    assert "in the background" in sidebar_text(page), "the sidebar still says a training runs"
    page.screenshot(path=str(SHOTS / "train-reloaded-mid-run.png"))

    # another tab of the same browser: the same run, with its Cancel
    tab = page.context.new_page()
    tab.goto(page.url)
    tab.get_by_text("Cancel training").first.wait_for(timeout=60000)
    tab.close()

    # the copied link, opened in another browser: the same run, live, without its Cancel
    other = new_page(browser, server)
    visit(other, f"train?run={run}")
    other.get_by_text("Started by another visitor").first.wait_for(timeout=60000)
    assert run in main_text(other) and other.locator("[data-testid=stProgress]").count() >= 1
    assert other.get_by_role("button", name="Cancel training").count() == 0

    page.get_by_text("Training finished").first.wait_for(timeout=400000)
    idle(page)
    assert "trained this session" in sidebar_text(page), "the reloaded session made it its active model"
    assert query(page).get("model") == f"run:{run}", page.url
    assert "running on this server: 0 of at most 2" in main_text(page), "the count follows the end"
    assert (server["runs"] / f"{run}.replay.npz").is_file() and (server["runs"] / f"{run}.run.json").is_file()
    assert json.loads((server["runs"] / f"{run}.run.json").read_text())["status"] == "done"

    page.reload()  # after the end: the result is still there, and the model still active
    page.get_by_text("Linear probe (paper)").first.wait_for(timeout=60000)
    assert "trained this session" in sidebar_text(page) or run in sidebar_text(page)
    # the other browser's live view followed it to the end, and made nothing active there
    other.get_by_text("Linear probe (paper)").first.wait_for(timeout=60000)
    assert "trained this session" not in sidebar_text(other)

    # the per-epoch replay was saved with the run: a link to the model replays it anywhere
    visit(other, f"embedding?model=run:{run}")
    assert re.search(r"Replay: the embedding after each training epoch \(\d+ epochs\)", main_text(other)), \
        main_text(other)[:2000]
    page.screenshot(path=str(SHOTS / "train-after-reload-finished.png"))
    page.context.close()
    other.context.close()


def test_an_uploaded_image_set_and_its_model_survive_a_reload(browser, server, cache_dir):
    page = new_page(browser, server)
    visit(page, "train")
    page.get_by_text("Bring your own, take it with you").first.click()
    idle(page)
    inputs = page.locator("[data-testid=stSidebar] [data-testid=stFileUploader] input[type=file]")
    inputs.nth(1).set_input_files(files=[{"name": "my photos.zip", "mimeType": "application/zip",
                                          "buffer": colour_zip()}])
    page.get_by_text("It is now the data set").first.wait_for(timeout=120000)
    idle(page)
    dataset = query(page).get("dataset", "")
    assert re.fullmatch(r"upload:[0-9a-f]{16}", dataset), page.url

    epochs = page.get_by_label("Epochs")
    epochs.fill("1")
    epochs.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Training finished").first.wait_for(timeout=300000)
    idle(page)
    model = query(page).get("model", "")
    assert model.startswith("run:my-photos-") and ":" not in model[len("run:"):], page.url

    page.locator("[data-testid=stSidebarNav] a", has_text="Retrieval").first.click()  # within the app
    idle(page)
    assert query(page).get("dataset") == dataset and query(page).get("model") == model, page.url
    page.reload()  # the reload that used to fall back to digits
    idle(page)
    text = sidebar_text(page)
    assert "my photos.zip" in text and "36 train / 10 test images here" in text, text
    assert "trained on 36 my photos.zip train images" in text, "the model trained on it is still the active one"
    body = main_text(page)
    assert "unknown" not in body and "archive:" not in body and "archive:" not in text, body[:1500]
    assert "Top 9 neighbours" in body, body[:1500]

    # the copied link, in another browser: the same set and model
    other = new_page(browser, server)
    visit(other, f"retrieval?dataset={dataset}&model={model}")
    assert "my photos.zip" in sidebar_text(other) and "Top 9 neighbours" in main_text(other)
    idle(other)
    other.screenshot(path=str(SHOTS / "uploaded-set-from-a-link.png"))
    page.context.close()
    other.context.close()
