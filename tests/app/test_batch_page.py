"""The Batch page: one AppTest per loss family (the figures are the library's batch), its deep link,
and one phone-size browser check that tapping an anchor shows that anchor's row."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.testing.v1 import AppTest

from cl.batchview import batch_from_checkpoint

from test_app_helpers import _ServerPagesManager

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
DIGITS = str(CKPT / "digits-best.safetensors")


def open_batch(monkeypatch, tmp_path, **params) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CL_DATA_DIR", raising=False)  # digits: bundled, the same everywhere
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    for k, v in {"dataset": "digits", "model": "digits-best", **params}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("pages/batch.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def check_terms(at, want) -> None:
    """The page's loss, its table of terms and their mean are the library's batch."""
    assert float(metric(at, "Loss")) == pytest.approx(want.value, abs=1e-4)
    table = at.dataframe[0].value
    np.testing.assert_allclose(table["loss term"].to_numpy(dtype=float), want.contributions, atol=1e-6)
    assert np.nanmean(table["loss term"].to_numpy(dtype=float)) == pytest.approx(want.value, abs=1e-6)


@pytest.mark.parametrize("loss, sampler, family", [("supcon", None, "views"), ("triplet", "batch-hard", "triplets"),
                                                   ("contrastive", "random", "pairs")])
def test_each_family_draws_the_library_batch(monkeypatch, tmp_path, loss, sampler, family):
    params = {"loss": loss, "seed": "3", **({"sampler": sampler} if sampler else {})}
    at = open_batch(monkeypatch, tmp_path, **params)
    mining = sampler if sampler in ("batch-hard", "semi-hard") else None
    want = batch_from_checkpoint(DIGITS, loss=loss, mining=mining,
                                 negatives="random" if sampler == "random" else None, seed=3)
    assert want.family == family
    check_terms(at, want)
    text = " ".join(str(x.value) for x in [*at.markdown, *at.caption])
    assert "digits train, 1,257 images" in text  # the batch names its data
    before = batch_from_checkpoint(DIGITS, loss=loss, mining=mining, untrained=True, seed=3,
                                   negatives="random" if sampler == "random" else None)
    assert f"The same batch at epoch 0 (the untrained encoder): loss {before.value:.4f}" in text
    heading = [h.value for h in at.subheader if h.value.startswith("Anchor ")]
    assert heading, "no anchor row shown"
    if family == "views":
        assert "Probability of the positive" in [m.label for m in at.metric]
    elif family == "triplets":
        s = want.summary()
        assert metric(at, "Satisfied triplets") == f"{s['n_satisfied']} of {s['n_picked']}"
    else:
        s = want.summary()
        assert metric(at, "Satisfied pairs") == f"{s['n_satisfied']} of {len(want.contributions)}"
    # the view is in the URL, so a reload or a copied link reopens it
    assert at.query_params["loss"] == loss and at.query_params["seed"] == "3"


def test_untrained_and_another_batch(monkeypatch, tmp_path):
    at = open_batch(monkeypatch, tmp_path, loss="ntxent", weights="untrained", seed="1", anchors="8")
    check_terms(at, batch_from_checkpoint(DIGITS, loss="ntxent", seed=1, untrained=True, anchors=8))
    assert len(at.dataframe[0].value) == 8  # 4 images, two views each
    at.button(key="batch_next").click().run()
    assert at.query_params["seed"] == "2" and at.query_params["anchors"] == "8"
    check_terms(at, batch_from_checkpoint(DIGITS, loss="ntxent", seed=2, untrained=True, anchors=8))


def test_a_bad_link_value_is_said_and_ignored(monkeypatch, tmp_path):
    at = open_batch(monkeypatch, tmp_path, loss="nonsense", seed="-4")
    assert any("could not be used" in i.value for i in at.info)
    check_terms(at, batch_from_checkpoint(DIGITS, seed=0))  # the model's own loss (SupCon), seed 0


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="chromium not installed")
def test_a_tap_on_a_phone_shows_that_anchors_row():
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from benchmarks.loadtest import CHROMIUM, PHONE, app_server, page_errors, settle_seconds

    with app_server({"CL_DATA_DIR": ""}) as (url, _proc, _runs), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_context(**PHONE).new_page()
        page.goto(f"{url}/batch?dataset=digits&model=digits-best&loss=ntxent&seed=0", timeout=180_000)
        settle_seconds(page, time.time(), 180)
        assert not page_errors(page)
        want = batch_from_checkpoint(DIGITS, loss="ntxent", seed=0)
        m = len(want.row_index)
        first = page.locator("h3", has_text="Anchor ").first.inner_text()
        target = 2 if not first.startswith("Anchor 2:") else 5
        # the heat-map cell of row `target` (its aria label names the anchor), tapped with a finger
        cell = page.locator(f'.vega-embed path[aria-label*="anchor: {target};"][aria-label*="col: {m - 1};"]').first
        cell.scroll_into_view_if_needed()
        box = cell.bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        settle_seconds(page, time.time(), 120)
        heading = page.locator("h3", has_text="Anchor ").first.inner_text()
        assert heading.startswith(f"Anchor {target}:"), (first, heading)
        label = want.classes[int(want.row_label[target])]
        assert heading.split(":", 1)[1].strip() == label
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
        browser.close()
