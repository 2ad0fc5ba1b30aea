"""Own embeddings in the app (AppTest): a file exported from a model (``python -m cl export --format
npz``) uploaded in the sidebar becomes the data set, and Embedding, Metrics and Retrieval run on its
rows without a checkpoint, giving the CLI's probe figures and the model's own neighbours; pages that
need a model say so; a bad file is one line and changes nothing; ``dataset=embeddings:ID`` reopens it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_app import goto, model_box, new_session, texts
from test_app_helpers import ROOT, shipped_dir

pytestmark = pytest.mark.usefixtures("app_env", "archive_cache_dir")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """The test model's digits test embeddings, exported by the CLI: ``(npz, checkpoint)``."""
    ckpt = next(shipped_dir().glob("*.safetensors"))
    out = tmp_path_factory.mktemp("export")
    subprocess.run([sys.executable, "-m", "cl", "export", str(ckpt), "--format", "npz", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return next(out.rglob("*.npz")), ckpt


def upload(at, files):
    if not at.sidebar.toggle(key="byo_open").value:
        at.sidebar.toggle(key="byo_open").set_value(True).run()
    at.sidebar.file_uploader(key="byo_embeddings").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def as_upload(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "application/octet-stream")


def dataset_box(at):
    return next(s for s in at.sidebar.selectbox if s.label == "Data set")


def images_zip(npz: Path) -> bytes:
    """The digits test images as PNG files named by the file's origins (what a person would zip)."""
    from PIL import Image

    from cl.data import load_dataset

    origins = np.load(npz, allow_pickle=False)["origins"].tolist()
    test = load_dataset("digits", "test", download=False, allow_gallery=True)
    assert list(test.origins) == origins  # the export names each row's image
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for origin, img in zip(origins, test.images.numpy(), strict=True):
            png = io.BytesIO()
            Image.fromarray(img[0]).save(png, "PNG")
            zf.writestr(origin, png.getvalue())
    return buf.getvalue()


def test_an_exported_file_opens_on_every_page_that_needs_no_model(exported):
    npz, _ckpt = exported
    at = upload(new_session(), as_upload(npz))
    assert str(dataset_box(at).value).startswith("embeddings:"), texts(at)
    assert "It is now the data set" in texts(at)
    assert model_box(at) is not None and "your embeddings file" in model_box(at).format_func(model_box(at).value)
    goto(at, "embedding")
    assert "trustworthiness" in texts(at) and "Not offered for an embeddings file" in texts(at)
    assert any("t-SNE" in c.proto.spec for c in at.get("vega_lite_chart"))  # the map
    goto(at, "metrics")
    assert "Standard protocol unavailable" in texts(at)
    goto(at, "retrieval")
    assert "Top 10 neighbours" in texts(at) and "searching with a new image" in texts(at)
    for page in ("train", "augmentations", "compare", "batch"):
        goto(at, page)
        assert "needs a model" in texts(at), page
    for page in ("home", "study", "room", "join"):  # pages about the shipped study and the room still open
        goto(at, page)
    # the sidebar offers no checkpoint download for a file that is not one
    assert not [b for b in at.sidebar.get("download_button") if "checkpoint" in str(b.proto.label).lower()]


def test_metrics_equal_the_cli_and_neighbours_equal_the_model(exported):
    npz, ckpt = exported
    cli = subprocess.run([sys.executable, "-m", "cl", "evaluate", "--embeddings", str(npz), "--protocol", "paper",
                          "--json"], cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    want = json.loads(cli.stdout)
    at = goto(upload(new_session(), as_upload(npz)), "metrics")
    shown = {m.label: m.value for m in at.metric}
    assert shown["Linear probe accuracy"].startswith(f"{want['linear_acc']:.3f}"), shown
    assert shown["kNN-30 accuracy"].startswith(f"{want['knn_acc']:.3f}"), shown
    assert f"scored on {want['n_test']:,}" in texts(at) and npz.name in texts(at)

    # The model's own neighbours of test image 7, computed from the checkpoint itself.
    from cl.evaluation import embed
    from cl.retrieval import NeighborIndex
    from cl.workflow import open_model

    opened = open_model(ckpt, None, "test", download=False)
    index = NeighborIndex(embed(opened.model, opened.data.images), opened.data.labels.numpy())
    model_hits = [opened.data.origins[h.index] for h in index.query(index.z[7].numpy(), k=10, exclude=7)]
    goto(at, "retrieval")
    at.number_input(key=f"ret_index_{dataset_box(at).value}").set_value(7).run()
    gallery = next(c.value for c in at.caption if " · match " in str(c.value))
    assert re.findall(r"digits/\d+", gallery) == model_hits


def test_images_come_along_from_a_zip(exported):
    npz, _ckpt = exported
    at = upload(new_session(), [as_upload(npz), ("digit images.zip", images_zip(npz), "application/zip")])
    assert "with their images" in texts(at), texts(at)
    goto(at, "embedding")
    goto(at, "retrieval")
    captions = [str(c) for im in at.image for c in im.captions]
    assert sum(" · match " in c for c in captions) == 10, captions  # the neighbours as pictures, with their origins
    assert not [c for c in at.caption if " · match " in str(c.value)]  # not the text-only fallback


@pytest.mark.parametrize("name, make, says", [
    ("nan.npz", lambda: _npz(embeddings=np.full((5, 4), np.nan, np.float32)), "NaN"),
    ("short.npz", lambda: _npz(embeddings=np.ones((5, 4), np.float32), labels=np.arange(4)), "match one to one"),
    ("notes.npz", lambda: b"hello", "not a readable .npz file"),
    ("big.npz", lambda: _npz(embeddings=np.ones((5, 20_000), np.float32)), "over the limit"),
])
def test_a_bad_file_is_one_line_and_changes_nothing(exported, name, make, says):
    npz, _ckpt = exported
    at = new_session()
    before_dataset, before_model = dataset_box(at).value, model_box(at).value
    at = upload(at, (name, make(), "application/octet-stream"))
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and says in errors[0] and "\n" not in errors[0], errors
    assert dataset_box(at).value == before_dataset and model_box(at).value == before_model
    from ui.own import folder

    assert not (folder().exists() and list(folder().glob("*.npz")))  # nothing kept


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_the_link_reopens_the_file_and_a_gone_file_says_so(exported):
    npz, _ckpt = exported
    at = upload(new_session(), as_upload(npz))
    dataset = str(dataset_box(at).value)
    from streamlit.testing.v1 import AppTest

    from test_app import APP

    fresh = AppTest.from_file(str(APP), default_timeout=180)
    fresh.query_params["dataset"] = dataset
    fresh.run()
    assert not fresh.exception
    assert dataset_box(fresh).value == dataset, texts(fresh)
    from ui.own import path_of

    path_of(dataset).unlink()
    gone = AppTest.from_file(str(APP), default_timeout=180)
    gone.query_params["dataset"] = dataset
    gone.run()
    assert not gone.exception
    assert "no longer on this server" in texts(gone) and dataset_box(gone).value == "digits"


def test_a_file_without_labels_or_images_still_maps_and_finds_neighbours():
    rng = np.random.default_rng(0)
    at = upload(new_session(), ("vectors.npz", _npz(embeddings=rng.normal(size=(60, 8)).astype(np.float32)),
                                "application/octet-stream"))
    assert "no labels" in texts(at)
    for page in ("embedding", "retrieval"):
        goto(at, page)
    goto(at, "embedding").segmented_control(key="emb_color").set_value("predicted").run()
    assert not at.exception and "no labels to fit a probe on" in texts(at)
    at = goto(at, "metrics")
    assert "has no labels" in texts(at)


def test_a_parquet_file_with_string_labels_opens_like_an_npz(exported, tmp_path):
    import pandas as pd

    npz, _ckpt = exported
    z = np.load(npz, allow_pickle=False)
    names = z["classes"][z["labels"]]
    path = tmp_path / "vectors.parquet"
    pd.DataFrame({"embedding": list(z["embeddings"]), "label": names, "origin": z["origins"]}).to_parquet(path)
    at = goto(upload(new_session(), as_upload(path)), "metrics")
    want = goto(upload(new_session(), as_upload(npz)), "metrics")
    assert {m.label: m.value for m in at.metric} == {m.label: m.value for m in want.metric}


def test_a_tiny_file_opens_on_every_page_without_a_traceback():
    rng = np.random.default_rng(0)
    at = upload(new_session(), ("tiny.npz", _npz(embeddings=rng.normal(size=(5, 3)).astype(np.float32),
                                                 labels=np.arange(5)), "application/octet-stream"))
    for page in ("embedding", "metrics", "retrieval"):
        goto(at, page)


def test_demo_mode_bounds_an_embeddings_file_more_tightly(monkeypatch):
    rows = np.random.default_rng(0).normal(size=(20_001, 2)).astype(np.float32)  # 160 kB: over the demo's 20,000 rows
    monkeypatch.setenv("CL_DEMO", "1")
    at = upload(new_session(), ("many.npz", _npz(embeddings=rows), "application/octet-stream"))
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and "20,001 x 2 embeddings is over the limit (20,000 rows" in errors[0], errors
    monkeypatch.delenv("CL_DEMO")
    at = upload(new_session(), ("many.npz", _npz(embeddings=rows), "application/octet-stream"))
    assert not at.sidebar.error and "20,001 rows" in texts(at)
