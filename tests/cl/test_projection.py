"""cl.projection: shapes, determinism, the exact kNN graph, and that t-SNE/UMAP keep clusters apart.

Correctness only; speed is measured by ``python -m benchmarks --only projection``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from cl.errors import ConfigError
from cl.projection import METHODS, ProjectionParams, exact_knn, project, tsne_gradient, tsne_schedule, umap_epochs, warm_up


def clusters(n_per: int = 60, n_classes: int = 5, dim: int = 16, seed: int = 0, spread: float = 0.3):
    """Well-separated Gaussian blobs: centres 10 apart (scaled unit vectors), unit-ish spread."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    centres *= 10 / np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per)
    x = centres[y] + spread * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def blobs():
    return clusters()


@pytest.fixture(scope="module")
def projected(blobs):
    """Each method run twice with seed 0 and once with seed 1 (computed once for all tests)."""
    x, _ = blobs
    return {m: (project(x, ProjectionParams(m, seed=0)), project(x, ProjectionParams(m, seed=0)),
                project(x, ProjectionParams(m, seed=1))) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_shape_dtype_finite(projected, blobs, method):
    a = projected[method][0]
    assert a.shape == (len(blobs[0]), 2)
    assert a.dtype == np.float32
    assert np.isfinite(a).all()


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_output(projected, method):
    a, b, _ = projected[method]
    assert np.array_equal(a, b), "same input and seed must give bit-identical coordinates"


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_different_seed_differs(projected, method):
    a, _, c = projected[method]
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_clusters_stay_apart_in_2d(projected, blobs, method):
    xy = projected[method][0]
    _, y = blobs
    # leave-one-out 5-NN accuracy in the 2-D layout
    nn = NearestNeighbors(n_neighbors=6).fit(xy)
    idx = nn.kneighbors(xy, return_distance=False)[:, 1:]
    votes = np.array([np.bincount(y[row], minlength=y.max() + 1).argmax() for row in idx])
    assert (votes == y).mean() > 0.9


def test_tsne_separates_digits_like_structure():
    """Harder than blobs: overlapping clusters in 32-d still separate better than chance by far."""
    x, y = clusters(n_per=80, n_classes=8, dim=32, seed=3, spread=2.0)
    xy = project(x, ProjectionParams("tsne", seed=0))
    acc = KNeighborsClassifier(10).fit(xy[::2], y[::2]).score(xy[1::2], y[1::2])
    assert acc > 0.9


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_knn_matches_sklearn_brute_force(metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1500, 24)).astype(np.float32)  # > one 1,024-row block
    k = 12
    idx, dist = exact_knn(x, k, metric=metric)
    assert idx.shape == dist.shape == (1500, k)
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    ref_x = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(ref_x.astype(np.float64)).kneighbors()
    # sklearn's kneighbors() without X excludes each point itself, like exact_knn
    ref_dist, ref_idx = ref_dist[:, :k], ref_idx[:, :k]
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4)
    assert (idx == ref_idx).mean() > 0.999  # float32 vs float64 may swap exact near-ties
    assert not (idx == np.arange(len(x))[:, None]).any(), "a point is never its own neighbour"
    assert (np.diff(dist, axis=1) >= 0).all(), "neighbours are sorted by distance"


def test_exact_knn_small_inputs():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    idx, dist = exact_knn(x, 5)  # k is capped at n - 1
    assert idx.tolist() == [[1, 2], [0, 2], [1, 0]]
    np.testing.assert_allclose(dist, [[1, 3], [1, 2], [2, 3]])


def test_schedules():
    assert tsne_schedule(1000) == (250, 500)  # openTSNE's defaults for small sets
    ee, normal = tsne_schedule(10_000)
    assert ee + normal < 750 and ee >= 100 and normal >= 175
    assert tsne_schedule(100_000) == (100, 175)
    assert sum(tsne_schedule(10_000, n_iter=300)) == 300
    assert umap_epochs(1000) == 500 and umap_epochs(10_000) == 200 and umap_epochs(60_000) == 200
    assert tsne_gradient(10_000, 10.0)[0] == "fft"  # compact early layout: small FFT grid
    assert tsne_gradient(10_000, 500.0)[0] == "bh"  # wide layout: Barnes-Hut does not grow with it


def test_tsne_same_output_for_any_thread_count(blobs, monkeypatch):
    """openTSNE parallelises per point, so the thread count (picked from the machine's load)
    must not change the result; the gradient method is chosen without looking at it."""
    import cl.projection as projection

    x, _ = blobs
    outs = []
    for threads in (1, 2):
        monkeypatch.setattr(projection, "tsne_threads", lambda threads=threads: threads)
        outs.append(project(x, ProjectionParams("tsne", seed=0)))
    assert np.array_equal(outs[0], outs[1])


def test_n_iter_is_respected_and_deterministic(blobs):
    x, _ = blobs
    a = project(x[:100], ProjectionParams("tsne", seed=0), n_iter=60)
    b = project(x[:100], ProjectionParams("tsne", seed=0), n_iter=60)
    c = project(x[:100], ProjectionParams("tsne", seed=0), n_iter=90)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_progress_messages(blobs):
    x, _ = blobs
    seen = []
    project(x[:80], ProjectionParams("umap", seed=0), progress=seen.append)
    assert any("NN graph" in m for m in seen)


@pytest.mark.parametrize("method", METHODS)
def test_tiny_and_degenerate_inputs(method):
    rng = np.random.default_rng(0)
    assert project(rng.standard_normal((3, 4)), ProjectionParams(method)).shape == (3, 2)
    same = np.ones((20, 4), dtype=np.float32)
    out = project(same, ProjectionParams(method))  # all points identical: all at one spot, no crash
    assert out.shape == (20, 2) and np.isfinite(out).all() and np.ptp(out) == 0
    almost = same.copy()
    almost[0] = 0
    assert np.isfinite(project(almost, ProjectionParams(method))).all()


def test_bad_inputs():
    x = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ConfigError):
        project(x, ProjectionParams("mds"))
    with pytest.raises(ConfigError):
        project(x[:2], ProjectionParams("pca"))
    bad = np.random.default_rng(0).standard_normal((10, 3))
    bad[3, 1] = np.nan
    with pytest.raises(ConfigError):
        project(bad, ProjectionParams("tsne"))
    with pytest.raises(ConfigError):
        exact_knn(x, 3, metric="manhattan")


def test_warm_up_once():
    warm_up()
    assert warm_up() == 0.0


@pytest.mark.parametrize("shape", [(2000, 32), (150, 64), (4, 3)])
def test_pca_matches_scikit_learn_including_signs(shape):
    """Our NumPy PCA (no scikit-learn import in the app) against sklearn.decomposition.PCA."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * np.linspace(3, 0.1, shape[1])).astype(np.float32)
    ours = project(x, ProjectionParams("pca"))
    ref = PCA(n_components=2, random_state=0).fit_transform(x)
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max())


def test_projection_params_hold_the_defaults_and_compare_views():
    """The defaults the shipped layouts were computed with (written here as plain numbers), one
    type per field whatever the caller passes, and equality as the shipped-view test."""
    default = ProjectionParams()
    assert (default.method, default.n, default.seed, default.perplexity, default.n_neighbors, default.min_dist) == (
        "tsne", None, 0, 30.0, 15, 0.1)
    assert default.settings() == {"seed": 0, "perplexity": 30.0, "n_neighbors": 15, "min_dist": 0.1}
    # a slider's numpy float, a number input's int: the same view, the same cache key
    loose = ProjectionParams("umap", n=np.int64(500), seed=np.int64(0), perplexity=30, n_neighbors=np.float64(15),
                             min_dist=np.float64(0.1))
    assert loose == ProjectionParams("umap", n=500) and hash(loose) == hash(ProjectionParams("umap", n=500))
    assert type(loose.perplexity) is float and type(loose.n_neighbors) is int and type(loose.n) is int
    assert ProjectionParams("tsne", n=2000).is_shipped(2000)
    for other in (ProjectionParams("tsne", n=1999), ProjectionParams("tsne", n=2000, seed=1),
                  ProjectionParams("tsne", n=2000, perplexity=31), ProjectionParams("umap", n=2000, n_neighbors=16),
                  ProjectionParams("umap", n=2000, min_dist=0.2)):
        assert not other.is_shipped(2000), other
    with pytest.raises(ConfigError, match="unknown projection 'mds'"):
        ProjectionParams("mds")
