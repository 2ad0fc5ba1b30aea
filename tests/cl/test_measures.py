"""cl.measures against loops written out here and cases with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cl import measures as M

CKPT = Path(__file__).resolve().parents[2] / "checkpoints"


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def loop_alignment(z1, z2, alpha=2.0):
    total = 0.0
    for a, b in zip(z1.tolist(), z2.tolist(), strict=True):
        a, b = unit(a), unit(b)
        total += math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True))) ** alpha
    return total / len(z1)


def loop_uniformity(z, t=2.0):
    rows = [unit(r) for r in z.tolist()]
    total, pairs = 0.0, 0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            total += math.exp(-t * sum((x - y) ** 2 for x, y in zip(rows[i], rows[j], strict=True)))
            pairs += 1
    return math.log(total / pairs)


def loop_pair_cosines(z, labels):
    rows = [unit(r) for r in z.tolist()]
    same, other = [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            c = sum(x * y for x, y in zip(rows[i], rows[j], strict=True))
            (same if labels[i] == labels[j] else other).append(c)
    return same, other


@pytest.fixture
def clouds():
    g = np.random.default_rng(3)
    z = g.normal(size=(57, 6)).astype(np.float32) + np.array([1.5, 0, 0, 0, 0, 0], np.float32)
    z1 = z + 0.3 * g.normal(size=z.shape).astype(np.float32)
    z2 = z + 0.3 * g.normal(size=z.shape).astype(np.float32)
    labels = g.integers(0, 4, size=len(z))
    return z, z1, z2, labels


def test_alignment_and_uniformity_match_loops(clouds):
    z, z1, z2, labels = clouds
    assert M.alignment(z1, z2) == pytest.approx(loop_alignment(z1, z2), rel=1e-5)
    assert M.uniformity(z) == pytest.approx(loop_uniformity(z), abs=1e-5)
    assert M.uniformity(z, t=0.5) == pytest.approx(loop_uniformity(z, t=0.5), abs=1e-5)
    m = M.measure_embeddings(z, z1, z2, labels)
    assert m["alignment"] == pytest.approx(loop_alignment(z1, z2), rel=1e-5)
    assert m["uniformity"] == pytest.approx(loop_uniformity(z), abs=1e-5)
    # the form Wang & Isola give, with torch's own pairwise distances
    ref = torch.pdist(torch.nn.functional.normalize(torch.from_numpy(z).double(), dim=1)).pow(2).mul(-2).exp().mean().log()
    assert m["uniformity"] == pytest.approx(float(ref), abs=1e-5)


def test_histograms_match_loops(clouds):
    z, z1, z2, labels = clouds
    m = M.measure_embeddings(z, z1, z2, labels)
    h = m["histograms"]
    edges = M.histogram_edges(h["bins"])
    same, other = loop_pair_cosines(z, labels)
    assert h["same_class"] == np.histogram(same, edges)[0].tolist()
    assert h["other"] == np.histogram(other, edges)[0].tolist()
    pos = [sum(x * y for x, y in zip(unit(a), unit(b), strict=True)) for a, b in zip(z1.tolist(), z2.tolist(), strict=True)]
    assert h["positive"] == np.histogram(pos, edges)[0].tolist()
    assert m["n_same_class_pairs"] == len(same) and m["n_other_pairs"] == len(other)
    assert m["n_pairs"] == len(z) * (len(z) - 1) // 2 == len(same) + len(other)
    assert m["positive_cosine_mean"] == pytest.approx(np.mean(pos), abs=1e-6)


def test_chunked_equals_unchunked(clouds):
    z, z1, z2, labels = clouds
    whole = M.measure_embeddings(z, z1, z2, labels, block_elements=10**9)
    for block in (1, 7, 100, 1000):  # one row per block, ragged blocks crossing nothing, ...
        part = M.measure_embeddings(z, z1, z2, labels, block_elements=block)
        assert part["uniformity"] == pytest.approx(whole["uniformity"], abs=1e-6)
        assert part["histograms"] == whole["histograms"]
        assert M.uniformity(z, block_elements=block) == pytest.approx(whole["uniformity"], abs=1e-6)


def test_rankme_matches_its_formula(clouds):
    z = clouds[0]
    s = np.linalg.svd(z.astype(np.float64), compute_uv=False)
    p = [x / sum(s) + 1e-7 for x in s]
    assert M.rankme(M.singular_values(z)) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)), rel=1e-9)
    assert M.singular_values(z) == pytest.approx(s)
    # d equal singular values: every direction used, rank d
    assert M.rankme(M.singular_values(np.eye(8) * 3.0)) == pytest.approx(8.0, rel=1e-5)


def test_collapsed_embedding_has_uniformity_zero_and_rank_one():
    g = np.random.default_rng(0)
    direction = g.normal(size=16)
    z = np.tile(direction, (300, 1)).astype(np.float32)
    m = M.measure_embeddings(z, z, z, g.integers(0, 3, 300))
    assert abs(m["uniformity"]) < 1e-6
    assert m["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert m["alignment"] == pytest.approx(0.0, abs=1e-6)
    assert sum(m["histograms"]["same_class"]) + sum(m["histograms"]["other"]) == m["n_pairs"]
    assert m["histograms"]["other"][-1] == m["n_other_pairs"]  # every pair in the last bin (cos 1)
    # one direction with different lengths: still one point on the sphere, still rank one
    scaled = (direction[None] * g.uniform(0.5, 2.0, size=(300, 1))).astype(np.float32)
    assert abs(M.uniformity(scaled)) < 1e-6
    assert M.rankme(M.singular_values(scaled)) == pytest.approx(1.0, abs=1e-3)


def integral_sphere_uniformity(d, t=2.0, steps=200_001):
    """log E exp(-t ||x - y||^2) for independent uniform unit vectors in R^d, by integrating over
    u = x.y, whose density is proportional to (1 - u^2)^((d - 3) / 2)."""
    u = np.linspace(-1.0, 1.0, steps)
    w = (1.0 - u * u).clip(0) ** ((d - 3) / 2.0)
    return math.log(np.trapezoid(np.exp(-t * (2 - 2 * u)) * w, u) / np.trapezoid(w, u))


@pytest.mark.parametrize("d", [3, 8, 32, 64])
def test_sphere_uniformity_formula(d):
    assert M.sphere_uniformity(d) == pytest.approx(integral_sphere_uniformity(d), abs=1e-4)


@pytest.mark.parametrize("d", [4, 32])
def test_isotropic_points_reach_the_analytic_value(d):
    z = np.random.default_rng(d).normal(size=(4000, d)).astype(np.float32)  # isotropic: uniform directions
    m = M.measure_embeddings(z)
    assert m["uniformity"] == pytest.approx(M.sphere_uniformity(d), abs=0.02)
    assert m["sphere_uniformity"] == pytest.approx(M.sphere_uniformity(d))
    assert m["rankme"] > 0.95 * d  # isotropic Gaussian rows: all singular values about equal


def test_too_few_images():
    m = M.measure_embeddings(np.ones((1, 4), np.float32), np.ones((1, 4)), np.ones((1, 4)), [0])
    assert math.isnan(m["uniformity"]) and m["n_pairs"] == 0
    assert sum(m["histograms"]["other"]) == 0
    assert M.rankme(np.zeros(4)) == 0.0


class Collapsed(torch.nn.Module):
    """Every image to the same 8-d point (the output of a collapsed encoder)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(8))
        self.embedding_dim = 8

    def forward(self, x):
        return self.w.expand(len(x), 8) + 0 * x.mean()


def test_measure_on_a_model_names_its_data_and_is_seeded():
    from cl.checkpoints import load_checkpoint
    from cl.data import load_dataset

    model, card = load_checkpoint(CKPT / "digits-best.safetensors")
    test = load_dataset("digits", "test")
    model.train()  # measuring must not leave it in eval mode (a training loop calls it)
    a = M.measure(model, test, card["config"]["augmentation"], seed=1, limit=200)
    assert model.training
    assert a["data"] == {"dataset": "digits", "split": "test", "n_images": 200, "n_split": len(test),
                         "complete_split": True, "sample": f"seeded random 200 of {len(test):,} (seed 1)"}
    assert a["augmentation"] == card["config"]["augmentation"] and a["seed"] == 1
    b = M.measure(model, test, card["config"]["augmentation"], seed=1, limit=200)
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    c = M.measure(model, test, card["config"]["augmentation"], seed=2, limit=200)
    assert c["alignment"] != a["alignment"]
    assert 0 < a["alignment"] < 2 and -4 < a["uniformity"] < 0 and 1 < a["rankme"] <= 64
    assert len(a["singular_values"]) == 64 and sum(a["histograms"]["positive"]) == 200
    # without augmentation the two views are the image itself
    assert M.measure(model, test, "none", limit=50)["alignment"] == pytest.approx(0.0, abs=1e-6)
    full = M.measure(model, test, "none")
    assert full["data"]["sample"] == "all" and full["data"]["n_images"] == len(test)
    # the embeddings of the un-augmented images are evaluation's
    from cl.evaluation import embed

    z, _, _ = M.embed_views(model, test.images[:64], "none")
    assert np.allclose(z, embed(model, test.images[:64]), atol=1e-5)


def test_measures_on_sample_leaves_the_training_rng_and_mode_alone():
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    labels = np.arange(40) % 4
    model = Collapsed()
    state = torch.get_rng_state()
    m = M.measures_on_sample(model, images, labels, "simclr", seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert model.training
    assert abs(m["uniformity"]) < 1e-6 and m["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert m["n_images"] == 40 and m["augmentation"] == "simclr"
    assert "alignment" in M.describe(m) and "40 images" in M.describe(m)


def test_a_new_models_card_carries_its_measures(tmp_path):
    from cl.checkpoints import load_checkpoint, read_card
    from cl.data import load_dataset
    from cl.training import TrainConfig
    from cl.workflow import make_model

    config = TrainConfig(dataset="digits", recipe="paper", augmentation="fer", loss="triplet", epochs=1, seed=0)
    made = make_model(config, tmp_path / "m.safetensors")
    card = read_card(tmp_path / "m.safetensors")
    m = card["measures"]
    assert m["data"]["dataset"] == "digits" and m["data"]["split"] == "test"
    assert m["data"]["n_images"] == min(M.CARD_LIMIT, m["data"]["n_split"]) == 540
    assert m["augmentation"] == "fer" and m["seed"] == 0
    model, _ = load_checkpoint(tmp_path / "m.safetensors")
    again = M.measures_for_card(model, load_dataset("digits", "test"), "fer")
    for key in ("alignment", "uniformity", "rankme"):
        assert again[key] == pytest.approx(m[key], abs=1e-4), key
    assert made.card.measures == m


def test_measures_on_sample_reuses_given_embeddings():
    from cl.checkpoints import load_checkpoint
    from cl.data import load_dataset
    from cl.evaluation import embed

    model, card = load_checkpoint(CKPT / "digits-best.safetensors")
    test = load_dataset("digits", "test")
    images, labels = test.images[:300], test.labels.numpy()[:300]
    full = M.measures_on_sample(model, images, labels, "affine", seed=4)
    reused = M.measures_on_sample(model, images, labels, "affine", seed=4, z=embed(model, images))
    for key in ("alignment", "uniformity", "rankme", "positive_cosine_mean"):
        assert reused[key] == pytest.approx(full[key], abs=1e-5), key
    with pytest.raises(ValueError):
        M.measures_on_sample(model, images, labels, "affine", z=np.zeros((5, 64), np.float32))
