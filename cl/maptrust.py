r"""Where a 2-D map of embeddings (t-SNE, UMAP, PCA) can be trusted: exact, for every point.

Three figures compare a point's ``k`` nearest neighbours in the *embedding* (by cosine
similarity, the metric retrieval uses: :mod:`cl.retrieval`) with its ``k`` nearest on the *map*
(euclidean distance in the plane):

- **neighbours kept**, per point: :math:`|N^E_k(i) \cap N^M_k(i)| / k`, the share of its true
  neighbours that are also its neighbours on the map (1 = the map shows its neighbourhood, 0 =
  none of them is nearby on the map). A map that places points at random keeps about ``k / n``.
- **trustworthiness** (Venna & Kaski 2001), whether what looks close on the map is close in the
  embedding. With :math:`U_k(i)` the map neighbours of ``i`` that are not among its ``k`` nearest
  in the embedding, and :math:`r(i, j)` the rank of ``j`` among ``i``'s neighbours in the
  embedding (1 = nearest):

  .. math:: T(k) = 1 - \frac{2}{n k (2n - 3k - 1)} \sum_i \sum_{j \in U_k(i)} \bigl(r(i, j) - k\bigr)

- **continuity**, whether what is close in the embedding stays close on the map: the same
  formula with the roles swapped (:math:`V_k(i)`, the true neighbours missing from the map's
  ``k`` nearest, ranked by map distance :math:`\hat r(i, j)`).

Both are 1 for a perfect map and about 0.5 for a random one. The normalisation needs
``k < n / 2``: smaller sets use ``k = (n - 1) // 2``.

Exact and chunked: for a block of rows the embedding distances come from one float64 matrix
product (cosine in float64 also separates the near-identical embeddings of a collapsed model),
and a compiled kernel (numba, already required by umap-learn) runs once through each row: it
keeps the ``k`` nearest in both spaces and, for the few neighbours that one space has and the
other lacks, counts how many points are closer. No ``n x n`` matrix is ever held; 10,000 points
take a few seconds on two cores (``python -m benchmarks --only maptrust``), where
``sklearn.manifold.trustworthiness`` sorts a full ``n x n`` matrix.

Ties (duplicate images, points on top of each other on a map) take the mean of the ranks they
share (a point tied with every other one ranks in the middle, not first), and among equal
distances the lower index counts as nearer for the neighbour lists.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

K = 10  # neighbours compared, as retrieval lists them
METRIC = "cosine"
_BLOCK = 512  # rows per block: a 512 x n float64 distance block (40 MB at 10,000 points)
# One map at a time per process: the kernel already uses every core, and numba's fallback
# threading layer (workqueue, where OpenMP and TBB are missing) aborts on concurrent parallel calls,
# as two sessions of one app server could make.
_LOCK = threading.Lock()


@dataclass
class MapTrust:
    """How faithful one map of ``n`` points is (see the module's formulas)."""

    k: int
    n: int
    kept: np.ndarray  # (n,) float32, share of each point's k true neighbours kept on the map
    trustworthiness: float
    continuity: float
    neighbors: np.ndarray  # (n, k) int32: true neighbours (embedding, cosine), nearest first
    map_neighbors: np.ndarray  # (n, k) int32: nearest on the map, nearest first
    metric: str = METRIC

    @property
    def mean_kept(self) -> float:
        return float(self.kept.mean()) if self.n else float("nan")

    def summary(self) -> dict:
        """The map's figures as plain JSON numbers (what layouts store and the CLI prints)."""
        return {"k": self.k, "n_points": self.n, "metric": self.metric,
                "trustworthiness": round(float(self.trustworthiness), 6),
                "continuity": round(float(self.continuity), 6),
                "mean_kept": round(self.mean_kept, 6)}


def effective_k(n: int, k: int = K) -> int:
    """``k``, or fewer on a small set: trustworthiness's normalisation needs ``k < n / 2``."""
    return max(1, min(int(k), (n - 1) // 2))


def map_trust(embeddings: np.ndarray, xy: np.ndarray, k: int = K, metric: str = METRIC) -> MapTrust:
    """Neighbours kept, trustworthiness and continuity of the map ``xy`` (``(n, 2)``) of
    ``embeddings`` (``(n, d)``, the same points in the same order). ``metric``: ``cosine``
    (retrieval's, the default) or ``euclidean`` in the embedding; always euclidean on the map."""
    import torch

    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"unknown metric {metric!r}; use cosine or euclidean")
    z = np.asarray(embeddings)
    p = np.asarray(xy)
    if z.ndim != 2 or p.ndim != 2 or p.shape[1] < 1:
        raise ConfigError(f"expected embeddings (n, d) and a map (n, 2), got shapes {z.shape} and {p.shape}")
    n = len(z)
    if len(p) != n:
        raise ConfigError(f"the map has {len(p):,} points but there are {n:,} embeddings: they must be the same images")
    if n < 3:
        raise ConfigError(f"need at least 3 points to score a map, got {n}")
    if not (np.isfinite(z).all() and np.isfinite(p).all()):
        raise ConfigError("the embeddings or the map contain NaN or infinite values")
    k = effective_k(n, k)
    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64))
    if metric == "cosine":
        zt = torch.nn.functional.normalize(zt, dim=1)
        sq = torch.zeros(n, dtype=torch.float64)
    else:
        sq = (zt * zt).sum(1)
    zt_t = zt.T.contiguous()
    pts = np.ascontiguousarray(p, dtype=np.float64)
    kern = _kernel()
    nbr_e = np.empty((n, k), dtype=np.int32)
    nbr_m = np.empty((n, k), dtype=np.int32)
    kept = np.empty(n, dtype=np.int32)
    t_part = np.empty(n, dtype=np.float64)
    c_part = np.empty(n, dtype=np.float64)
    with _LOCK:
        for s in range(0, n, _BLOCK):
            e = min(n, s + _BLOCK)
            # A distance that ranks like the metric: 2 - 2 cos for unit rows (its constant dropped:
            # -2 cos), |z_j|^2 - 2 z_i.z_j for euclidean (|z_i|^2 is constant along a row).
            block = torch.addmm(sq[None, :], zt[s:e], zt_t, beta=1.0, alpha=-2.0).numpy()
            kern(block, s, pts, k, nbr_e[s:e], nbr_m[s:e], kept[s:e], t_part[s:e], c_part[s:e])
    norm = 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
    return MapTrust(k=k, n=n, kept=(kept / k).astype(np.float32),
                    trustworthiness=float(1.0 - norm * t_part.sum()),
                    continuity=float(1.0 - norm * c_part.sum()),
                    neighbors=nbr_e, map_neighbors=nbr_m, metric=metric)


def map_neighbors(xy: np.ndarray, index: int, k: int = K) -> np.ndarray:
    """The ``k`` nearest other points to point ``index`` on the map (euclidean), nearest first,
    ties by index: what :func:`map_trust` lists, for one point, with NumPy alone."""
    p = np.asarray(xy, dtype=np.float64)
    d = ((p - p[index]) ** 2).sum(1)
    d[index] = np.inf
    return np.lexsort((np.arange(len(p)), d))[:min(k, len(p) - 1)].astype(np.int32)


def words(summary: dict, method: str) -> str:
    """One plain sentence on how far to trust a map, from :meth:`MapTrust.summary`: how many true
    neighbours an image keeps, whether the rest stay nearby (the lower of trustworthiness and
    continuity), and which reading to believe."""
    t, c, k = summary["trustworthiness"], summary["continuity"], summary["k"]
    low = min(t, c)
    rest = ("the others stay nearby" if low >= 0.95 else "most others stay nearby" if low >= 0.9
            else "many others land far away")
    advice = ("believe who is near whom, not the distances between far-apart groups or their sizes" if low >= 0.9
              else "tap an image to see its true neighbours before believing who is near whom")
    return (f"On this {method} map an image keeps on average {summary['mean_kept'] * k:.1f} of its {k} nearest "
            f"neighbours in the model's space and {rest} (trustworthiness {t:.2f}, continuity {c:.2f}; "
            f"1 is perfect, 0.5 is random): {advice}.")


def warm_up() -> None:
    """Compile the row kernel now (a few seconds, once per machine: numba keeps it on disk), e.g.
    while building a container image, so the first map scored later does not wait for it."""
    map_trust(np.eye(8), np.eye(8)[:, :2])


def _kernel():
    """The compiled row kernel (:mod:`cl._maptrust_kernel`, numba: compiled once per process, or
    loaded from numba's on-disk cache)."""
    from ._maptrust_kernel import rows

    return rows
