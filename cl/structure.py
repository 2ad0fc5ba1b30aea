r"""How line-like or clustered a class looks *in the embedding itself* (not in a 2-D picture).

The study saw pairwise cosine loss give line-like t-SNE structures and triplet loss give
clusters. A cosine loss fixes only the direction of an embedding, not its length, so a class can
spread along a ray from the origin; a triplet loss with a Euclidean margin pulls a class into a
ball. This module measures that shape in the embedding space.

For a class :math:`c` with embeddings :math:`Z_c \in \mathbb{R}^{n_c \times d}`, centre them,
:math:`X_c = Z_c - \bar z_c`, and take the singular values
:math:`s_1 \ge s_2 \ge \dots \ge s_r` of :math:`X_c` (the principal components' spreads). Then

- **linearity** :math:`L_c = s_1^2 / \sum_i s_i^2`: the fraction of the class's variance on its
  first principal component (scikit-learn's ``PCA().explained_variance_ratio_[0]``). A class on
  a line scores 1; an isotropic ball in :math:`d` dimensions scores about :math:`1/d` (0.03 in
  the study's 32-d embedding).
- **elongation** :math:`E_c = s_1 / s_2`: how much longer the first axis is than the second
  (1 for a round blob, large for a line).

The data set's figure is the mean over classes with at least 3 images,
:math:`L = \frac{1}{|C|}\sum_c L_c` (and likewise :math:`E`), so every class counts alike
whatever its size. Both are invariant to rotation, translation and overall scale of the
embedding, so models with different output ranges compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_PER_CLASS = 3


@dataclass
class Shape:
    """The mean linearity and elongation over classes, and each class's values."""

    linearity: float
    elongation: float
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    n_images: int = 0

    def to_dict(self) -> dict:
        return {"linearity": self.linearity, "elongation": self.elongation, "n_images": self.n_images,
                "per_class": {str(k): v for k, v in self.per_class.items()}}


def class_shape(z: np.ndarray) -> tuple[float, float]:
    """``(linearity, elongation)`` of one class's embeddings ``z`` (n x d, n >= 2).

    linearity = s1^2 / sum(s_i^2), elongation = s1 / s2, with s the singular values of the
    centred embeddings. A degenerate class (all points equal) gives (nan, nan).
    """
    x = np.asarray(z, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    total = float(np.sum(s**2))
    if total <= 0 or not np.isfinite(total):
        return float("nan"), float("nan")
    linearity = float(s[0] ** 2 / total)
    second = float(s[1]) if len(s) > 1 else 0.0
    elongation = float(s[0] / second) if second > 0 else float("inf")
    return linearity, elongation


def shape(embeddings: np.ndarray, labels: np.ndarray, min_per_class: int = MIN_PER_CLASS) -> Shape:
    """Mean linearity and elongation over the classes of ``labels`` (see the module docstring)."""
    z = np.asarray(embeddings)
    y = np.asarray(labels)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"need embeddings (n x d) and n labels, got {z.shape} and {y.shape}")
    per_class = {}
    for c in np.unique(y):
        rows = z[y == c]
        if len(rows) < min_per_class:
            continue
        lin, elo = class_shape(rows)
        if np.isfinite(lin):
            per_class[int(c)] = {"linearity": lin, "elongation": elo, "n": int(len(rows))}
    if not per_class:
        raise ValueError(f"no class has {min_per_class} or more distinct images")
    lins = [v["linearity"] for v in per_class.values()]
    elos = [v["elongation"] for v in per_class.values() if np.isfinite(v["elongation"])]
    return Shape(linearity=float(np.mean(lins)), elongation=float(np.mean(elos)) if elos else float("inf"),
                 per_class=per_class, n_images=int(len(y)))
