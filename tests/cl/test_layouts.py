"""Shipped layouts (cl.layouts): each equals a fresh computation, and a changed checkpoint makes
its layout stale instead of showing an old picture."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cl.checkpoints import load_checkpoint
from cl.evaluation import embed
from cl.layouts import METHODS, gallery_for, gallery_rows, layout_path, load_layout, read_layouts
from cl.projection import ProjectionParams, project

from test_app_helpers import ROOT

CKPT = ROOT / "checkpoints"


def test_every_shipped_checkpoint_has_a_current_layout_file():
    names = sorted(p.stem for p in CKPT.glob("*.safetensors"))
    assert names
    for name in names:
        data = read_layouts(CKPT / f"{name}.safetensors")
        assert data is not None, f"{name}: layouts missing or stale (python scripts/build_checkpoints.py --layouts {name})"
        n = len(data["labels"])
        for m in METHODS:
            assert data[m].shape == (n, 2) and data[m].dtype == np.float32 and np.isfinite(data[m]).all()
        gallery = gallery_for(data["meta"]["dataset"])
        assert np.array_equal(gallery.labels.numpy(), data["labels"].astype(np.int64))
        # the app's default view is what was shipped: its shipped-view test depends on it
        assert data["meta"]["params"] == ProjectionParams().settings(), name


def _neighbour_agreement(layout: np.ndarray, emb: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's k nearest neighbours in the 2-D layout that are also among
    its k nearest (cosine) in the embedding: how faithfully a layout shows these embeddings."""
    from sklearn.neighbors import NearestNeighbors

    in_2d = NearestNeighbors(n_neighbors=k + 1).fit(layout).kneighbors(layout, return_distance=False)[:, 1:]
    in_emb = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(emb).kneighbors(emb, return_distance=False)[:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(in_2d, in_emb, strict=True)]))


@pytest.mark.parametrize("name", ["digits-best", "cifar10-none-triplet", "mnist-none-triplet"])
def test_a_shipped_layout_equals_a_fresh_computation(name):
    """PCA is linear algebra: equal on any machine. t-SNE and UMAP are seeded and repeatable on
    one machine, but chaotic: another CPU's floating-point paths (numba's and openTSNE's compiled
    kernels) move points as much as another seed does (measured: the layouts built on the first
    build machine, fresh here, share 56-94 % of 10-NN, like seed 0 vs seed 1). So they must be equal
    where they reproduce, and elsewhere show this model's embeddings as faithfully as a fresh
    computation does; a layout of other data, or shuffled rows, fails that."""
    path = CKPT / f"{name}.safetensors"
    model, card = load_checkpoint(path)
    gallery = gallery_for(card["data"]["dataset"])
    emb = embed(model, gallery.images)
    for method in METHODS:
        fresh = project(emb, ProjectionParams(method))
        shipped = load_layout(path, method)
        assert shipped is not None and shipped.shape == fresh.shape
        scale = float(np.abs(fresh).max())
        if method == "pca" or np.allclose(shipped, fresh, atol=1e-3 * scale):
            assert np.allclose(shipped, fresh, atol=1e-3 * scale), f"{name} {method}"
            continue
        ours, theirs = _neighbour_agreement(fresh, emb), _neighbour_agreement(shipped, emb)
        assert theirs >= ours - 0.05, f"{name} {method}: shipped {theirs:.3f} vs fresh {ours:.3f}"
        shuffled = shipped[np.random.default_rng(0).permutation(len(shipped))]
        assert _neighbour_agreement(shuffled, emb) < ours - 0.05  # the criterion can fail


def test_a_rewritten_checkpoint_makes_its_layout_stale(tmp_path):
    src = CKPT / "digits-best.safetensors"
    copy = tmp_path / "model.safetensors"
    shutil.copy(src, copy)
    layout_path(copy).parent.mkdir()
    shutil.copy(layout_path(src), layout_path(copy))
    assert load_layout(copy, "tsne") is not None
    raw = bytearray(copy.read_bytes())
    raw[-1] ^= 0xFF  # one bit of a weight changes
    copy.write_bytes(bytes(raw))
    assert load_layout(copy, "tsne") is None
    assert load_layout(tmp_path / "absent.safetensors", "tsne") is None


def test_gallery_rows_are_the_gallery_sample_of_the_full_split():
    rows = gallery_rows(10_000, 2_000)
    assert len(rows) == 2_000 and np.all(np.diff(rows) > 0)
    assert np.array_equal(gallery_rows(540, 540), np.arange(540))
    assert gallery_rows(100, 2_000) is None


def test_the_gallery_rows_of_the_full_mnist_test_split_hold_the_gallery_images(data_dir):
    from cl.data import load_dataset

    full = load_dataset("mnist", "test", str(data_dir), download=False, allow_gallery=False)
    gallery = gallery_for("mnist")
    rows = gallery_rows(len(full), len(gallery))
    assert np.array_equal(full.images.numpy()[rows], gallery.images.numpy())


def test_shipped_evaluation_matches_a_fresh_probe_and_sklearn(data_dir):
    from sklearn.metrics import confusion_matrix

    from cl.data import load_dataset
    from cl.evaluation import evaluate_embeddings
    from cl.layouts import gallery_digest, load_evaluation

    path = CKPT / "digits-best.safetensors"
    model, _ = load_checkpoint(path)
    test = load_dataset("digits", "test", download=False, allow_gallery=False)
    train = load_dataset("digits", "train", download=False, allow_gallery=False)
    digest = gallery_digest(test.images.numpy(), test.labels.numpy())
    for protocol in ("paper", "standard"):
        shipped = load_evaluation(path, protocol, digest, len(train))
        assert shipped is not None, protocol
        fresh = evaluate_embeddings(embed(model, test.images), test, protocol, embed(model, train.images), train, seed=0)
        y = test.labels.numpy()[np.asarray(shipped["scored_indices"])]
        cm = confusion_matrix(y, shipped["predictions"], labels=range(10))
        assert np.array_equal(cm, np.asarray(shipped["confusion_matrix"]))
        assert np.array_equal(np.asarray(fresh["confusion_matrix"]), np.asarray(shipped["confusion_matrix"]))
        assert abs(fresh["linear_acc"] - shipped["linear_acc"]) < 1e-9
        for where in ("fitted_on", "scored_on"):  # no absolute path of the build machine
            assert not str(shipped[where].get("source", "")).startswith("/")
    assert load_evaluation(path, "paper", "0" * 64) is None  # other test images: recompute
    assert load_evaluation(path, "standard", digest, len(train) + 1) is None  # another train split
