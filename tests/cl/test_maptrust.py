"""Neighbours kept, trustworthiness and continuity (cl.maptrust) against scikit-learn, a brute-force
loop written from Venna and Kaski's formula, an isometry and a shuffled map."""

import numpy as np
import pytest
from sklearn.manifold import trustworthiness
from sklearn.neighbors import NearestNeighbors

from cl.errors import ConfigError
from cl.maptrust import effective_k, map_neighbors, map_trust


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, d, seed):
    """Points in a few clusters and a noisy 2-D map of them: neither perfect nor random."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, d)) * 3
    emb = centres[rng.integers(0, 5, n)] + rng.standard_normal((n, d))
    xy = emb[:, :2] + 0.8 * rng.standard_normal((n, 2))
    return emb.astype(np.float32), xy.astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_sklearn_trustworthiness_both_ways(metric):
    emb, xy = _clustered(300, 12, seed=1)
    r = map_trust(emb, xy, k=10, metric=metric)
    assert r.k == 10 and r.n == 300
    assert r.trustworthiness == pytest.approx(trustworthiness(emb, xy, n_neighbors=10, metric=metric), abs=1e-12)
    # continuity: trustworthiness with the spaces' roles swapped (unit vectors rank as cosine)
    other = _unit(emb.astype(np.float64)) if metric == "cosine" else emb
    assert r.continuity == pytest.approx(trustworthiness(xy, other, n_neighbors=10), abs=1e-12)
    assert 0.5 < r.trustworthiness < 1 and 0.5 < r.continuity < 1  # neither perfect nor random


def test_neighbour_lists_and_kept_match_sklearn_neighbors():
    emb, xy = _clustered(200, 8, seed=2)
    r = map_trust(emb, xy)
    true = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(emb).kneighbors(
        return_distance=False)
    on_map = NearestNeighbors(n_neighbors=10).fit(xy).kneighbors(return_distance=False)
    assert (np.sort(r.neighbors, 1) == np.sort(true, 1)).all()
    assert (np.sort(r.map_neighbors, 1) == np.sort(on_map, 1)).all()
    kept = np.array([len(set(a) & set(b)) / 10 for a, b in zip(true, on_map, strict=True)])
    assert np.allclose(r.kept, kept)
    assert r.mean_kept == pytest.approx(kept.mean())
    for i in (0, 17, 199):  # one point's map neighbours, NumPy alone, as the page lists them
        assert (map_neighbors(xy, i) == r.map_neighbors[i]).all()


def _brute_force(emb, xy, k):
    """Venna and Kaski's T and C with mid-ranks for ties, one pair at a time."""
    n = len(emb)
    u = _unit(np.asarray(emb, dtype=np.float64))
    de = 1 - u @ u.T
    dm = ((xy[:, None, :].astype(np.float64) - xy[None, :, :]) ** 2).sum(-1)

    def knn(d, i):
        order = sorted((j for j in range(n) if j != i), key=lambda j: (d[i, j], j))
        return order[:k]

    def midrank(d, i, j):
        others = [m for m in range(n) if m != i]
        nearer = sum(d[i, m] < d[i, j] for m in others)
        tied = sum(d[i, m] == d[i, j] for m in others)  # j itself among them
        return 1 + nearer + (tied - 1) / 2

    t = c = 0.0
    kept = []
    for i in range(n):
        ne, nm = knn(de, i), knn(dm, i)
        kept.append(len(set(ne) & set(nm)) / k)
        t += sum(max(0.0, midrank(de, i, j) - k) for j in nm if j not in ne)
        c += sum(max(0.0, midrank(dm, i, j) - k) for j in ne if j not in nm)
    norm = 2 / (n * k * (2 * n - 3 * k - 1))
    return 1 - norm * t, 1 - norm * c, np.array(kept)


def test_matches_a_brute_force_loop_with_ties():
    emb, xy = _clustered(40, 6, seed=3)
    emb[5] = emb[4]  # a duplicate image: tied in the embedding
    xy[9] = xy[8]  # two points on top of each other on the map
    xy[20:26] = xy[20]  # and a small pile
    t, c, kept = _brute_force(emb, xy, 5)
    r = map_trust(emb, xy, k=5)
    assert r.trustworthiness == pytest.approx(t, abs=1e-12)
    assert r.continuity == pytest.approx(c, abs=1e-12)
    assert np.allclose(r.kept, kept)


def test_isometry_keeps_every_neighbour():
    rng = np.random.default_rng(4)
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    flat = rng.standard_normal((500, 2))
    # euclidean: a rotated, scaled, shifted copy of 2-D points
    r = map_trust(flat, 3 * flat @ rot.T + [5, -2], metric="euclidean")
    assert r.trustworthiness == pytest.approx(1.0) and r.continuity == pytest.approx(1.0)
    assert (r.kept == 1).all()
    # cosine: unit vectors in the plane rank by angle, and so do their chords on the map
    ring = _unit(flat)
    r = map_trust(ring * 7.0, 2 * ring @ rot.T)
    assert r.trustworthiness == pytest.approx(1.0) and r.continuity == pytest.approx(1.0)
    assert (r.kept == 1).all()


def test_shuffled_map_keeps_about_k_over_n():
    emb, xy = _clustered(2000, 16, seed=5)
    good = map_trust(emb, xy)
    shuffled = map_trust(emb, xy[np.random.default_rng(6).permutation(2000)])
    expected = 10 / 1999  # chance that a given other point is among 10 picked at random
    # per point the count kept is ~hypergeometric with variance ~ its mean k * expected; the share is
    # that count / k, and the mean of 2,000 shares has standard error sqrt(k * expected / k^2 / n)
    standard_error = np.sqrt(10 * expected / 100 / 2000)
    assert abs(shuffled.mean_kept - expected) < 5 * standard_error
    assert abs(shuffled.trustworthiness - 0.5) < 0.03 and abs(shuffled.continuity - 0.5) < 0.03
    assert good.mean_kept > 3 * shuffled.mean_kept and good.trustworthiness > shuffled.trustworthiness + 0.15


def test_small_sets_and_bad_input():
    assert effective_k(21) == 10 and effective_k(20) == 9 and effective_k(3) == 1
    emb, xy = _clustered(7, 4, seed=7)
    r = map_trust(emb, xy)
    assert r.k == 3 and r.neighbors.shape == (7, 3)
    assert r.trustworthiness == pytest.approx(trustworthiness(emb, xy, n_neighbors=3, metric="cosine"), abs=1e-12)
    with pytest.raises(ConfigError, match="same images"):
        map_trust(emb, xy[:5])
    with pytest.raises(ConfigError, match="at least 3"):
        map_trust(emb[:2], xy[:2])
    bad = xy.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        map_trust(emb, bad)
    with pytest.raises(ConfigError, match="metric"):
        map_trust(emb, xy, metric="manhattan")
    summary = r.summary()
    assert set(summary) == {"k", "n_points", "metric", "trustworthiness", "continuity", "mean_kept"}
