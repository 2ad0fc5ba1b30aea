"""2-D projections of embeddings for the scatter plots: t-SNE, UMAP, PCA, all seeded.

Speed, without giving up reproducibility (same inputs and seed -> the same array, bit for bit):

- The k-nearest-neighbour graph is computed *exactly* (:func:`exact_knn`): a blocked matrix
  product over our own small, dense embeddings and a partial sort. At these sizes that is faster
  than approximate search and removes a source of randomness. Both t-SNE and UMAP reuse it.
- t-SNE is openTSNE's FFT-interpolated gradient on that graph
  (``openTSNE.nearest_neighbors.PrecomputedNeighbors``), PCA initialisation, and an
  iteration schedule that shrinks with the number of points (:func:`tsne_schedule`): the cost of
  one iteration grows with N and with the embedding's extent, while the layout stops changing
  visibly well before openTSNE's default 250 + 500 iterations at 10,000 points. The gradient's
  repulsive part uses FFT interpolation while the layout is compact and Barnes-Hut once the FFT
  grid would be the more expensive (:func:`tsne_gradient`); the grid starts at 20 instead of 50
  intervals (the early-exaggeration layout spans ~10 units, and openTSNE's own resolution later
  on is one interval per unit).
- openTSNE's threads (attractive forces, Barnes-Hut, affinities) give bit-identical results for
  any thread count, so t-SNE uses every usable CPU while the machine is otherwise idle and one
  thread when it is busy (:func:`tsne_threads`), where a second thread only waits for a core.
- UMAP is umap-learn with ``precomputed_knn`` (so no NN-descent), PCA initialisation (spectral
  initialisation alone took 5-10 s at 10,000 points on a 2-core CPU) and umap-learn's own
  large-data epoch count (200) from ~10,000 points, more for smaller sets
  (:func:`umap_epochs`). Seeded umap-learn runs its layout on one thread; that is what makes
  it reproducible.
- umap-learn compiles its numba kernels on the first call in a process (~15-40 s on a 2-core
  CPU). :func:`warm_up` does that once per process on a tiny input through the same code path
  (an app can start it in a background thread) after enabling numba's on-disk cache for those
  kernels, so later processes load them instead of compiling; :func:`project` calls it before
  its first UMAP.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import numpy as np
import torch

from .errors import ConfigError

METHODS = ("tsne", "umap", "pca")

_KNN_BLOCK = 1024  # rows per block: a 1,024 x N float32 distance block stays small


def exact_knn(x: np.ndarray, k: int, metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (excluding self): ``(indices, distances)``, each ``(N, k)``.

    Neighbours are sorted by distance; ``indices`` is int64, ``distances`` float32. ``metric``
    is ``euclidean`` or ``cosine`` (euclidean distance between L2-normalised rows).
    """
    if metric not in ("euclidean", "cosine"):
        raise ConfigError(f"unknown metric {metric!r}; use euclidean or cosine")
    z = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if metric == "cosine":
        z = torch.nn.functional.normalize(z, dim=1)
    n = len(z)
    k = min(k, n - 1)
    idx_out = torch.empty((n, k), dtype=torch.int64)
    dist_out = torch.empty((n, k), dtype=torch.float32)
    if k < 1:
        return idx_out.numpy(), dist_out.numpy()
    sq = (z * z).sum(1)
    z_t = z.T.contiguous()
    for s in range(0, n, _KNN_BLOCK):
        block = z[s:s + _KNN_BLOCK]
        m = len(block)
        # |b|^2 is constant along a row, so rank by |z_j|^2 - 2 b.z_j and add |b|^2 back after.
        d2 = torch.addmm(sq[None, :], block, z_t, beta=1.0, alpha=-2.0)
        d2[torch.arange(m), torch.arange(s, s + m)] = float("inf")
        vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        idx_out[s:s + m] = idx
        dist_out[s:s + m] = vals.add_(sq[s:s + m, None]).clamp_min_(0).sqrt_()
    return idx_out.numpy(), dist_out.numpy()


def tsne_schedule(n: int, n_iter: int | None = None) -> tuple[int, int]:
    """``(early_exaggeration_iterations, normal_iterations)`` for ``n`` points.

    openTSNE's defaults (250 + 500) up to 2,000 points, where every iteration is cheap. Beyond,
    an iteration costs more (~N log N, and the FFT grid grows with the layout's extent) while
    the layout settles after about as many iterations, so both phases shrink with N, to
    125 + 175 at 10,000 points and 100 + 175 from 12,500 on. On 10,000 MNIST embeddings that
    kept the 2-D 10-NN class accuracy (0.940 vs 0.938) and the picture, at a KL divergence of
    1.55 vs 1.42 after openTSNE's 750 iterations. With ``n_iter`` the total is fixed and split
    the same way.
    """
    n = max(n, 1)
    ee = int(np.clip(1_250_000 // n, 100, 250))
    normal = int(np.clip(1_000_000 // n, 175, 500))
    if n_iter is not None:
        n_iter = max(2, int(n_iter))
        ee = max(1, min(ee, n_iter // 3))
        normal = n_iter - ee
    return ee, normal


def tsne_gradient(n: int, span: float) -> tuple[str, float]:
    """Which openTSNE gradient approximation is cheaper for ``n`` points spread over ``span``
    units: ``("fft", 0.5)`` while the interpolation grid (~(3 * span)^2 nodes) is small, else
    Barnes-Hut ``("bh", theta)``, whose cost (~N log N) does not grow with the extent. The
    crossover was measured on a 2-core CPU at 2,000-10,000 points (with one and two threads; the
    choice must not depend on the thread count, or results would)."""
    if span < 0.27 * np.sqrt(n * np.log2(max(n, 2))):
        return "fft", 0.5
    return "bh", 0.5 if n < 5000 else 0.7


def tsne_threads(window: float = 0.1) -> int:
    """All usable CPUs while other processes leave them idle, else 1.

    Measures, over ``window`` seconds, how many cores the *other* processes keep busy (psutil;
    the 1-minute load average where psutil is missing). A second thread on a core that another
    process is using mostly waits for it, which made threaded code several times slower on a
    busy 2-core machine; on an idle one it makes t-SNE ~1.3x faster. Results do not depend on it.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    if usable <= 1:
        return 1
    try:
        import psutil

        me = psutil.Process()

        def busy() -> float:
            t = psutil.cpu_times()
            return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))

        def mine() -> float:
            t = me.cpu_times()
            return t.user + t.system

        b0, m0, w0 = busy(), mine(), time.perf_counter()
        time.sleep(window)
        wall = time.perf_counter() - w0
        others = max(0.0, (busy() - b0) - (mine() - m0)) / max(wall, 1e-6)
    except Exception:  # noqa: BLE001 - no psutil or no /proc: fall back to the load average
        try:
            others = max(0.0, os.getloadavg()[0] - 1.0)  # minus ourselves
        except (AttributeError, OSError):
            return 1
    free = usable - others
    if free >= usable - 0.5:
        return usable
    return int(free + 0.5) if free >= 1.5 else 1


def umap_epochs(n: int) -> int:
    """500 epochs for small sets (umap-learn's own choice up to 10,000), fewer as N grows, and
    umap-learn's large-data default of 200 from 10,000 points on."""
    return int(np.clip(2_000_000 // max(n, 1), 200, 500))


def project(embeddings: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0,
            n_neighbors: int = 15, min_dist: float = 0.1, n_iter: int | None = None,
            progress: Callable[[str], None] | None = None) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` float32. Same inputs and seed -> same output."""
    if method not in METHODS:
        raise ConfigError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"expected a 2-D array of embeddings, got shape {x.shape}")
    n = len(x)
    if n < 3:
        raise ConfigError(f"need at least 3 points to project, got {n}")
    if not np.isfinite(x).all():
        raise ConfigError("the embeddings contain NaN or infinite values")
    say = progress or (lambda _msg: None)
    if float(np.ptp(x, axis=0).max()) == 0.0:
        # Every point is the same: that is the picture (and t-SNE's initialisation would divide by
        # a zero spread, which crashes openTSNE's FFT code).
        return np.zeros((n, 2), dtype=np.float32)
    if method == "pca":
        out = _pca(x, seed)
    elif method == "tsne":
        out = _tsne(x, seed, perplexity, n_iter, say)
    else:
        out = _umap(x, seed, n_neighbors, min_dist, n_iter, say)
    if not np.isfinite(out).all():
        raise ConfigError(f"the {method} projection of these {n:,} embeddings did not converge to finite "
                          "coordinates (are almost all points identical?); try PCA")
    return out


def pca_fit(x: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, components)`` of the principal components of ``x`` (float64, components as rows,
    largest variance first), signs as scikit-learn's ``PCA`` chooses them. The projection of a
    point ``z`` is ``(z - mean) @ components.T``.

    Done in NumPy (eigen-decomposition of the d x d covariance, exact and deterministic)
    because importing scikit-learn's PCA costs ~150 MB of resident memory in the app for a
    2-column projection of at most a few hundred dimensions.
    """
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    n_comp = min(n_components, x.shape[1], len(x))
    if not n_comp:
        return mean, np.zeros((0, x.shape[1]))
    centred = x64 - mean
    cov = centred.T @ centred / max(1, len(x) - 1)
    values, vectors = np.linalg.eigh(cov)
    components = vectors[:, ::-1][:, :n_comp].T  # largest variance first
    # sign convention (scikit-learn's svd_flip on the components): the entry of largest
    # magnitude in each component is positive, so the picture does not flip between runs
    biggest = components[np.arange(n_comp), np.abs(components).argmax(axis=1)]
    components *= np.where(biggest < 0, -1.0, 1.0)[:, None]
    return mean, components


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    """The first two principal components (:func:`pca_fit`); ``seed`` is unused (exact)."""
    out = np.zeros((len(x), 2), dtype=np.float32)
    mean, components = pca_fit(x)
    if len(components):
        out[:, :len(components)] = (np.asarray(x, dtype=np.float64) - mean) @ components.T
    return out


def _tsne(x, seed, perplexity, n_iter, say):
    from openTSNE import TSNEEmbedding, affinity, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = len(x)
    perplexity = float(min(perplexity, max(2.0, (n - 1) / 3)))
    k = min(n - 1, int(3 * perplexity))
    t0 = time.perf_counter()
    say(f"exact {k}-NN graph of {n:,} points")
    idx, dist = exact_knn(x, k)
    n_jobs = tsne_threads()  # results do not depend on it
    aff = affinity.PerplexityBasedNN(perplexity=perplexity, knn_index=PrecomputedNeighbors(idx, dist),
                                     random_state=seed, n_jobs=n_jobs, verbose=False)
    init = initialization.pca(x, random_state=seed)
    ee, normal = tsne_schedule(n, n_iter)
    # Early exaggeration keeps the embedding within ~10 units: FFT on a small grid is cheapest.
    emb = TSNEEmbedding(init, aff, negative_gradient_method="fft", min_num_intervals=20, random_state=seed,
                        n_jobs=n_jobs, verbose=False)
    say(f"early exaggeration, {ee} iterations ({time.perf_counter() - t0:.1f} s)")
    emb = emb.optimize(n_iter=ee, exaggeration=12, momentum=0.5)
    done, chunk = 0, 50
    while done < normal:  # the optimiser's state (gains, momentum) carries over between chunks
        step = min(chunk, normal - done)
        method, theta = tsne_gradient(n, float(np.ptp(np.asarray(emb), axis=0).max()))
        say(f"optimising, iteration {ee + done:,} of {ee + normal:,} ({time.perf_counter() - t0:.1f} s)")
        emb = emb.optimize(n_iter=step, momentum=0.8, negative_gradient_method=method, theta=theta)
        done += step
    return np.asarray(emb, dtype=np.float32)


def tsne_sequence(frames: list[np.ndarray], seed: int = 0, perplexity: float = 30.0, n_iter: int = 750,
                  n_iter_step: int = 150) -> list[np.ndarray]:
    """t-SNE layouts of a sequence of embeddings of the same points (a training's epochs) that morph
    into each other: the last frame gets a full t-SNE; each earlier frame starts from its successor's
    layout (openTSNE accepts an initialisation) and runs ``n_iter_step`` iterations without early
    exaggeration, so a point moves only as far as its neighbourhood changed."""
    from openTSNE import TSNEEmbedding, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    if not frames:
        return []
    out: list[np.ndarray] = [np.empty(0)] * len(frames)
    out[-1] = project(np.asarray(frames[-1], dtype=np.float32), "tsne", seed=seed, perplexity=perplexity,
                      n_iter=n_iter)
    n_jobs = tsne_threads()
    for i in range(len(frames) - 2, -1, -1):
        x = np.asarray(frames[i], dtype=np.float32)
        n = len(x)
        p = float(min(perplexity, max(2.0, (n - 1) / 3)))
        idx, dist = exact_knn(x, min(n - 1, int(3 * p)))
        aff = affinity.PerplexityBasedNN(perplexity=p, knn_index=PrecomputedNeighbors(idx, dist), random_state=seed,
                                         n_jobs=n_jobs, verbose=False)
        emb = TSNEEmbedding(np.asarray(out[i + 1], dtype=np.float64), aff, negative_gradient_method="fft",
                            random_state=seed, n_jobs=n_jobs, verbose=False)
        out[i] = np.asarray(emb.optimize(n_iter=n_iter_step, momentum=0.8), dtype=np.float32)
    return out


# ----------------------------------------------------------------------------------- UMAP
_WARM = threading.Event()
_WARM_LOCK = threading.Lock()


def warm_up() -> float:
    """Compile umap-learn's numba kernels for our code path once per process; returns seconds
    spent (0 when already warm). Thread-safe; later calls return at once.

    umap-learn compiles its layout and fuzzy-set kernels without numba's on-disk cache, so every
    new process paid ~15-40 s on a 2-core CPU. We turn that cache on for umap-learn's kernels
    (:func:`_cache_umap_kernels`), so only the first process on a machine compiles; later ones
    load the machine code in a fraction of a second. Results are unaffected.
    """
    if _WARM.is_set():
        return 0.0
    with _WARM_LOCK:
        if _WARM.is_set():
            return 0.0
        t0 = time.perf_counter()
        _cache_umap_kernels()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((64, 8)).astype(np.float32)
        _umap(x, 0, 8, 0.1, 5, lambda _m: None, warm=False)
        _WARM.set()
        return time.perf_counter() - t0


def _cache_umap_kernels() -> int:
    """Enable numba's on-disk cache for umap-learn's jitted functions that lack it; returns how
    many. Best effort: where no cache directory is writable numba says so and we carry on."""
    import sys
    import warnings

    try:
        import umap  # noqa: F401  (imports its submodules)
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return 0
    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "umap" or name.startswith("umap.")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and type(getattr(obj, "_cache", None)).__name__ == "NullCache":
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        obj.enable_caching()
                    count += 1
                except Exception:  # noqa: BLE001 - no writable cache location: compile as before
                    pass
    return count


def _umap(x, seed, n_neighbors, min_dist, n_iter, say, warm=True):
    import warnings

    if warm and not _WARM.is_set():
        say("compiling UMAP (once per process)")
        warm_up()
    import umap

    n = len(x)
    k = max(2, min(int(n_neighbors), n - 1))
    say(f"exact {k}-NN graph of {n:,} points")
    idx, dist = exact_knn(x, k - 1)
    # umap-learn expects each point as its own first neighbour
    idx = np.concatenate([np.arange(n, dtype=np.int64)[:, None], idx], 1)
    dist = np.concatenate([np.zeros((n, 1), np.float32), dist], 1)
    epochs = int(n_iter) if n_iter else umap_epochs(n)
    say(f"optimising layout, {epochs} epochs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, random_state=seed, precomputed_knn=(idx, dist, None),
                            n_epochs=epochs, init="pca" if n > k + 1 else "random")
        out = reducer.fit_transform(x)
    return np.asarray(out, dtype=np.float32)
