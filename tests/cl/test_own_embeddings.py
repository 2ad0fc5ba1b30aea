"""Embeddings made elsewhere: the round trip through the export gives the model's own figures and
neighbours; every kind of bad file is refused with one line; images are found by their paths."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl.checkpoints import load_checkpoint
from cl.cli import main
from cl.data import load_dataset
from cl.evaluation import embed, evaluate_model
from cl.own_embeddings import EmbeddingLimits, OwnEmbeddingsError, load_images, load_own_embeddings
from cl.retrieval import NeighborIndex

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "checkpoints" / "digits-best.safetensors"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A shipped model's test embeddings written by ``python -m cl export --format npz``."""
    out = tmp_path_factory.mktemp("export")
    assert main(["export", str(DIGITS), "--format", "npz", "--out", str(out)]) == 0
    model, _card = load_checkpoint(DIGITS)
    test = load_dataset("digits", "test")
    return out / "embeddings.npz", model, test


def test_round_trip_gives_the_models_accuracy_and_neighbours(exported):
    path, model, test = exported
    own = load_own_embeddings(path)
    assert len(own) == len(test) and own.classes == test.classes and own.origins == test.origins
    mine = evaluate_model(model, test, "paper", seed=0)
    from cl.evaluation import evaluate_embeddings

    theirs = evaluate_embeddings(own.embeddings, own.image_set(), "paper", seed=0)
    for key in ("knn_acc", "linear_acc", "top3_acc", "precision_at_10", "n_test", "n_fit"):
        assert theirs[key] == pytest.approx(mine[key], abs=1e-9), key
    reference = embed(model, test.images)
    a, b = NeighborIndex(reference, test.labels.numpy()), NeighborIndex(own.embeddings, own.labels)
    for row in (0, 17, 333, 539):
        assert [h.index for h in a.query(reference[row], 10, exclude=row)] == \
               [h.index for h in b.query(own.embeddings[row], 10, exclude=row)]


def test_cli_with_embeddings(exported, capsys):
    path, model, test = exported
    assert main(["evaluate", "--embeddings", str(path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["knn_acc"] == pytest.approx(evaluate_model(model, test, "paper")["knn_acc"])
    assert main(["neighbors", "--embeddings", str(path), "--query", test.origins[5], "--k", "4", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ref = embed(model, test.images)
    want = NeighborIndex(ref, test.labels.numpy()).query(ref[5], 4, exclude=5)
    assert [n["origin"] for n in r["neighbors"]] == [test.origins[h.index] for h in want]
    assert r["query"]["origin"] == test.origins[5]
    assert main(["project", "--embeddings", str(path), "--method", "pca", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["n_points"] == len(test) and r["trust"]["trustworthiness"] > 0.8
    # one clear line, exit 2: a query that is not in the file; a checkpoint and a file together
    assert main(["neighbors", "--embeddings", str(path), "--query", "nope.png"]) == 2
    assert "neither a row" in capsys.readouterr().err
    assert main(["evaluate", str(DIGITS), "--embeddings", str(path)]) == 2
    assert "not both" in capsys.readouterr().err


def _npz(tmp_path: Path, name="e.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays, words", [
    ({"vectors": np.ones((5, 3))}, "no array named 'embeddings'"),
    ({"embeddings": np.ones(5)}, "must be a matrix"),
    ({"embeddings": np.array([[1.0, np.nan], [1, 2], [3, 4]])}, "NaN or infinite"),
    ({"embeddings": np.ones((5, 3)), "labels": np.arange(4)}, "4 labels for 5 embeddings"),
    ({"embeddings": np.ones((5, 3)), "labels": np.arange(5), "classes": np.array(["a", "b"])}, "has no class name"),
    ({"embeddings": np.ones((5, 3)), "origins": np.array(["a.png"] * 4 + ["../etc/passwd"])}, "climbs out"),
    ({"embeddings": np.ones((5, 3)), "origins": np.array(["a.png"] * 4 + ["/etc/passwd"])}, "is absolute"),
    ({"embeddings": np.ones((5, 3)), "origins": np.array(["a.png"] * 3)}, "3 image paths for 5"),
    ({"embeddings": np.array([["a", "b"]] * 3)}, "must hold numbers"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, arrays, words):
    with pytest.raises(OwnEmbeddingsError, match=words) as err:
        load_own_embeddings(_npz(tmp_path, **arrays))
    assert "\n" not in str(err.value)


def test_huge_and_foreign_files_are_refused_before_reading(tmp_path):
    # 2 GB of float32 declared by the .npy header of a small file: refused from the header alone
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (500_000, 1024)})
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as zf:
        zf.writestr("embeddings.npy", buf.getvalue())
    with pytest.raises(OwnEmbeddingsError, match="over the limit"):
        load_own_embeddings(tmp_path / "big.npz")
    small = _npz(tmp_path, embeddings=np.ones((50, 4)))
    with pytest.raises(OwnEmbeddingsError, match="MiB limit"):
        load_own_embeddings(small, limits=EmbeddingLimits(max_file_bytes=100))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(OwnEmbeddingsError, match="not an .npz or .parquet"):
        load_own_embeddings(tmp_path / "x.txt")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as zf:
        zf.write(tmp_path / "obj.npy", "embeddings.npy")
    with pytest.raises(OwnEmbeddingsError, match="Python objects"):
        load_own_embeddings(tmp_path / "obj.npz")


def test_parquet_with_string_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4)).astype(np.float32)
    table = pa.table({"embedding": pa.array(list(emb), type=pa.list_(pa.float32())),
                      "label": ["dog", "cat", "dog", "cat", "emu", "emu"],
                      "origin": [f"imgs/{i}.png" for i in range(6)]})
    pq.write_table(table, tmp_path / "e.parquet")
    own = load_own_embeddings(tmp_path / "e.parquet")
    np.testing.assert_array_equal(own.embeddings, emb)
    assert own.classes == ["cat", "dog", "emu"] and own.labels.tolist() == [1, 0, 1, 0, 2, 2]
    # columns e0.. as the csv export names them
    pq.write_table(pa.table({f"e{j}": emb[:, j] for j in range(4)}), tmp_path / "cols.parquet")
    np.testing.assert_array_equal(load_own_embeddings(tmp_path / "cols.parquet").embeddings, emb)
    pq.write_table(pa.table({"embedding": pa.array([[1.0, 2.0], [1.0], [3.0, 4.0]])}), tmp_path / "ragged.parquet")
    with pytest.raises(OwnEmbeddingsError, match="different lengths"):
        load_own_embeddings(tmp_path / "ragged.parquet")


def test_images_found_by_their_paths_in_a_zip(tmp_path):
    colours = [(200, 0, 0), (0, 0, 200), (0, 180, 0)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, c in enumerate(colours):
            png = io.BytesIO()
            Image.new("RGB", (40, 30), c).save(png, "PNG")
            zf.writestr(f"photos/set/{i}.png", png.getvalue())  # one top folder around everything
    own = load_own_embeddings(_npz(tmp_path, embeddings=np.eye(3) + 0.1,
                                   origins=np.array(["set/2.png", "set/0.png", "set/1.png"])))
    images = load_images(own, buf.getvalue())
    assert images.shape == (3, 3, 32, 32)
    assert tuple(images[0, :, 16, 16].tolist()) == colours[2] and tuple(images[1, :, 16, 16].tolist()) == colours[0]
    missing = load_own_embeddings(_npz(tmp_path, "m.npz", embeddings=np.eye(3) + 0.1,
                                       origins=np.array(["set/2.png", "set/0.png", "set/9.png"])))
    with pytest.raises(OwnEmbeddingsError, match="'set/9.png' \\(row 2\\) is not among the uploaded images"):
        load_images(missing, buf.getvalue())


def test_a_kept_file_reads_back_as_it_was_and_the_folder_stays_bounded(tmp_path):
    import os

    from cl.own_embeddings import open_stored, store_own_embeddings, stored_path

    rng = np.random.default_rng(1)
    own = load_own_embeddings(_npz(tmp_path, embeddings=rng.normal(size=(6, 3)), labels=np.array(["a", "b"] * 3),
                                   origins=np.array([f"x/{i}.png" for i in range(6)])))
    images = rng.integers(0, 256, size=(6, 3, 4, 4), dtype=np.uint8)
    kept = tmp_path / "kept"
    key = store_own_embeddings(own, images, kept, b"upload bytes")
    back, back_images = open_stored(stored_path(key, kept))
    np.testing.assert_array_equal(back.embeddings, own.embeddings)
    np.testing.assert_array_equal(back.labels, own.labels)
    assert (back.classes, back.origins, back.name, back.has_labels) == (own.classes, own.origins, own.name, True)
    np.testing.assert_array_equal(back_images.numpy(), images)
    assert stored_path("../../etc/passwd", kept) is None and stored_path("0" * 16, kept) is None
    os.utime(kept / f"{key}.npz", (1, 1))  # the oldest file
    for i in range(3):  # the oldest go first once more than `keep` are kept
        store_own_embeddings(own, None, kept, f"other {i}".encode(), keep=2)
    assert len(list(kept.glob("*.npz"))) == 2 and stored_path(key, kept) is None
