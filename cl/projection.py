"""2-D projections of embeddings for the scatter plots: t-SNE, UMAP, PCA, all seeded.

For t-SNE and UMAP the k-nearest-neighbour graph is computed *exactly* with one blocked
matrix product over our own (small, dense) embeddings; that is faster than approximate
search at these sizes and removes a source of non-determinism. t-SNE uses openTSNE's FFT
gradients; UMAP reuses the graph through ``precomputed_knn``.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .errors import ConfigError

METHODS = ("tsne", "umap", "pca")


def exact_knn(x: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (excluding self): ``(indices, distances)``, each ``(N, k)``."""
    z = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if metric == "cosine":
        z = torch.nn.functional.normalize(z, dim=1)
    sq = (z * z).sum(1)
    n = len(z)
    k = min(k, n - 1)
    idx_out = np.empty((n, k), dtype=np.int64)
    dist_out = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, 4096):
        block = z[s:s + 4096]
        d2 = (sq[s:s + 4096, None] + sq[None, :] - 2 * block @ z.T).clamp_min_(0)
        rows = torch.arange(s, s + len(block))
        d2[torch.arange(len(block)), rows] = float("inf")
        vals, idx = torch.topk(d2, k, dim=1, largest=False)
        idx_out[s:s + len(block)] = idx.numpy()
        dist_out[s:s + len(block)] = vals.sqrt().numpy()
    return idx_out, dist_out


def project(embeddings: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0,
            n_neighbors: int = 15, min_dist: float = 0.1, n_iter: int | None = None,
            progress: Callable[[str], None] | None = None) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` float32. Same inputs and seed -> same output."""
    if method not in METHODS:
        raise ConfigError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(x)
    if n < 3:
        raise ConfigError(f"need at least 3 points to project, got {n}")
    say = progress or (lambda _msg: None)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        return _tsne(x, seed, perplexity, n_iter, say)
    return _umap(x, seed, n_neighbors, min_dist, n_iter, say)


def _tsne(x, seed, perplexity, n_iter, say):
    from openTSNE import TSNEEmbedding, affinity, initialization

    n = len(x)
    perplexity = float(min(perplexity, max(2.0, (n - 1) / 3)))
    k = min(n - 1, int(3 * perplexity))
    t0 = time.perf_counter()
    say(f"exact {k}-NN graph of {n:,} points")
    idx, dist = exact_knn(x, k)
    aff = affinity.PerplexityBasedNN(perplexity=perplexity, knn_index=_PrecomputedKNN(idx, dist), verbose=False,
                                     random_state=seed, n_jobs=1)
    init = initialization.pca(x, random_state=seed)
    emb = TSNEEmbedding(init, aff, negative_gradient_method="fft", random_state=seed, n_jobs=1, verbose=False)
    iters = n_iter or (500 if n <= 5000 else 600)
    say(f"early exaggeration ({time.perf_counter() - t0:.1f} s)")
    emb = emb.optimize(n_iter=250, exaggeration=12, momentum=0.5)
    say(f"optimising ({time.perf_counter() - t0:.1f} s)")
    emb = emb.optimize(n_iter=max(50, iters - 250), momentum=0.8)
    return np.asarray(emb, dtype=np.float32)


class _PrecomputedKNN:
    """Duck-typed openTSNE ``KNNIndex`` serving a graph we already computed."""

    def __init__(self, idx, dist):
        self.indices, self.distances = idx, dist
        self.k = idx.shape[1]
        self.n_jobs = 1

    def build(self):
        return self.indices, self.distances

    def query_train(self, data, k):
        return self.indices[:, :k], self.distances[:, :k]

    def check_metric(self, metric):
        return metric


def _umap(x, seed, n_neighbors, min_dist, n_iter, say):
    import warnings

    import umap

    n = len(x)
    k = min(n_neighbors, n - 1)
    say(f"exact {k}-NN graph of {n:,} points")
    idx, dist = exact_knn(x, k - 1)
    # umap expects each point as its own first neighbour
    idx = np.concatenate([np.arange(n)[:, None], idx], 1)
    dist = np.concatenate([np.zeros((n, 1), np.float32), dist], 1)
    say("optimising layout")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, random_state=seed, precomputed_knn=(idx, dist, None),
                            n_epochs=n_iter, init="spectral" if n > k + 1 else "random")
        out = reducer.fit_transform(x)
    return np.asarray(out, dtype=np.float32)
