"""How far to trust what the pages show: intervals on Metrics, flags, Study's noise and collapse,
one collapse definition everywhere, Retrieval's match and blank queries, the charts that said little."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, percentileofscore
from streamlit.testing.v1 import AppTest

from cl.checkpoints import read_card

from test_measures_pages import CARDS, CKPT, open_page


def _texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "subheader"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def test_metrics_headline_gives_each_accuracy_its_interval_and_count(monkeypatch, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(CKPT / "digits-best.safetensors", folder / "digits-best.safetensors")
    at = open_page(monkeypatch, tmp_path, "metrics", folder)
    paper = CARDS["digits-best"]["metrics"]["paper"]
    captions = "\n".join(str(c.value) for c in at.caption)
    for key in ("linear_acc", "top3_acc", "knn_acc"):
        ref = binomtest(round(paper[key] * paper["n_test"]), paper["n_test"]).proportion_ci(method="wilson")
        assert f"95 %: {ref.low:.2f}-{ref.high:.2f} · {paper['n_test']:,} images" in captions, key
    table = at.dataframe[0].value
    assert "linear probe, 95 %" in table.columns and "108 images)" in table["linear probe, 95 %"].iloc[0]


class _Column:
    """Records what a page column was asked to show."""

    def __init__(self):
        self.shown = []

    def metric(self, label, value, help=None):
        self.shown.append(("metric", label, value))

    def caption(self, text):
        self.shown.append(("caption", text))


def test_a_figure_that_means_nothing_is_not_shown_and_a_weak_one_is_flagged():
    from ui import accuracy

    r = {"n_test": 5, "n_fit": 19, "n_classes": 3, "linear_acc": 1.0, "top3_acc": 1.0, "knn_acc": 0.2}
    col = _Column()
    accuracy.metric(col, "Top-3", r, "top3_acc")
    assert col.shown[0] == ("metric", "Top-3", "not shown") and "1 by construction" in col.shown[1][1]
    col = _Column()
    accuracy.metric(col, "Linear", r, "linear_acc")
    lo, hi = binomtest(5, 5).proportion_ci(method="wilson")
    assert col.shown == [("metric", "Linear", "1.000"),
                         ("caption", f"95 %: {lo:.2f}-{hi:.2f} · 5 images · :orange[flagged, see below]")]
    said = accuracy.warnings_text([r])
    assert "only 5 images" in said and "kNN-30 fitted on only 19 images" in said
    assert accuracy.warnings_text([{"n_test": 2000, "n_fit": 8000, "n_classes": 10, "linear_acc": 0.9}]) is None


def test_the_knn_curve_on_16_images_says_its_wiggles_are_noise_and_draws_its_band():
    from ui import accuracy, charts

    text = accuracy.knn_curve_caption(16, "digits test, 80 images")
    assert "16 images per point" in text and "±0.2" in text and "say little" in text
    assert "say little" not in accuracy.knn_curve_caption(108, "digits test, 540 images")
    spec = charts.epoch_metric([{"epoch": 1, "knn_acc": 0.5}, {"epoch": 2, "knn_acc": 0.625}], "knn_acc",
                               "kNN-30 accuracy per epoch", "kNN-30 accuracy", 16).to_dict()
    band = spec["layer"][0]
    assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "high"
    assert spec["title"] == "kNN-30 accuracy per epoch"  # short enough not to be cut; the data is in the caption


def test_a_single_alignment_point_is_written_not_drawn_and_a_path_has_readable_axes():
    def one():
        from ui.measures import show_alignment_path

        show_alignment_path([{"epoch": 18, "alignment": 0.036817, "uniformity": -2.0663, "rankme": 14.9}],
                            "digits test images")

    at = AppTest.from_function(one).run()
    assert not at.exception
    assert not at.get("vega_lite_chart")
    assert "measured once (after epoch 18, digits test images): alignment 0.037, uniformity -2.07" in at.markdown[0].value

    from ui.measures import alignment_path

    spec = alignment_path([{"epoch": 2, "alignment": 0.036817, "uniformity": -2.1, "rankme": 3.0},
                           {"epoch": 5, "alignment": 0.030, "uniformity": -2.3, "rankme": 4.0}], "digits").to_dict()
    points = spec["layer"][1]["encoding"]
    assert points["x"]["axis"]["format"] == ".2f" and points["y"]["axis"]["format"] == ".3~f"
    assert points["color"]["legend"]["format"] == "d"


def test_the_study_page_calls_noise_noise_and_collapse_by_the_measures(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path, "study")
    text = _texts(at)
    # before: "lowered linear accuracy in **3 of 4**" counting -0.005 on 2,000 and -0.020 on 204 images
    assert "by more than its noise in **0 of 4**" in text
    assert "**within noise** in mnist pairwise, cifar10 pairwise, cifar10 triplet" in text
    assert "Newcombe" in text
    table = at.dataframe[0].value
    mnist_pairwise = table[(table["data set"] == "mnist") & (table["loss"] == "pairwise")].iloc[0]
    assert mnist_pairwise["ours change to FER, to SimCLR"] == "+0.097 (higher), -0.005 (within noise)"
    collapsed_line = next(m.value for m in at.markdown if m.value.startswith("**Collapsed**"))
    for name in ("mnist-simclr-triplet-batch-hard", "cifar10-simclr-triplet-batch-hard", "mnist-simclr-contrastive"):
        assert name in collapsed_line
    assert "linear accuracy below twice chance" not in text and "effective rank" in collapsed_line


def test_one_collapse_definition_on_every_page():
    from cl import study
    from cl.measures import collapse
    from ui import measures as shape
    from ui.models import ModelEntry

    by_measures = {n for n, c in CARDS.items() if collapse(c["measures"])}
    assert by_measures == {"mnist-simclr-triplet-batch-hard", "cifar10-simclr-triplet-batch-hard",
                           "mnist-simclr-contrastive"}
    entries = [ModelEntry(str(CKPT / f"{n}.safetensors"), "shipped", c, n) for n, c in CARDS.items()]
    df, _ = shape.plane_frame(entries)
    assert set(df[df["state"] == "collapsed"]["model"]) == by_measures  # Compare's rings
    outlook = {r["model"] for r in study.outlook_rows(CKPT) if r["collapsed"]}
    assert outlook == by_measures  # the Study page's list (all three are outlook models)
    # neither measure alone: a line through the origin has RankMe 1 and is no point
    line = {"uniformity": -0.69, "rankme": 1.0}
    cone = {"uniformity": -0.004, "rankme": 12.0}
    assert collapse(line) is False and collapse(cone) is False and collapse({"uniformity": None}) is None


def test_spread_is_exact_against_pairwise_distances():
    from scipy.spatial.distance import pdist

    from cl.measures import spread

    z = np.random.default_rng(0).normal(size=(300, 8)) * [1, 2, 3, 1, 1, 1, 1, 5] + 4
    s = spread(z)
    assert s["rms_distance"] == pytest.approx(np.sqrt((pdist(z) ** 2).mean()), rel=1e-10)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert s["direction_rms_distance"] == pytest.approx(np.sqrt((pdist(u) ** 2).mean()), rel=1e-10)
    assert s["rms_norm"] == pytest.approx(np.sqrt((z ** 2).sum(1).mean()))


def test_the_match_is_a_percentile_of_nearest_neighbour_similarities():
    from cl.retrieval import SimilarityScale

    z = np.random.default_rng(1).normal(size=(400, 6)).astype(np.float32)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.max(1)
    scale = SimilarityScale(z)
    for s in (0.5, float(np.median(nearest)), 0.99, float(nearest[3])):
        assert scale.percentile(s) == pytest.approx(percentileofscore(nearest, s, kind="mean"), abs=1e-6)


def test_a_blank_query_is_known_blank_and_a_digit_is_not():
    from cl.retrieval import ink_share, is_blank

    assert is_blank(torch.zeros(1, 28, 28, dtype=torch.uint8))
    dot = torch.zeros(1, 28, 28, dtype=torch.uint8)
    dot[0, 14, 14] = 255
    assert is_blank(dot) and ink_share(dot) == pytest.approx(1 / 784)
    from cl.data import load_dataset

    digits = load_dataset("digits", "test")
    assert not any(is_blank(img) for img in digits.images[:50])


def test_retrieval_shows_matches_not_four_decimal_cosines_and_refuses_to_read_a_blank(monkeypatch, tmp_path):
    from PIL import Image

    at = open_page(monkeypatch, tmp_path, "retrieval")
    captions = "\n".join(str(c.value) for c in at.caption)
    assert "**Match**" in captions
    gallery_html = "\n".join(str(m.value) for m in at.markdown)
    assert " · match " in gallery_html or " · match " in captions
    buf = io.BytesIO()
    Image.new("L", (1, 1), 255).save(buf, format="PNG")
    at.file_uploader(key="ret_upload").set_value(("blank.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    warned = [w.value for w in at.warning if "blank as the model sees it" in w.value]
    assert warned and "say nothing" in warned[0]
    assert "Top 10 neighbours of your image" not in _texts(at)


def test_neighbors_cli_rates_its_matches_and_flags_a_blank(tmp_path, capsys):
    import json

    from PIL import Image

    from cl.cli import main

    Image.new("L", (1, 1), 255).save(tmp_path / "blank.png")
    assert main(["neighbors", str(CKPT / "digits-best.safetensors"), str(tmp_path / "blank.png"), "--k", "3",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["blank_query"] is True and all("match_percentile" in r for r in payload["neighbors"])
    assert read_card(CKPT / "digits-best.safetensors")  # the checkpoint is read, not changed


def test_counts_read_as_counts():
    from ui.words import class_counts

    # before: "Classes in the selection: 9 1", read as two classes
    assert class_counts([str(k) for k in range(10)], [0] * 9 + [1]) == "class 9: 1 image"
    assert class_counts(["cat", "dog"], [2, 5]) == "class dog: 5 images; class cat: 2 images"


def test_the_most_changed_neighbourhoods_say_when_they_are_ties():
    from cl.retrieval import most_changed

    agree = np.full(500, 0.5)
    agree[[7, 100, 300]] = 0.1
    picked, tied = most_changed(agree, 10)
    assert set(picked[:3]) == {7, 100, 300} and tied == 3
    zeros = np.zeros(400)  # every image keeps nothing: a tie of all 400, not "the first 10 by index"
    picked, tied = most_changed(zeros, 10)
    assert tied == 400 and len(picked) == 10 and list(picked) != list(range(10))


@pytest.mark.parametrize("model,collapsed", [("mnist-simclr-triplet-batch-hard", True), ("mnist-simclr-triplet", False)])
def test_a_collapsed_models_map_says_why_it_still_looks_like_a_cloud(monkeypatch, tmp_path, model, collapsed):
    at = _open_link(monkeypatch, tmp_path, "embedding", dataset="mnist", model=model, method="tsne")
    notes = [i.value for i in at.info if "still looks like a cloud" in i.value]
    assert bool(notes) is collapsed
    if collapsed:
        from cl.checkpoints import load_checkpoint
        from cl.data import load_dataset
        from cl.evaluation import embed

        net, _ = load_checkpoint(CKPT / f"{model}.safetensors")
        z = embed(net, load_dataset("mnist", "test").images).astype(np.float64)
        rms = np.sqrt(2 * len(z) / (len(z) - 1) * z.var(0).sum())  # root-mean-square pairwise distance
        assert f"on average {rms:.2g} apart" in notes[0] and "RankMe 1.01" in notes[0]


def _open_link(monkeypatch, tmp_path, page: str, **params) -> AppTest:
    import streamlit.testing.v1.app_test as app_test_module

    from test_measures_pages import ROOT, _ServerPagesManager

    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.query_params.update(params)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_compare_table_gives_intervals_and_the_one_collapse_verdict(monkeypatch, tmp_path):
    from cl.measures import collapse

    at = open_page(monkeypatch, tmp_path, "compare")
    every = at.dataframe[1].value.set_index("model")
    for name in ("mnist-simclr-contrastive", "mnist-best", "cifar10-simclr-triplet-batch-hard"):
        assert bool(every.loc[name, "collapsed"]) is collapse(CARDS[name]["measures"]), name
    paper = CARDS["cifar10-best"]["metrics"]["paper"]
    ref = binomtest(round(paper["linear_acc"] * paper["n_test"]), paper["n_test"]).proportion_ci(method="wilson")
    assert every.loc["cifar10-best", "paper acc, 95 %"] == f"{ref.low:.3f}-{ref.high:.3f}"
    captions = "\n".join(str(c.value) for c in at.caption)
    ringed = captions.split("Ringed and named:")[1]
    assert "mnist-simclr-contrastive" in ringed  # Compare and Study agree (Study lists it too)
