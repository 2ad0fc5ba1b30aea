"""Bring your own in a real browser: a stroke drawn with the mouse on the Retrieval page's canvas
gets neighbours, and an image archive uploaded in the sidebar becomes the data set. Uses the
server and browser of tests/app/test_browser.py (its own server: module-scoped fixtures)."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest

from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS

from test_browser import SHOTS, idle, new_page, server_cache_dir, sidebar_text, visit
from test_byo_app import colour_zip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def cache_dir():
    """The server's cache folder (uploaded archives), set before the server starts."""
    yield from server_cache_dir("cl-byo-cache-")


def test_a_stroke_on_the_canvas_gets_neighbours(browser, server):
    page = new_page(browser, server)
    visit(page, "retrieval")
    page.get_by_role("tab", name="Draw").click()
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60000)
    idle(page)
    assert page.get_by_text("Nothing drawn yet").count() >= 1
    box = canvas.bounding_box()
    assert box and box["width"] >= 200
    # a vertical stroke, like a "1", drawn with the mouse button held
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 40)
    page.mouse.down()
    for step in range(30):
        page.mouse.move(x, box["y"] + 40 + step * (box["height"] - 80) / 29)
    page.mouse.up()
    page.get_by_text("neighbours of your drawing").first.wait_for(timeout=120000)
    idle(page)
    assert page.get_by_text("inverted colours").count() >= 1, "the drawing went through the upload's preparation"
    panel = page.locator("[role=tabpanel]:visible").first
    assert panel.locator("img").count() >= 12, "drawing, what the model sees and ten neighbours"
    assert page.locator("[data-testid=stException]").count() == 0
    page.screenshot(path=str(SHOTS / "retrieval-drawing.png"))

    # take it with you: the active model and its embeddings, downloaded through the sidebar
    page.get_by_text("Bring your own, take it with you").first.click()
    idle(page)
    with page.expect_download(timeout=120000) as got:
        page.get_by_role("button", name="Model checkpoint").click()
    from cl.checkpoints import read_card

    model_file = Path(got.value.path())
    assert got.value.suggested_filename.endswith(".safetensors")
    assert read_card(model_file)["data"]["dataset"] == "digits"
    with page.expect_download(timeout=120000) as got:
        page.locator("[data-testid=stSidebar]").get_by_role("button", name="projector").click()
    with zipfile.ZipFile(got.value.path()) as zf:
        assert sorted(zf.namelist()) == ["export.json", "metadata.tsv", "projector_config.json",
                                         "projector_config.pbtxt", "sprite.png", "tensors.tsv"]
        rows = zf.read("metadata.tsv").decode().splitlines()
        assert rows[0] == "index\tlabel\tclass\torigin" and len(rows) == 541  # the 540 digits test images
    _onnx_download_runs_in_onnx_runtime(page, model_file)
    page.context.close()


def _onnx_download_runs_in_onnx_runtime(page, model_file: Path) -> None:
    """The sidebar's "Model as ONNX": ONNX Runtime gives the downloaded checkpoint's embeddings."""
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from cl.checkpoints import load_checkpoint
    from cl.data import load_dataset
    from cl.evaluation import embed

    with page.expect_download(timeout=180000) as got:
        page.get_by_role("button", name="Model as ONNX").click()
    assert got.value.suggested_filename.endswith("-onnx.zip")
    folder = Path(tempfile.mkdtemp(prefix="cl-onnx-dl-"))
    try:
        with zipfile.ZipFile(got.value.path()) as zf:
            (name,) = [n for n in zf.namelist() if n.endswith(".onnx")]
            assert sorted(zf.namelist()) == sorted([name, "export.json"])
            zf.extractall(folder)
        images = load_dataset("digits", "test").images[:64]
        session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        got_emb = session.run(None, {"images": images.numpy().astype(np.float32) * (2 / 255) - 1})[0]
        model, _ = load_checkpoint(model_file)
        assert np.abs(got_emb - embed(model, images)).max() <= 1e-4
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_camera_photo_gets_neighbours(browser, server):
    """Chromium's fake camera (a generated test pattern) stands in for a phone's; a second
    Chromium from the same Playwright, started with the fake-device flags."""
    b = browser.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream",
                                          "--use-fake-device-for-media-stream"])
    try:
        context = b.new_context(viewport={"width": 1400, "height": 2200}, permissions=["camera"])
        context._cl_url = server["url"]
        context.set_default_timeout(120_000)
        page = context.new_page()
        visit(page, "retrieval")
        page.get_by_role("tab", name="Photo").click()
        take = page.get_by_role("button", name="Take Photo")
        take.wait_for(timeout=120000)
        page.wait_for_timeout(1500)  # the fake stream's first frames
        take.click()
        page.get_by_text("neighbours of your photo").first.wait_for(timeout=120000)
        idle(page)
        assert page.locator("[data-testid=stException]").count() == 0
        assert page.get_by_text("what the model sees").count() >= 1
        page.screenshot(path=str(SHOTS / "retrieval-photo.png"))
    finally:
        b.close()


def test_an_archive_uploaded_in_the_sidebar_becomes_the_data_set(browser, server, cache_dir):
    page = new_page(browser, server)
    visit(page, "retrieval")
    page.get_by_text("Bring your own, take it with you").first.click()
    idle(page)
    inputs = page.locator("[data-testid=stSidebar] [data-testid=stFileUploader] input[type=file]")
    assert inputs.count() == 3  # a model, an image set, embeddings made elsewhere
    inputs.nth(1).set_input_files(files=[{"name": "my photos.zip", "mimeType": "application/zip",
                                          "buffer": colour_zip()}])
    page.get_by_text("It is now the data set").first.wait_for(timeout=120000)
    idle(page)
    text = sidebar_text(page)
    assert "my photos.zip (your image set)" in text and "36 train / 10 test images here" in text, text
    assert page.locator("[data-testid=stException]").count() == 0
    assert os.listdir(os.path.join(cache_dir, "archives")), "extracted into the server's cache folder"
    page.screenshot(path=str(SHOTS / "sidebar-archive-upload.png"))
    page.context.close()


def test_an_embeddings_file_uploaded_in_the_sidebar_opens_on_retrieval(browser, server, cache_dir):
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 20)
    buf = io.BytesIO()
    np.savez(buf, embeddings=(centres[labels] + rng.normal(size=(60, 8))).astype(np.float32), labels=labels,
             classes=np.array(["cats", "dogs", "owls"]), origins=np.array([f"pics/{i:02d}.jpg" for i in range(60)]))
    page = new_page(browser, server)
    visit(page, "retrieval")
    page.get_by_text("Bring your own, take it with you").first.click()
    idle(page)
    inputs = page.locator("[data-testid=stSidebar] [data-testid=stFileUploader] input[type=file]")
    inputs.nth(2).set_input_files(files=[{"name": "vectors.npz", "mimeType": "application/octet-stream",
                                          "buffer": buf.getvalue()}])
    page.get_by_text("It is now the data set").first.wait_for(timeout=120000)
    idle(page)
    assert "vectors.npz (your embeddings)" in sidebar_text(page)
    page.get_by_text("Top 10 neighbours").first.wait_for(timeout=120000)
    assert page.get_by_text("pics/").count() >= 1
    assert page.locator("[data-testid=stException]").count() == 0
    assert os.listdir(os.path.join(cache_dir, "embeddings")), "kept in the server's cache folder"
    page.screenshot(path=str(SHOTS / "sidebar-embeddings-upload.png"))
    page.context.close()
