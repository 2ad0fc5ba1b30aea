"""The measures in the app. Compare: the study's table rows come from the checkpoints they name; the
plane shows every shipped model, the collapsed ones marked. Metrics: the active model's measures,
from its card or computed when the card has none."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from cl.checkpoints import read_card
from cl.reference import PAPER_TABLE, scenario_name
from cl.study import scenario_table

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
CARDS = {p.stem: read_card(p) for p in sorted(CKPT.glob("*.safetensors"))}


def check_row_against_card(row: dict) -> None:
    name = scenario_name(row["data set"], row["augmentation"], row["loss"])
    assert row["checkpoint"] == name, (row["checkpoint"], name)
    card = read_card(CKPT / f"{name}.safetensors")
    paper = card["metrics"]["paper"]
    assert row["ours acc"] == pytest.approx(paper["linear_acc"], abs=5e-4), name
    assert row["ours top-3"] == pytest.approx(paper["top3_acc"], abs=5e-4), name
    assert row["ours kNN"] == pytest.approx(paper["knn_acc"], abs=5e-4), name
    assert int(row["ours test images"]) == paper["n_test"]
    assert str(row["ours train images"]).startswith(f"{card['data']['n_images']:,}")
    assert (row["paper acc"], row["paper top-3"], row["paper kNN"]) == PAPER_TABLE[
        (row["data set"], row["augmentation"], row["loss"])]


def test_scenario_table_rows_match_their_cards():
    rows = scenario_table(CARDS)
    assert len(rows) == 12
    for row in rows:
        check_row_against_card(row)
    # the outlook models have the scenario's data set, augmentation and loss, and are not it
    simclr_triplet = [r for r in rows if (r["augmentation"], r["loss"]) == ("simclr", "triplet")]
    assert {r["checkpoint"] for r in simclr_triplet} == {"mnist-simclr-triplet", "cifar10-simclr-triplet"}


def test_scenario_table_leaves_a_missing_scenario_empty():
    cards = {k: v for k, v in CARDS.items() if k != "mnist-simclr-triplet"}
    row = next(r for r in scenario_table(cards) if r["checkpoint"] is None)
    assert (row["data set"], row["augmentation"], row["loss"]) == ("mnist", "simclr", "triplet")
    assert row["ours acc"] is None  # not filled from mnist-simclr-triplet-batch-hard (same settings)


class _ServerPagesManager(PagesManager):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


def open_page(monkeypatch, tmp_path, page: str, checkpoints: Path = CKPT) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(checkpoints))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CL_APP_LIST_RUNS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_compare_page_shows_each_scenario_from_its_checkpoint(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path, "compare")
    table = at.dataframe[0].value
    assert len(table) == 12
    for row in table.to_dict("records"):
        check_row_against_card(row)
    # the plane: every shipped model, the two collapsed ones named in the caption
    captions = "\n".join(str(c.value) for c in at.caption)
    assert "Ringed and named:" in captions
    for name in ("mnist-simclr-triplet-batch-hard", "cifar10-simclr-triplet-batch-hard"):
        assert name in captions.split("Ringed and named:")[1]
    assert "Not in the plane" not in captions
    # the table of every model carries the measures, from the cards
    every = at.dataframe[1].value.set_index("model")
    assert every.loc["mnist-best", "uniformity"] == pytest.approx(CARDS["mnist-best"]["measures"]["uniformity"], abs=5e-4)
    assert every.loc["mnist-simclr-triplet-batch-hard", "RankMe"] == pytest.approx(1.0, abs=0.05)


def test_plane_has_every_shipped_model_and_marks_the_collapsed():
    from ui import measures as shape
    from ui.models import ModelEntry

    entries = [ModelEntry(str(CKPT / f"{n}.safetensors"), "shipped", c, n) for n, c in CARDS.items()]
    df, missing = shape.plane_frame(entries, highlight=(str(CKPT / "mnist-best.safetensors"),))
    assert missing == [] and len(df) == len(CARDS) == 28
    collapsed = set(df[df["state"] == "collapsed"]["model"])
    assert {"mnist-simclr-triplet-batch-hard", "cifar10-simclr-triplet-batch-hard"} <= collapsed
    assert all(CARDS[n]["measures"]["uniformity"] > -0.05 for n in collapsed)
    assert df.set_index("model").loc["mnist-best", "chosen"]
    assert df.set_index("model").loc["mnist-simclr-triplet-batch-hard", "loss"] == "triplet (batch-hard)"
    shape.plane(df).to_dict()  # a valid Vega-Lite spec


@pytest.mark.parametrize("stored", [True, False], ids=["from the card", "computed"])
def test_metrics_page_shows_the_measures(monkeypatch, tmp_path, stored):
    import shutil

    from cl.checkpoints import rewrite_card

    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = folder / "digits-best.safetensors"
    shutil.copy(CKPT / "digits-best.safetensors", path)
    want = CARDS["digits-best"]["measures"]
    if not stored:  # an older or foreign card: the page computes them (all 540 test images, seed 0)
        rewrite_card(path, {k: v for k, v in CARDS["digits-best"].items() if k != "measures"})
    at = open_page(monkeypatch, tmp_path, "metrics", folder)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Alignment"] == f"{want['alignment']:.3f}"
    assert shown["Uniformity"] == f"{want['uniformity']:.3f}"
    assert shown["RankMe"] == f"{want['rankme']:.1f} of 64"
    captions = "\n".join(str(c.value) for c in at.caption)
    assert "540 digits test images; two views of each by the affine augmentation, seed 0" in captions
    assert ("stored in the model's card" in captions) == stored
    assert not [w for w in at.warning if "collapsed" in str(w.value)]


def test_metrics_page_says_when_a_model_has_collapsed(monkeypatch, tmp_path):
    import torch

    from cl.checkpoints import save_checkpoint
    from cl.encoder import PaperEncoder

    folder = tmp_path / "ckpt"
    model = PaperEncoder(1, 28)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every image -> sigmoid(0) = 0.5 in all 32 outputs: one point
    card = {k: v for k, v in CARDS["digits-best"].items() if k not in ("measures", "encoder_spec", "format", "versions")}
    card["name"] = "digits-collapsed"
    save_checkpoint(folder / "digits-collapsed.safetensors", model, card)
    at = open_page(monkeypatch, tmp_path, "metrics", folder)
    shown = {m.label: m.value for m in at.metric}
    assert shown["RankMe"] == "1.0 of 32" and shown["Uniformity"] in ("0.000", "-0.000")
    assert [w for w in at.warning if "collapsed" in str(w.value)]
