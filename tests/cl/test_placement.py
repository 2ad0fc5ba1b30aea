"""Where an image's augmentations land (cl.placement): K augmented views of a test image placed on
a model's 2-D layout of its test gallery, checked against projections written out here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cl.errors import ConfigError
from cl.evaluation import embed
from cl.placement import augmented_views, checkpoint_layout, exact_query, fit_placer, place_views
from cl.projection import ProjectionParams

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints" / "digits-best.safetensors"  # 540 bundled test images: quick


@pytest.fixture(scope="module")
def pca_layout():
    return checkpoint_layout(CKPT, "pca")


@pytest.fixture(scope="module")
def tsne_layout():
    return checkpoint_layout(CKPT, "tsne")


def _pca_by_hand(reference: np.ndarray, layout: np.ndarray):
    """Mean and the two principal directions from an SVD, each direction's sign chosen to agree
    with the layout (whose sign convention is the library's own)."""
    x = reference.astype(np.float64)
    mean = x.mean(axis=0)
    _u, _s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:2]
    proj = (x - mean) @ comps.T
    signs = np.sign((proj * layout).sum(axis=0))
    return mean, comps * signs[:, None]


def test_pca_placement_equals_the_projection_by_hand(pca_layout):
    lay = pca_layout
    assert lay["source"] == "shipped" and len(lay["labels"]) == 540
    mean, comps = _pca_by_hand(lay["embeddings"], lay["coords"])
    # the shipped layout is the projection of the gallery's embeddings
    np.testing.assert_allclose((lay["embeddings"] - mean) @ comps.T, lay["coords"], atol=1e-4)
    placer = fit_placer(lay["embeddings"], lay["coords"], ProjectionParams("pca"))
    placed = place_views(lay["model"], placer, lay["images"][7], k=16, augmentation="affine", seed=3)
    assert placed.xy.shape == (16, 2) and placed.views.shape == (16, 1, 28, 28)
    expected = (embed(lay["model"], placed.views).astype(np.float64) - mean) @ comps.T
    np.testing.assert_allclose(placed.xy, expected, atol=1e-4)
    # the views differ, so their positions do
    assert len({tuple(np.round(p, 5)) for p in placed.xy}) == 16


def test_identity_augmentation_lands_on_the_original_for_pca(pca_layout):
    lay = pca_layout
    placer = fit_placer(lay["embeddings"], lay["coords"], ProjectionParams("pca"))
    for i in (0, 123, 539):
        placed = place_views(lay["model"], placer, lay["images"][i], k=4, augmentation="none", seed=0)
        assert torch.equal(placed.views, lay["images"][i].unsqueeze(0).repeat(4, 1, 1, 1))
        np.testing.assert_allclose(placed.xy, np.repeat(lay["coords"][i][None], 4, 0), atol=1e-4)


def test_tsne_transform_keeps_the_layout_frame_and_is_seeded(tsne_layout):
    lay = tsne_layout
    coords = lay["coords"]
    span = float(np.ptp(coords, axis=0).max())
    placer = fit_placer(lay["embeddings"], coords, ProjectionParams("tsne"))
    # an unaugmented image lands next to its own point (openTSNE optimises it afresh), in the
    # layout's frame rather than openTSNE's centred one
    for i in (5, 300):
        placed = place_views(lay["model"], placer, lay["images"][i], k=3, augmentation="none")
        assert np.allclose(placed.xy, placed.xy[0], atol=1e-5), "identical views land on one spot"
        assert np.linalg.norm(placed.xy[0] - coords[i]) < 0.03 * span
    a = place_views(lay["model"], placer, lay["images"][42], k=16, augmentation="affine", seed=11)
    b = place_views(lay["model"], fit_placer(lay["embeddings"], coords, ProjectionParams("tsne")), lay["images"][42], k=16,
                    augmentation="affine", seed=11)
    c = place_views(lay["model"], placer, lay["images"][42], k=16, augmentation="affine", seed=12)
    assert torch.equal(a.views, b.views) and np.array_equal(a.xy, b.xy), "same seed, same positions"
    assert not torch.equal(a.views, c.views) and not np.allclose(a.xy, c.xy)
    assert np.isfinite(a.xy).all()
    # the reference layout itself is not moved by placing points on it
    np.testing.assert_array_equal(placer.coords, coords)


def test_umap_transform_lands_near_the_original():
    lay = checkpoint_layout(CKPT, "umap")
    coords = lay["coords"]
    placer = fit_placer(lay["embeddings"], coords, ProjectionParams("umap"))
    placed = place_views(lay["model"], placer, lay["images"][9], k=2, augmentation="none")
    span = float(np.ptp(coords, axis=0).max())
    assert np.linalg.norm(placed.xy[0] - coords[9]) < 0.03 * span
    again = place_views(lay["model"], placer, lay["images"][9], k=2, augmentation="none")
    np.testing.assert_array_equal(placed.xy, again.xy)


def test_exact_query_matches_a_loop():
    rng = np.random.default_rng(0)
    ref, q = rng.standard_normal((50, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    idx, dist = exact_query(ref, q, 5)
    for r in range(len(q)):
        d = [float(np.sqrt(((q[r] - ref[j]) ** 2).sum())) for j in range(len(ref))]
        order = sorted(range(len(ref)), key=lambda j: d[j])[:5]
        assert list(idx[r]) == order
        np.testing.assert_allclose(dist[r], [d[j] for j in order], rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_clear_errors(pca_layout):
    lay = pca_layout
    with pytest.raises(ConfigError, match="number of views"):
        augmented_views(lay["images"][0], "affine", k=0)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        augmented_views(lay["images"][0], "sideways", k=4)
    with pytest.raises(ConfigError, match="unknown projection"):
        fit_placer(lay["embeddings"], lay["coords"], ProjectionParams("mds"))
    with pytest.raises(ConfigError, match="coordinates"):
        fit_placer(lay["embeddings"], lay["coords"][:10], ProjectionParams("pca"))


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run([sys.executable, "-m", "cl", "place", str(CKPT), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_the_coordinates_as_json(pca_layout):
    run = _cli("--index", 3, "--k", 4, "--method", "pca", "--augmentation", "none", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["k"] == 4 and len(out["views"]) == 4 and out["augmentation"] == "none"
    assert out["layout"] == "shipped" and out["n_points"] == 540 and out["dataset"] == "digits"
    np.testing.assert_allclose(out["original"], pca_layout["coords"][3], atol=1e-6)
    np.testing.assert_allclose(out["views"], [out["original"]] * 4, atol=1e-4)
    assert out["class"] == pca_layout["classes"][pca_layout["labels"][3]]


@pytest.mark.parametrize("args, message", [
    (("--index", 540), "--index must be"),
    (("--index", -1), "--index must be"),
    (("--index", 0, "--augmentation", "sideways"), "unknown augmentation"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message):
    run = _cli(*args, "--method", "pca")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], run.stderr
