"""Map trust in the app: the Embedding page's sentence and its "neighbours kept" colouring carry the
figures of the map drawn (checked against scikit-learn), from the shipped layout or computed for a
layout file without them; Compare lists the three methods' figures for the active model; the CLI
reports them."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import streamlit.testing.v1.app_test as app_test_module
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors
from streamlit.testing.v1 import AppTest

from cl.checkpoints import load_checkpoint
from cl.evaluation import embed
from cl.layouts import gallery_for, layout_path, read_layouts

from test_app_helpers import _ServerPagesManager

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
NAME = "digits-best"


def open_page(monkeypatch, tmp_path, page: str, checkpoints: Path) -> AppTest:
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(checkpoints))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CL_APP_LIST_RUNS", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def reference(method: str) -> dict:
    """The digits-best map's figures, from scikit-learn on a fresh embedding of its test images."""
    data = read_layouts(CKPT / f"{NAME}.safetensors")
    model, _card = load_checkpoint(CKPT / f"{NAME}.safetensors")
    emb = embed(model, gallery_for("digits").images)
    xy = data[method]
    true = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(emb).kneighbors(
        return_distance=False)
    near = NearestNeighbors(n_neighbors=10).fit(xy).kneighbors(return_distance=False)
    kept = np.array([len(set(a) & set(b)) / 10 for a, b in zip(true, near, strict=True)])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return {"T": trustworthiness(emb, xy, n_neighbors=10, metric="cosine"),
            "C": trustworthiness(xy, unit, n_neighbors=10), "kept": kept, "true": true, "near": near}


def folder_with(tmp_path, old_layout: bool) -> Path:
    folder = tmp_path / "ckpt"
    (folder / "layouts").mkdir(parents=True)
    shutil.copy(CKPT / f"{NAME}.safetensors", folder)
    src = layout_path(CKPT / f"{NAME}.safetensors")
    if old_layout:  # a layout written before the figures were stored: maps, labels and meta only
        with np.load(src, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            meta.pop("trust", None)
            np.savez_compressed(folder / "layouts" / src.name, labels=z["labels"], meta=np.array(json.dumps(meta)),
                                **{m: z[m] for m in ("tsne", "umap", "pca")})
    else:
        shutil.copy(src, folder / "layouts")
    return folder


def trust_sentence(at: AppTest) -> str:
    found = [str(m.value) for m in at.markdown if "trustworthiness" in str(m.value)]
    assert found, "no sentence on how far to trust the map"
    return found[0]


def chart_frame(at: AppTest):
    chart = at.get("vega_lite_chart")[0]
    spec = json.loads(chart.proto.spec)
    frames = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_all().to_pandas() for d in chart.proto.datasets]
    return spec, max(frames, key=len)


@pytest.mark.parametrize("old_layout", [False, True], ids=["stored with the layout", "computed"])
def test_embedding_page_says_how_far_to_trust_the_map(monkeypatch, tmp_path, old_layout):
    ref = reference("tsne")
    at = open_page(monkeypatch, tmp_path, "embedding", folder_with(tmp_path, old_layout))
    sentence = trust_sentence(at)
    assert f"keeps on average {ref['kept'].mean() * 10:.1f} of its 10 nearest neighbours" in sentence, sentence
    assert f"trustworthiness {ref['T']:.2f}" in sentence and f"continuity {ref['C']:.2f}" in sentence
    assert "t-SNE map" in sentence
    # colour by neighbours kept: each point's share, in the chart the browser gets
    at.button_group(key="emb_color").set_value("kept").run()
    assert not at.exception, [e.message for e in at.exception]
    spec, frame = chart_frame(at)
    assert "neighbours kept" in json.dumps(spec)
    assert re.search(r'"color":\s*\{[^}]*"field":\s*"kept"', json.dumps(spec))
    assert len(frame) == len(ref["kept"])
    assert np.allclose(frame["kept"].to_numpy(), ref["kept"][frame["index"].to_numpy()], atol=1e-6)
    # a clicked (or tapped) image: its true neighbours beside the map's, as images with their numbers
    at.session_state["emb_scatter"] = {"selection": {"pick": [{"index": 5}]}}
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    both = len(set(ref["true"][5]) & set(ref["near"][5]))
    assert any("Image #5: its 10 nearest neighbours" in str(m.value) and f"({both} of 10 in both" in str(m.value)
               for m in at.markdown)
    lists = [[int(re.search(r"#(\d+)", c).group(1)) for c in im.captions] for im in at.image if len(im.captions) == 10]
    assert lists[:2] == [list(ref["true"][5]), list(ref["near"][5])]
    # another method: its own figures
    at.selectbox(key="emb_method").set_value("pca")
    [b for b in at.button if b.label == "Compute projection"][0].click().run()
    ref_pca = reference("pca")
    sentence = trust_sentence(at)
    assert "PCA map" in sentence and f"trustworthiness {ref_pca['T']:.2f}" in sentence


def test_compare_page_lists_the_three_maps_figures_for_the_active_model(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path, "compare", folder_with(tmp_path, old_layout=False))
    tables = [str(m.value) for m in at.markdown if "| map | trustworthiness | continuity |" in str(m.value)]
    assert tables, "no table of the maps' trustworthiness"
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in tables[0].splitlines()[2:])}
    assert set(rows) == {"t-SNE", "UMAP", "PCA"}
    for method, label in (("tsne", "t-SNE"), ("umap", "UMAP"), ("pca", "PCA")):
        ref = reference(method)
        t, c, kept = rows[label]
        assert float(t) == pytest.approx(ref["T"], abs=6e-4)
        assert float(c) == pytest.approx(ref["C"], abs=6e-4)
        assert kept == f"{ref['kept'].mean() * 10:.1f} of 10"
    assert any("maps of 540 digits test images" in str(c.value) for c in at.caption)


def test_project_command_reports_the_maps_figures(capsys):
    from cl.cli import main

    assert main(["project", str(CKPT / f"{NAME}.safetensors"), "--method", "pca", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = reference("pca")  # PCA is exact: the command's map is the shipped one
    assert out["dataset"] == "digits" and out["n_points"] == 540
    trust = out["trust"]
    assert (trust["k"], trust["n_points"], trust["metric"]) == (10, 540, "cosine")
    assert trust["trustworthiness"] == pytest.approx(ref["T"], abs=1e-5)
    assert trust["continuity"] == pytest.approx(ref["C"], abs=1e-5)
    assert trust["mean_kept"] == pytest.approx(ref["kept"].mean(), abs=1e-5)


def test_compare_page_scores_maps_whose_layout_lacks_the_figures(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path, "compare", folder_with(tmp_path, old_layout=True))
    assert not [m for m in at.markdown if "| map | trustworthiness" in str(m.value)]
    at.button(key="cmp_trust_compute").click().run()
    assert not at.exception, [e.message for e in at.exception]
    table = next(str(m.value) for m in at.markdown if "| map | trustworthiness" in str(m.value))
    ref = reference("umap")
    assert f"| UMAP | {ref['T']:.3f} | {ref['C']:.3f} | {ref['kept'].mean() * 10:.1f} of 10 |" in table
