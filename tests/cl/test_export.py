"""``python -m cl export``: every format parsed back and checked against embeddings computed here."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl.checkpoints import load_checkpoint, read_card
from cl.cli import main
from cl.data import clear_cache, load_dataset
from cl.evaluation import embed
from cl.export import export_embeddings, sprite

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "checkpoints" / "digits-best.safetensors"
CIFAR = ROOT / "checkpoints" / "cifar10-best.safetensors"


@pytest.fixture(scope="module")
def reference():
    """The digits test split and its embeddings, computed independently of cl.export."""
    model, card = load_checkpoint(DIGITS)
    test = load_dataset("digits", "test")
    return test, embed(model, test.images), card


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_projector_files_load_back(tmp_path, capsys, reference):
    test, emb, card = reference
    code, out, err = run(["export", DIGITS, "--format", "projector", "--out", tmp_path / "p", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n_images"] == 540 and summary["dim"] == emb.shape[1]
    folder = tmp_path / "p"
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "metadata.tsv", "projector_config.json",
                                                       "projector_config.pbtxt", "sprite.png", "tensors.tsv"]
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t", dtype=np.float32)
    assert tensors.shape == (540, emb.shape[1])
    np.testing.assert_allclose(tensors, emb, rtol=1e-5, atol=1e-6)
    rows = (folder / "metadata.tsv").read_text().splitlines()
    assert rows[0] == "index\tlabel\tclass\torigin" and len(rows) == 541
    parsed = [r.split("\t") for r in rows[1:]]
    assert [r[3] for r in parsed] == test.origins  # where each image came from: digits/<index in load_digits()>
    assert [int(r[0]) for r in parsed] == list(range(540))
    assert [int(r[1]) for r in parsed] == test.labels.tolist()
    assert [r[2] for r in parsed] == [test.classes[y] for y in test.labels.tolist()]
    grid = np.asarray(Image.open(folder / "sprite.png"))
    assert grid.shape == (24 * 28, 24 * 28)  # ceil(sqrt(540)) = 24 tiles a side, 28 px each
    for i in (0, 1, 23, 24, 539):  # row-major tiles are the images themselves
        r, c = divmod(i, 24)
        np.testing.assert_array_equal(grid[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28], test.images[i, 0].numpy())
    assert not grid[-28:, -28:].any()  # padding after the last tile is black
    pbtxt = (folder / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "tensors.tsv"' in pbtxt and 'metadata_path: "metadata.tsv"' in pbtxt
    assert 'image_path: "sprite.png"' in pbtxt and pbtxt.count("single_image_dim: 28") == 2
    config = json.loads((folder / "projector_config.json").read_text())["embeddings"][0]
    assert config["tensorShape"] == [540, emb.shape[1]] and config["sprite"]["singleImageDim"] == [28, 28]
    meta = json.loads((folder / "export.json").read_text())
    assert meta["card"]["name"] == card["name"] and meta["card"]["metrics"] == card["metrics"]
    assert meta["data"]["dataset"] == "digits" and meta["data"]["split"] == "test" and meta["data"]["n_images"] == 540


def test_npz_and_csv_match_the_embeddings(tmp_path, capsys, reference):
    test, emb, _card = reference
    assert run(["export", DIGITS, "--format", "npz", "--out", tmp_path / "n"], capsys)[0] == 0
    with np.load(tmp_path / "n" / "embeddings.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["classes", "embeddings", "indices", "labels", "origins"]
        assert z["origins"].tolist() == test.origins and z["classes"].tolist() == test.classes
        np.testing.assert_array_equal(z["embeddings"], emb)
        np.testing.assert_array_equal(z["labels"], test.labels.numpy())
        np.testing.assert_array_equal(z["indices"], np.arange(540))
        assert z["embeddings"].dtype == np.float32 and z["labels"].dtype == np.int64
    assert run(["export", DIGITS, "--format", "csv", "--out", tmp_path / "c"], capsys)[0] == 0
    with open(tmp_path / "c" / "embeddings.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "label", "class", "origin"] + [f"e{j}" for j in range(emb.shape[1])]
    assert len(rows) == 541
    assert [r[3] for r in rows[1:]] == test.origins
    np.testing.assert_allclose(np.array([r[4:] for r in rows[1:]], dtype=np.float32), emb, rtol=1e-5, atol=1e-6)
    assert [int(r[1]) for r in rows[1:]] == test.labels.tolist()
    assert json.loads((tmp_path / "c" / "export.json").read_text())["files"]["embeddings.csv"]


def test_train_split_and_an_archive_data_set(tmp_path, capsys, monkeypatch):
    import io
    import zipfile

    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    clear_cache()
    code, out, err = run(["export", DIGITS, "--split", "train", "--format", "npz", "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    with np.load(tmp_path / "t" / "embeddings.npz") as z:
        assert z["embeddings"].shape[0] == 1257
    # a cifar-shaped model on a zip of two classes of 32x32 photos
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, cls in enumerate(("red", "blue")):
            for i in range(23):
                png = io.BytesIO()
                Image.new("RGB", (40, 30), (200 * (1 - k), i, 200 * k)).save(png, "PNG")
                zf.writestr(f"{cls}/{i}.png", png.getvalue())
    archive = tmp_path / "two colours.zip"
    archive.write_bytes(buf.getvalue())
    code, out, err = run(["export", CIFAR, "--dataset", f"folder:{archive}", "--format", "csv",
                          "--out", tmp_path / "a"], capsys)
    assert code == 0, err
    rows = list(csv.reader(open(tmp_path / "a" / "embeddings.csv")))
    assert len(rows) == 1 + 10 and {r[2] for r in rows[1:]} == {"red", "blue"}  # 5 test images per class
    # each row names its file in the zip, and that file is of the row's class
    assert all(r[3].split("/")[0] == r[2] and r[3].split("/")[1] in {f"{i}.png" for i in range(23)} for r in rows[1:])
    meta = json.loads((tmp_path / "a" / "export.json").read_text())
    assert meta["data"]["source"].startswith("archive two colours.zip")
    # a model for another input shape: one line, exit 2
    code, out, err = run(["export", DIGITS, "--dataset", f"folder:{archive}", "--format", "npz",
                          "--out", tmp_path / "x"], capsys)
    assert code == 2 and err.count("\n") == 1 and "takes 1x28x28 images" in err, err
    clear_cache()


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys):
    import pickle as pickle_module

    pickle = tmp_path / "model.safetensors"
    pickle.write_bytes(pickle_module.dumps({"weights": [0.0] * 10}, protocol=4))  # a pickle, renamed
    # one in a subprocess, as a user runs it; the others in-process (same code path, no torch import)
    r = subprocess.run([sys.executable, "-m", "cl", "export", str(pickle), "--format", "npz", "--out",
                        str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "pickle" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for args, reason in ((["export", DIGITS, "--format", "xml", "--out", tmp_path / "o"], "invalid choice"),
                         (["export", DIGITS, "--format", "npz"], "--out"),
                         (["export", tmp_path / "missing.safetensors", "--format", "npz", "--out", tmp_path / "o"],
                          "no such checkpoint")):
        code, out, err = run(args, capsys)
        assert code == 2 and err.count("\n") == 1 and reason in err, err
    assert not (tmp_path / "o").exists()


def test_sprite_shrinks_tiles_to_stay_within_the_projector_limit():
    images = np.zeros((20_000, 1, 64, 64), dtype=np.uint8)
    images[-1] = 255
    grid, side = sprite(images)
    assert side == 8192 // 142 and grid.shape == (142 * side, 142 * side)  # ceil(sqrt(20,000)) = 142
    r, c = divmod(19_999, 142)
    assert grid[r * side:(r + 1) * side, c * side:(c + 1) * side].min() == 255


def test_mismatched_rows_are_refused(reference, tmp_path):
    from cl.errors import ConfigError

    test, emb, _ = reference
    with pytest.raises(ConfigError, match="must match one to one"):
        export_embeddings(emb[:10], test, "npz", tmp_path)
    assert read_card(DIGITS)["name"]
