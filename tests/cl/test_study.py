"""The Study page (through AppTest on the shipped checkpoints) and cl.study's figures and numbers."""

from __future__ import annotations

import re

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.testing.v1 import AppTest

from cl import study
from cl.reference import PAPER_TABLE

from test_app_helpers import APP, ROOT, _ServerPagesManager

CKPT = ROOT / "checkpoints"


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path / "no-data"))  # the page needs no data: shipped files only
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))


def test_the_page_renders_the_two_grids_with_captions_and_links():
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.switch_page("pages/study.py")
    at.run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption if "open in Embedding" in c.value]
    scenario = [c for c in captions if " · study " in c]
    assert len(scenario) == 12  # 2 data sets x 3 augmentations x 2 losses
    # each scenario caption carries the study's own figures from PAPER_TABLE and a deep link
    for (d, a, loss), figs in PAPER_TABLE.items():
        link = f"embedding?dataset={d}&model={d}-{a}-{loss}&method=tsne"
        hit = [c for c in scenario if link in c]
        assert len(hit) == 1, link
        assert f"study {figs[0]:.2f} / {figs[1]:.2f} / {figs[2]:.2f}" in hit[0]
    text = "\n".join(m.value for m in at.markdown)
    assert "17,387 of 60,000" in text and "0.56" in text
    assert re.search(r"\*\*\d+ of \d+\*\* scenario pairs", text)


def test_observations_follow_the_cards_and_the_study_table():
    figures = study.grid_figures(CKPT)
    structure = study.load_structure(CKPT)
    obs = study.observations(figures, structure)
    mnist_pairwise = next(r for r in obs["augmentation"] if r["dataset"] == "mnist" and r["loss"] == "pairwise")
    assert mnist_pairwise["paper"] == [0.66, 0.78, 0.56]
    assert mnist_pairwise["ours"] == [figures[f"mnist-{a}-pairwise"]["acc"] for a in study.ROWS]
    # the study's own numbers: MNIST gains (0.12+0.12)/2, CIFAR-10 (0.02+0.03)/2
    assert obs["gain"]["mnist"]["paper"] == pytest.approx(0.12)
    assert obs["gain"]["cifar10"]["paper"] == pytest.approx(0.025)
    assert "mnist pairwise" in obs["not_monotone_paper"]
    assert study.study_best("mnist") == ("mnist-simclr-triplet", (0.93, 0.99, 0.93))


def test_shipped_structure_is_fresh_and_pairwise_is_more_line_like():
    structure = study.load_structure(CKPT)
    names = [study.scenario_name(d, a, loss) for d in study.DATASETS for a in study.ROWS for loss in study.COLS]
    assert set(names) <= set(structure), "run: python -m cl study --structure --out DIR"
    for d in study.DATASETS:
        for a in study.ROWS:
            assert structure[f"{d}-{a}-pairwise"]["linearity"] > structure[f"{d}-{a}-triplet"]["linearity"]


def test_outlook_commands_use_the_triplet_budget_and_what_their_names_say():
    from cl.cli import build_parser
    from cl.training import TrainConfig, resolve_config
    from cl.workflow import config_from_args

    for model in study.OUTLOOK:
        c = resolve_config(TrainConfig(**model.settings("mnist")))
        assert (c.encoder, c.epochs, c.lr, c.batch_size, c.augmentation) == ("paper", 10, 0.15, 1024, "simclr")
        assert c.loss == model.suffix.split("-")[0]
        assert c.mining == ("batch-hard" if "batch-hard" in model.suffix else "semi-hard" if "semi-hard" in model.suffix
                            else "none")
        assert c.negatives == ("random" if "random" in model.suffix else "label-aware")
        # the command line written for it (build_checkpoints runs it) means the same model
        t = build_parser().parse_args(["train", *study.outlook_train_args("mnist", model.suffix), "--out", "x"])
        assert resolve_config(config_from_args(t)) == c


@pytest.mark.parametrize("suffix,label_free", [("ntxent", True), ("supcon", False)])
def test_label_free_outlook_models_never_read_the_labels(suffix, label_free):
    """Train the outlook recipe for one epoch on digits with the true labels and with permuted ones:
    a model that needs no labels ends with identical weights; SupCon (which uses them) does not."""
    import dataclasses

    import torch

    from cl.data import load_dataset
    from cl.reference import OUTLOOK_BY_SUFFIX
    from cl.training import TrainConfig, train

    data = load_dataset("digits", "train", download=False)
    data = data.subset(range(512))
    shuffled = dataclasses.replace(data, labels=data.labels[torch.randperm(512, generator=torch.Generator().manual_seed(1))])
    cfg = TrainConfig(**OUTLOOK_BY_SUFFIX[suffix].settings("digits", epochs=1), batch_size=128, device="cpu")
    a = train(cfg, data).model.state_dict()
    b = train(cfg, shuffled).model.state_dict()
    same = all(torch.equal(a[k], b[k]) for k in a)
    assert same == label_free


def test_random_negatives_draw_without_labels():
    """The random-negatives model: every image is an anchor (no class reaches the study's cap of
    5,000 on the data here), and its negatives come out the same whatever the labels say. The
    labels only group the anchor list before it is shuffled uniformly, so the order is a uniform
    random permutation either way."""
    import numpy as np

    from cl.samplers import draw_negatives, paper_anchors

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=3000)
    other = rng.permutation(labels)
    a1, a2 = paper_anchors(labels, 5000, np.random.default_rng(1)), paper_anchors(other, 5000, np.random.default_rng(1))
    assert sorted(a1) == sorted(a2) == list(range(3000))
    n1 = draw_negatives(labels, a1, np.random.default_rng(2), "random")
    n2 = draw_negatives(other, a1, np.random.default_rng(2), "random")
    assert np.array_equal(n1, n2) and (n1 != a1).all()
    # the study's label-aware draw does read them
    assert not np.array_equal(draw_negatives(labels, a1, np.random.default_rng(2)),
                              draw_negatives(other, a1, np.random.default_rng(2)))
