"""Deep links: the URL's query string opens a view, and the sidebar writes the view back into it.

Runs the app through AppTest on the shipped checkpoints (with their shipped layouts), so a link
such as ``embedding?dataset=mnist&model=mnist-best&method=tsne`` is checked end to end.
"""

from __future__ import annotations

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.testing.v1 import AppTest

from test_app_helpers import APP, ROOT, _ServerPagesManager, data_dir

CKPT = ROOT / "checkpoints"


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    if data_dir():
        monkeypatch.setenv("CL_DATA_DIR", data_dir())
    else:  # the shipped galleries stand in for the test splits
        monkeypatch.setenv("CL_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))


def open_link(page: str, **params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.query_params.update(params)  # a link opens its page with its parameters
        at.run()
    assert not at.exception, at.exception
    return at


def sidebar_value(at: AppTest, label: str):
    return next(w for w in at.sidebar.selectbox if w.label == label).value


def text_of(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    return "\n".join(str(p) for p in parts)


def test_a_link_opens_that_models_shipped_tsne():
    at = open_link("embedding", dataset="mnist", model="mnist-best", method="tsne")
    assert sidebar_value(at, "Data set") == "mnist"
    assert sidebar_value(at, "Model").endswith("mnist-best.safetensors")
    assert next(w for w in at.selectbox if w.label == "Method").value == "tsne"
    assert "computed once for this model" in text_of(at)
    assert at.query_params["dataset"] == "mnist" and at.query_params["model"] == "mnist-best"
    assert at.query_params["method"] == "tsne"


def test_a_link_to_a_paper_model_opens_it_on_its_data_set():
    at = open_link("augmentations", model="cifar10-simclr-pairwise")
    assert sidebar_value(at, "Data set") == "cifar10"  # taken from the model when the link has none
    # the Augmentations page opens on the model's own augmentation
    assert next(w for w in at.selectbox if w.label == "Augmentation").value == "simclr"
    assert sidebar_value(at, "Model").endswith("cifar10-simclr-pairwise.safetensors")
    assert at.query_params["model"] == "cifar10-simclr-pairwise"


@pytest.mark.parametrize("params, word", [({"dataset": "imagenet"}, "unknown data set"),
                                          ({"dataset": "mnist", "model": "no-such-model"}, "unknown model")])
def test_an_unknown_name_gives_a_message_and_the_default_view(params, word):
    at = open_link("", **params)
    shown = " ".join(str(e.value) for e in at.info)
    assert word in shown
    expected = "digits" if params["dataset"] == "imagenet" else "mnist"
    assert sidebar_value(at, "Data set") == expected
    assert at.query_params["dataset"] == expected
    assert at.query_params.get("model") != params.get("model")


def test_changing_the_sidebar_writes_the_url():
    at = open_link("embedding", dataset="mnist", model="mnist-best", method="tsne")
    next(w for w in at.sidebar.selectbox if w.label == "Data set").set_value("cifar10").run()
    assert not at.exception, at.exception
    assert at.query_params["dataset"] == "cifar10"
    assert at.query_params["model"].startswith("cifar10-")
    model = sidebar_value(at, "Model")
    assert at.query_params["model"] == model.rsplit("/", 1)[-1].removesuffix(".safetensors")


def test_the_embedding_form_writes_its_method():
    at = open_link("embedding", dataset="digits", model="digits-best", method="tsne")
    next(w for w in at.selectbox if w.label == "Method").set_value("pca")
    next(b for b in at.button if "Compute" in str(b.label)).click().run()
    assert not at.exception, at.exception
    assert at.query_params["method"] == "pca"
    assert "computed once for this model" in text_of(at)  # PCA, seed 0, all 540 points: shipped too


def test_a_changed_setting_computes_instead_of_using_the_shipped_layout():
    at = open_link("embedding", dataset="digits", model="digits-best", method="tsne")
    at.number_input(key="emb_seed").set_value(1)
    next(b for b in at.button if "Compute" in str(b.label)).click().run()
    assert not at.exception, at.exception
    assert "computed once for this model" not in text_of(at)


def test_augmented_views_land_on_the_shipped_and_on_a_computed_map():
    """The views section fits its placer on the view shown (ui.cache.placer, keyed by the
    projection's parameters) and keeps its image number in range when the view changes."""
    at = open_link("embedding", dataset="digits", model="digits-best", method="pca")
    at.toggle(key="emb_views").set_value(True).run()
    assert not at.exception, at.exception
    assert "placed by the map's PCA projection" in text_of(at)
    at.number_input(key="emb_views_index").set_value(539).run()  # the last of digits' 540 test images
    assert "test image #539" in text_of(at)
    at.number_input(key="emb_seed").set_value(1)
    at.number_input(key="emb_n_540").set_value(100)
    next(b for b in at.button if "Compute" in str(b.label)).click().run()
    assert not at.exception, at.exception
    # 539 is not among the 100 points of the new map (seed 1 draws them): it is placed like its views
    assert "test image #539 (8), not among the map points: placed the same way" in text_of(at)
