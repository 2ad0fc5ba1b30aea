"""cl.structure: line-like classes score high, isotropic blobs low; checked against an
independent computation (scikit-learn's PCA explained variance ratio, a plain eigen-decomposition
of the covariance)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from cl.structure import class_shape, shape


def _lines(rng, n_classes=5, n=200, d=32, noise=0.02):
    """Each class: points along a random ray from the origin (what a cosine loss allows)."""
    z, y = [], []
    for c in range(n_classes):
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        t = rng.uniform(0.2, 3.0, size=(n, 1))
        z.append(t * direction + noise * rng.normal(size=(n, d)))
        y += [c] * n
    return np.concatenate(z), np.array(y)


def _blobs(rng, n_classes=5, n=200, d=32):
    z = np.concatenate([rng.normal(size=d) * 5 + rng.normal(size=(n, d)) for _ in range(n_classes)])
    return z, np.repeat(np.arange(n_classes), n)


def test_lines_score_high_and_blobs_low():
    rng = np.random.default_rng(0)
    lines = shape(*_lines(rng))
    blobs = shape(*_blobs(rng))
    assert lines.linearity > 0.9
    assert lines.elongation > 10
    # an isotropic ball in 32 dimensions: about 1/32 of the variance on each axis
    assert blobs.linearity < 0.1
    assert blobs.elongation < 1.5
    assert lines.n_images == blobs.n_images == 1000


@pytest.mark.parametrize("make", [_lines, _blobs])
def test_matches_sklearn_pca(make):
    rng = np.random.default_rng(1)
    z, y = make(rng, n_classes=4, n=150, d=16)
    got = shape(z, y)
    ratios = [PCA().fit(z[y == c]).explained_variance_ratio_ for c in range(4)]
    assert got.linearity == pytest.approx(np.mean([r[0] for r in ratios]), rel=1e-9)
    # elongation s1/s2 = sqrt(lambda1 / lambda2) of the covariance's eigenvalues
    elong = []
    for c in range(4):
        lam = np.sort(np.linalg.eigvalsh(np.cov(z[y == c].T)))[::-1]
        elong.append(np.sqrt(lam[0] / lam[1]))
    assert got.elongation == pytest.approx(np.mean(elong), rel=1e-6)


def test_invariant_to_rotation_shift_and_scale():
    rng = np.random.default_rng(2)
    z, y = _lines(rng, d=8)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    a, b = shape(z, y), shape(3.0 * z @ q + 7.0, y)
    assert b.linearity == pytest.approx(a.linearity, rel=1e-9)
    assert b.elongation == pytest.approx(a.elongation, rel=1e-6)


def test_a_flat_disc_sits_between_a_line_and_a_ball():
    rng = np.random.default_rng(3)
    disc = np.zeros((500, 10))
    disc[:, :2] = rng.normal(size=(500, 2))
    lin, elo = class_shape(disc)
    assert 0.4 < lin < 0.6  # two equal axes: half the variance on the first
    assert elo < 1.3


def test_small_and_degenerate_classes_are_skipped():
    rng = np.random.default_rng(4)
    z = np.concatenate([rng.normal(size=(50, 4)), np.ones((5, 4)), rng.normal(size=(2, 4))])
    y = np.array([0] * 50 + [1] * 5 + [2] * 2)
    got = shape(z, y)
    assert list(got.per_class) == [0]  # class 1 has no spread, class 2 fewer than 3 images
    with pytest.raises(ValueError):
        shape(np.ones((6, 3)), np.zeros(6))
    with pytest.raises(ValueError):
        shape(np.ones((6, 3)), np.zeros(5))
