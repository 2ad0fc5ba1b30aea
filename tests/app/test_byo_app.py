"""Bring your own, in the app (AppTest): a checkpoint and an image archive uploaded in the sidebar
become this session's model and data set on every page; refused files leave everything as it was;
the export behind the embeddings download button gives back what the model computes."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_app import button, goto, model_box, new_session, poll_until, texts
from test_app_helpers import digit_png, shipped_dir

ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT / "checkpoints" / "cifar10-best.safetensors"


# Every test here gets its own cache folder (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("app_env", "archive_cache_dir")


def colour_zip(per_class: int = 23) -> bytes:
    """Two classes of 40x30 photos: reddish and bluish, each image a slightly different shade."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, cls in enumerate(("red things", "blue things")):
            for i in range(per_class):
                png = io.BytesIO()
                Image.new("RGB", (40, 30), (200 * (1 - k) + i, 40 + i, 200 * k + i)).save(png, "PNG")
                zf.writestr(f"my photos/{cls}/{i}.png", png.getvalue())
        zf.writestr("my photos/readme.txt", "not an image")
    return buf.getvalue()


def home_model(tmp_path: Path) -> bytes:
    """A digits checkpoint as if trained at home: the test's model under another name."""
    from cl.checkpoints import read_card, rewrite_card

    path = tmp_path / "home-model.safetensors"
    shutil.copy(next(shipped_dir().glob("*.safetensors")), path)
    card = read_card(path)
    card["name"] = "home-model"
    rewrite_card(path, card)
    return path.read_bytes()


def upload(at, key: str, name: str, data: bytes):
    if not at.sidebar.toggle(key="byo_open").value:
        at.sidebar.toggle(key="byo_open").set_value(True).run()
    at.sidebar.file_uploader(key=key).set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def sidebar_notes(at) -> str:
    parts = []
    for kind in ("success", "warning", "error", "info", "caption"):
        parts += [str(e.value) for e in getattr(at.sidebar, kind)]
    return "\n".join(parts)


def test_a_checkpoint_upload_becomes_the_model_and_bad_ones_change_nothing(tmp_path):
    import torch
    from safetensors.torch import save as st_save

    at = new_session()
    before = model_box(at).value
    good = home_model(tmp_path)
    import pickle

    saved = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, saved)
    refused = [
        ("model.pt", pickle.dumps({"weights": [0.0] * 10}, protocol=4), "pickle"),
        ("model.pth", saved.getvalue(), "pickle"),  # torch.save: a zip holding a pickle
        ("cut.safetensors", good[: len(good) // 2], "truncated"),
        ("foreign.safetensors", st_save({"w": torch.zeros(3)}), "not a Contrastive Explorer checkpoint"),
        ("empty.safetensors", b"", "empty"),
    ]
    for name, data, reason in refused:
        upload(at, "byo_model", name, data)
        errors = [e.value for e in at.sidebar.error]
        assert errors and "Cannot use this model" in errors[0] and reason in errors[0], (name, errors)
        assert name in errors[0] and str(tmp_path) not in errors[0] and "cache" not in errors[0], errors[0]
        assert model_box(at).value == before, name
    upload(at, "byo_model", "home-model.safetensors", good)
    assert "home-model is now the active model" in sidebar_notes(at)
    box = model_box(at)
    assert "home-model" in box.format_func(box.value) and "uploaded this session" in box.format_func(box.value)
    for page in ("retrieval", "embedding", "metrics"):
        assert "home-model" in texts(goto(at, page)), page
    # a model for another input shape: a message naming both shapes; the active model stays
    upload(at, "byo_model", "cifar10-best.safetensors", CIFAR.read_bytes())
    warnings = [w.value for w in at.sidebar.warning]
    assert warnings and "takes 3x32x32 images" in warnings[0] and "digits has 1x28x28" in warnings[0], warnings
    assert "Choose cifar10" in warnings[0]
    assert "home-model" in model_box(at).format_func(model_box(at).value)
    # nothing was written beside the app: the upload sits in the cache folder, by content
    stored = list((Path(tmp_path) / "cache" / "models").glob("*.safetensors"))
    assert len(stored) == 2 and not list((Path(tmp_path) / "cache" / "models").glob("*.part"))


def test_an_archive_becomes_a_data_set_to_train_on_retrieve_from_and_export(tmp_path, archive_cache_dir):
    at = new_session()
    upload(at, "byo_archive", "bomb.zip", b"PK\x03\x04" + b"\0" * 200)
    assert "Cannot use this archive" in at.sidebar.error[0].value
    assert at.sidebar.selectbox(key="sb_dataset").value == "digits"

    upload(at, "byo_archive", "my photos.zip", colour_zip())
    notes = sidebar_notes(at)
    assert "my photos.zip: 2 classes, 46 images (1 entry skipped: 1 files not directly in a class folder)" in notes, notes
    box = at.sidebar.selectbox(key="sb_dataset")
    assert box.value.startswith("archive:") and box.options[-1] == "my photos.zip (your image set) (3x32x32)"
    assert "36 train / 10 test images here" in notes
    # a model trained at home on 3x32x32 images fits it at once
    upload(at, "byo_model", "cifar10-best.safetensors", CIFAR.read_bytes())
    assert "is now the active model" in sidebar_notes(at)
    goto(at, "retrieval")
    assert "Top 9 neighbours" in texts(at)  # 10 test images, the query excluded
    assert "red things" in texts(at) or "blue things" in texts(at)
    at.file_uploader(key="ret_upload").set_value(("query.png", digit_png(mode="RGB"), "image/png")).run()
    assert not at.exception and "Top 10 neighbours of your image" in texts(at)

    # train on it through the Train page (one epoch on 36 images)
    goto(at, "train")
    [n for n in at.number_input if n.label == "Epochs"][0].set_value(1)
    button(at, "Start training").click().run()
    poll_until(at, lambda a: "Training finished" in texts(a) or "Failed" in texts(a))
    assert "Training finished" in texts(at), texts(at)[-2000:]
    box = model_box(at)
    assert "trained this session" in box.format_func(box.value)
    # Compare draws the two models of this image set, its class names included
    goto(at, "compare")
    assert not at.exception, at.exception
    assert len(at.get("vega_lite_chart")) >= 2, "both models drawn"

    # the embeddings download: what the button serves, parsed back
    from cl.checkpoints import load_checkpoint
    from cl.data import load_dataset
    from cl.evaluation import embed
    from cl.workflow import export_zip

    data = export_zip(box.value, at.sidebar.selectbox(key="sb_dataset").value, "test", "npz", archive_cache_dir / "exports")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["embeddings.npz", "export.json"]
        with np.load(io.BytesIO(zf.read("embeddings.npz"))) as z:
            model, _ = load_checkpoint(box.value)
            test = load_dataset(at.sidebar.selectbox(key="sb_dataset").value, "test")
            np.testing.assert_allclose(z["embeddings"], embed(model, test.images), rtol=1e-5, atol=1e-6)
            assert z["labels"].tolist() == test.labels.tolist()
            # each row names its file in the zip (below its top folder "my photos"), of the row's class
            assert z["origins"].tolist() == test.origins
            assert all(o.split("/")[0] == test.classes[y] for o, y in zip(z["origins"], z["labels"], strict=True))
        meta = json.loads(zf.read("export.json"))
        assert meta["data"]["source"].startswith("archive my photos.zip") and meta["classes"] == ["blue things", "red things"]
    assert not list((archive_cache_dir / "exports").iterdir()), "the staging folder is removed"


def test_demo_mode_bounds_uploads_more_tightly(monkeypatch, archive_cache_dir):
    monkeypatch.setenv("CL_DEMO", "1")
    at = new_session()
    # 21 MiB: under the 100 MiB of a private server, over the demo's 20 MiB for a model
    upload(at, "byo_model", "big.safetensors", b"\0" * (21 * 2**20))
    assert "21.0 MiB is over the 20 MiB limit for a model" in at.sidebar.error[0].value
    # a stored (uncompressed) zip of 51 MiB: over the demo's 50 MiB, refused before it is opened
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/big.png", b"\0" * (51 * 2**20))
    upload(at, "byo_archive", "big.zip", buf.getvalue())
    errors = [e.value for e in at.sidebar.error]
    assert any("over the 50 MiB limit for an image archive" in e for e in errors), errors
    assert at.sidebar.selectbox(key="sb_dataset").value == "digits"
    assert not (archive_cache_dir / "archives").exists() or not list((archive_cache_dir / "archives").iterdir())


HOSTILE = ("**bold** [x](javascript:alert(1))", "__init__")


def hostile_zip(per_class: int = 23) -> bytes:
    """Two classes whose folder names are Markdown: a bold link and a dunder name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, cls in enumerate(HOSTILE):
            for i in range(per_class):
                png = io.BytesIO()
                Image.new("RGB", (40, 30), (200 * (1 - k) + i, 40 + i, 200 * k + i)).save(png, "PNG")
                zf.writestr(f"{cls}/img_{i:02d}.png", png.getvalue())
    return buf.getvalue()


def markdown_sources(at) -> list[str]:
    """Every Markdown string the page sent, image captions included (the raw source, as Streamlit's
    Markdown renderer receives it)."""
    out = [str(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "error", "subheader")
           for e in getattr(at, kind)]
    for element in at.get("image"):
        out += [img.caption for img in element.proto.imgs if img.caption]
    return out


def test_names_a_person_chose_are_shown_as_typed(archive_cache_dir):
    """Class folders named like Markdown are escaped in every Markdown string (so the renderer shows
    them as typed), and each image is captioned with its file in the zip."""
    from ui.words import plain

    at = new_session()
    upload(at, "byo_archive", "names.zip", hostile_zip())
    upload(at, "byo_model", "cifar10-best.safetensors", CIFAR.read_bytes())
    for page in ("retrieval", "augmentations", "metrics"):
        sources = markdown_sources(goto(at, page))
        named = [s for s in sources if "bold" in s or "init" in s]
        assert named or page == "metrics", page  # Metrics names the classes in its charts (Vega: plain text)
        for s in named:  # the names appear only in their escaped form
            stripped = s.replace(plain(HOSTILE[0]), "").replace(plain(HOSTILE[1]), "")
            assert "bold" not in stripped and "init" not in stripped, (page, s)
    sources = markdown_sources(goto(at, "retrieval"))
    assert any(plain("__init__/img_") in s or plain("**bold** [x](javascript:alert(1))/img_") in s for s in sources)
