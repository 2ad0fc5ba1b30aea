"""Where an image's augmentations land: K fresh augmented views of one image, embedded by the
model and placed on an existing 2-D layout of the test gallery.

A layout is a fitted map from embeddings to the plane; new points go through each method's own
out-of-sample rule, the reference points staying where they are:

- **PCA**: the fitted projection, ``xy = (z - mean) @ components.T`` with the mean and the two
  principal directions of the reference embeddings (:func:`cl.projection.pca_fit`).
- **t-SNE**: openTSNE's ``TSNEEmbedding.transform`` with its defaults (perplexity 5 over the
  15 nearest reference points, median initialisation, 250 iterations at learning rate 0.1 and
  exaggeration 1.5): each new point minimises its own KL divergence to the fixed reference
  points, ignoring the other new points.
- **UMAP**: umap-learn's ``UMAP.transform``: fuzzy memberships of each new point to its
  ``n_neighbors`` nearest reference points, initialised at their weighted mean, then
  ``n_epochs // 3`` epochs of the layout optimisation with the reference fixed.

The fitted objects are rebuilt from the reference embeddings and the layout's coordinates, so a
shipped layout (``checkpoints/layouts/NAME.npz`` stores only coordinates) needs no pickled
state: t-SNE's transform reads only the reference positions and the new points' affinities to
the reference, so a ``TSNEEmbedding`` around the shipped coordinates with affinities from an
exact nearest-neighbour index is the fitted object; UMAP's transform reads its fitted
neighbour graph parameters (``a``, ``b``, the reference data) and ``embedding_``, so it is fitted
with one epoch (the same graph) and ``embedding_`` set to the layout. Nearest neighbours are exact
(:class:`ExactIndex`), as in :mod:`cl.projection`.

Seeded: the same model, layout, image, augmentation, K and seed give the same positions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataUnavailableError
from .projection import METHODS, ProjectionParams, exact_knn, pca_fit, umap_epochs

MAX_VIEWS = 256


# ------------------------------------------------------------------------ exact neighbours
def exact_query(reference: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of every query row (euclidean, exact, self included if
    present): ``(indices int64, distances float32)``, each ``(M, k)``, sorted by distance."""
    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    k = min(int(k), len(ref))
    d2 = torch.addmm((ref * ref).sum(1)[None, :], q, ref.T, beta=1.0, alpha=-2.0)
    vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    dist = vals.add_((q * q).sum(1, keepdim=True)).clamp_min_(0).sqrt_()
    return idx.numpy().astype(np.int64), dist.numpy().astype(np.float32)


def _knn_index_class():
    from openTSNE.nearest_neighbors import KNNIndex

    class ExactIndex(KNNIndex):
        """openTSNE nearest-neighbour index over our exact search (:func:`exact_knn`)."""

        VALID_METRICS = ["euclidean"]

        def build(self):
            return exact_knn(self.data, self.k)

        def query(self, query, k):
            return exact_query(self.data, query, k)

    return ExactIndex


class _UmapSearch:
    """What umap-learn's ``transform`` asks of a search index beyond 4,096 points (below that it
    computes all distances itself): ``query(X, k, epsilon)``, exact here."""

    _angular_trees = False

    def __init__(self, data: np.ndarray):
        self.data = data

    def query(self, query, k, epsilon=0.0):
        idx, dist = exact_query(self.data, query, k)
        return idx.astype(np.int32), dist


# ------------------------------------------------------------------------ the fitted layouts
@dataclass
class Placer:
    """A fitted 2-D layout of ``reference`` embeddings that places new embeddings on it."""

    method: str
    reference: np.ndarray  # (N, D) float32, the embeddings the layout was computed from
    coords: np.ndarray  # (N, 2) float32, the layout
    params: ProjectionParams
    fitted: Any = None  # per method: (mean, components), (openTSNE embedding, offset) or a UMAP reducer
    fit_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def place(self, embeddings: np.ndarray) -> np.ndarray:
        """``(M, D)`` new embeddings -> ``(M, 2)`` float32 positions on this layout."""
        z = np.ascontiguousarray(embeddings, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.reference.shape[1]:
            raise ConfigError(f"expected embeddings of shape (M, {self.reference.shape[1]}), got {z.shape}")
        if not len(z):
            return np.zeros((0, 2), dtype=np.float32)
        if self.method == "pca":
            mean, components = self.fitted
            out = np.zeros((len(z), 2))
            out[:, :len(components)] = (z.astype(np.float64) - mean) @ components.T
            return out.astype(np.float32)
        # The fitted objects keep state between calls (openTSNE's interpolation grid): one at a time.
        with self._lock:
            if self.method == "tsne":
                embedding, offset = self.fitted
                out = np.asarray(embedding.transform(z), dtype=np.float64) + offset
            else:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = np.asarray(self.fitted.transform(z), dtype=np.float64)
        return out.astype(np.float32)


def fit_placer(reference: np.ndarray, coords: np.ndarray, params: ProjectionParams) -> Placer:
    """The fitted ``params.method`` layout whose reference points are ``reference`` at ``coords``.

    ``coords`` is the layout as :func:`cl.projection.project` computed it from ``reference``
    with ``params`` (a shipped layout, or a fresh one). For PCA the coordinates follow from the
    reference alone; t-SNE and UMAP keep them exactly."""
    method, seed = params.method, params.seed
    x = np.ascontiguousarray(reference, dtype=np.float32)
    xy = np.ascontiguousarray(coords, dtype=np.float32)
    if x.ndim != 2 or xy.shape != (len(x), 2):
        raise ConfigError(f"a layout needs (N, D) embeddings and (N, 2) coordinates, got {x.shape} and {xy.shape}")
    if len(x) < 3:
        raise ConfigError(f"a layout needs at least 3 points, got {len(x)}")
    t0 = time.perf_counter()
    if method == "pca":
        fitted = pca_fit(x)
    elif method == "tsne":
        fitted = _fit_tsne(x, xy, seed, params.perplexity)
    else:
        fitted = _fit_umap(x, xy, seed, params.n_neighbors, params.min_dist)
    return Placer(method, x, xy, params, fitted, time.perf_counter() - t0)


def _fit_tsne(x, xy, seed, perplexity):
    from openTSNE import TSNEEmbedding, affinity

    from .projection import tsne_threads

    n = len(x)
    perplexity = float(min(perplexity, max(2.0, (n - 1) / 3)))  # as cl.projection's t-SNE
    k = min(n - 1, int(3 * perplexity))
    n_jobs = tsne_threads(0.02)  # results do not depend on it
    index = _knn_index_class()(x, k)
    aff = affinity.PerplexityBasedNN(perplexity=perplexity, knn_index=index, random_state=seed, n_jobs=n_jobs,
                                     verbose=False)
    coords = xy.astype(np.float64)
    # openTSNE's transform centres the reference embedding in place; centre it once here and
    # add the offset back to every placement, so positions are in the layout's own frame.
    offset = (coords.max(axis=0) + coords.min(axis=0)) / 2
    embedding = TSNEEmbedding(coords - offset, aff, negative_gradient_method="fft", random_state=seed,
                              n_jobs=n_jobs, verbose=False)
    return embedding, offset


def _fit_umap(x, xy, seed, n_neighbors, min_dist):
    import warnings

    from .projection import warm_up

    warm_up()  # numba's compiled kernels, cached on disk
    import umap

    n = len(x)
    k = max(2, min(int(n_neighbors), n - 1))  # as cl.projection's UMAP
    idx, dist = exact_knn(x, k - 1)
    idx = np.concatenate([np.arange(n, dtype=np.int64)[:, None], idx], 1)
    dist = np.concatenate([np.zeros((n, 1), np.float32), dist], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, random_state=seed, precomputed_knn=(idx, dist, None),
                            n_epochs=1, init="random")
        reducer.fit(x)
    # transform runs n_epochs // 3 epochs: those of the layout's own fit
    reducer.n_epochs = umap_epochs(n)
    reducer.embedding_ = xy.astype(np.float32).copy()
    if getattr(reducer, "_knn_search_index", None) is None:
        reducer._knn_search_index = _UmapSearch(x)
    return reducer


# ------------------------------------------------------------------------ augmented views
def augmented_views(image: torch.Tensor, augmentation: str, k: int = 16, seed: int = 0) -> torch.Tensor:
    """``k`` augmented uint8 copies ``(k, C, H, W)`` of one uint8 image ``(C, H, W)``, each with
    its own random parameters drawn from ``torch.Generator().manual_seed(seed)``."""
    from .augmentations import augment_to_uint8, get_augmentation

    k = int(k)
    if not 1 <= k <= MAX_VIEWS:
        raise ConfigError(f"the number of views must be between 1 and {MAX_VIEWS}, got {k}")
    aug = get_augmentation(augmentation)
    img = torch.as_tensor(image)
    if img.ndim != 3 or img.dtype != torch.uint8:
        raise ConfigError(f"expected one uint8 image (C, H, W), got {tuple(img.shape)} {img.dtype}")
    gen = torch.Generator().manual_seed(int(seed))
    return augment_to_uint8(img.unsqueeze(0).repeat(k, 1, 1, 1), aug, gen)


@dataclass
class Placement:
    views: torch.Tensor  # (K, C, H, W) uint8, what was embedded
    embeddings: np.ndarray  # (K, D) float32
    xy: np.ndarray  # (K, 2) float32, positions on the layout
    seconds: float  # augmenting, embedding and placing the K views


def place_views(model: torch.nn.Module, placer: Placer, image: torch.Tensor, k: int = 16,
                augmentation: str = "none", seed: int = 0) -> Placement:
    """Augment ``image`` ``k`` times (:func:`augmented_views`), embed the views with ``model``
    and place them on ``placer``'s layout."""
    from .evaluation import embed

    t0 = time.perf_counter()
    views = augmented_views(image, augmentation, k, seed)
    emb = embed(model, views)
    xy = placer.place(emb)
    return Placement(views, emb, xy, time.perf_counter() - t0)


# ------------------------------------------------------------------------ a checkpoint's layout
def checkpoint_layout(checkpoint: str | Path, method: str, data_dir=None, model=None, card=None) -> dict:
    """The test gallery, its embeddings and the ``method`` layout a checkpoint's views land on.

    The layout is the shipped one (``checkpoints/layouts``) when present and current, otherwise
    computed here the same way (:func:`cl.projection.project`, seed 0, the app's default
    parameters). Returns ``model``, ``card``, ``dataset``, ``images``, ``labels``, ``classes``,
    ``embeddings``, ``coords``, ``source`` (``"shipped"`` or ``"computed"``), ``gallery`` (what
    the images are) and ``params``."""
    from .checkpoints import check_compatible, load_checkpoint
    from .evaluation import embed
    from .layouts import gallery_for, load_layout
    from .projection import project

    if method not in METHODS:
        raise ConfigError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    if model is None:
        model, card = load_checkpoint(checkpoint)
    dataset = (card.get("data") or {}).get("dataset")
    if not dataset:
        raise ConfigError(f"{Path(checkpoint).name}: the card names no data set")
    gallery = gallery_for(dataset)
    if gallery is None:  # no shipped gallery (an image folder or archive): its test split
        from .workflow import data_for_card

        _name, gallery = data_for_card(card, dataset, "test", data_dir, download=False, source=Path(checkpoint).name)
    if gallery is None:
        raise DataUnavailableError(f"no test images for {dataset}")
    check_compatible(card, gallery.channels, gallery.size, dataset, Path(checkpoint).name)
    emb = embed(model, gallery.images)
    coords = load_layout(checkpoint, method)
    source = "shipped"
    if coords is None or len(coords) != len(emb):
        coords = project(emb, ProjectionParams(method))
        source = "computed"
    return {"model": model, "card": card, "dataset": dataset, "images": gallery.images,
            "labels": gallery.labels.numpy(), "classes": list(gallery.classes), "embeddings": emb,
            "coords": np.asarray(coords, dtype=np.float32), "source": source, "gallery": gallery.describe(),
            "params": ProjectionParams(method, n=len(emb))}


def place_in_checkpoint(checkpoint: str | Path, index: int, k: int = 16, augmentation: str | None = None,
                        method: str = "tsne", seed: int = 0, data_dir=None) -> dict:
    """K augmented views of test-gallery image ``index`` placed on the checkpoint's ``method``
    layout; ``augmentation`` defaults to the model's own (its card's training augmentation).
    A JSON-ready dict with the coordinates and the timings."""
    t0 = time.perf_counter()
    lay = checkpoint_layout(checkpoint, method, data_dir)
    n = len(lay["labels"])
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        raise ConfigError(f"--index must be an image of the layout's {n:,} test images: 0 to {n - 1}, got {index}")
    index = int(index)
    aug = augmentation or (lay["card"].get("config") or {}).get("augmentation") or "none"
    placer = fit_placer(lay["embeddings"], lay["coords"], lay["params"])
    placed = place_views(lay["model"], placer, lay["images"][index], k, aug, seed)
    label = int(lay["labels"][index])
    return {"checkpoint": Path(checkpoint).name, "dataset": lay["dataset"], "method": method,
            "layout": lay["source"], "gallery": lay["gallery"], "n_points": n, "index": index,
            "class": lay["classes"][label], "augmentation": aug, "k": int(k), "seed": int(seed),
            "original": [float(v) for v in lay["coords"][index]],
            "views": [[float(a), float(b)] for a, b in placed.xy],
            "seconds": {"fit": round(placer.fit_seconds, 4), "place": round(placed.seconds, 4),
                        "total": round(time.perf_counter() - t0, 4)}}
