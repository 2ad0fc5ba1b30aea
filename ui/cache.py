"""Shared, bounded caches. Keys are checkpoint ids (path + size + mtime) and data-set names, so a
re-trained file gets new entries and every session reuses the same work.

- models: ``st.cache_resource`` (one object shared read-only by all sessions, eval mode)
- embeddings, evaluations, projections, thumbnails: ``st.cache_data`` with ``max_entries``
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cl.checkpoints import check_compatible, load_checkpoint
from cl.data import ImageSet, dataset_status, load_dataset
from cl.errors import ConfigError, DataUnavailableError


def load_data(name: str, split: str) -> ImageSet:
    """One split, never downloading (the Train page offers an explicit download). The test
    split falls back to the shipped gallery; cl.data keeps a small LRU cache of loaded sets."""
    return load_dataset(name, split, download=False, allow_gallery=(split == "test"))


def forget_status() -> None:
    """Re-check data availability on the next call (after a download)."""
    _status.clear()


def status(name: str) -> dict:
    """cl.data.dataset_status for the current data folder (cached for 10 minutes)."""
    from cl.data import resolve_data_dir

    return _status(name, str(resolve_data_dir().resolve()))


@st.cache_data(max_entries=16, ttl=600, show_spinner=False)
def _status(name: str, root: str) -> dict:
    return dataset_status(name, root)


@st.cache_resource(max_entries=8, show_spinner=False)
def model(path: str, cid: str):
    """``(model, card)``; ``cid`` (the checkpoint id) makes a re-written file a new entry."""
    return load_checkpoint(path)


@st.cache_data(max_entries=16, show_spinner=False)
def embeddings(path: str, cid: str, dataset: str, split: str) -> np.ndarray:
    net, card = model(path, cid)
    data = load_data(dataset, split)
    check_compatible(card, data.channels, data.size, dataset, card.get("name", path))
    from cl.evaluation import embed

    return embed(net, data.images)


@st.cache_data(max_entries=16, show_spinner=False)
def evaluation(path: str, cid: str, dataset: str, protocol: str) -> dict:
    """cl.evaluation.evaluate_embeddings under ``protocol`` (``standard`` needs the train split)."""
    from cl.evaluation import evaluate_embeddings

    test_set = load_data(dataset, "test")
    test_emb = embeddings(path, cid, dataset, "test")
    train_set = train_emb = None
    if protocol == "standard":
        train_set = load_data(dataset, "train")
        train_emb = embeddings(path, cid, dataset, "train")
    return evaluate_embeddings(test_emb, test_set, protocol, train_emb, train_set, seed=0)


def predictions(path: str, cid: str, dataset: str) -> tuple[np.ndarray, str]:
    """A predicted class for every test image (-1 where none) and where it came from.

    The standard protocol's probe (fitted on the train split) predicts every test image; when
    the train split is unavailable the paper protocol's probe scores its 20 % only."""
    n = len(load_data(dataset, "test"))
    try:
        r = evaluation(path, cid, dataset, "standard")
        how = f"linear probe fitted on {r['n_fit']:,} {dataset} train images"
    except DataUnavailableError:
        r = evaluation(path, cid, dataset, "paper")
        how = (f"paper protocol probe fitted on {r['n_fit']:,} {dataset} test images; "
               f"the other {n - r['n_test']:,} points have no prediction")
    pred = np.full(n, -1, dtype=np.int64)
    pred[np.asarray(r["scored_indices"], dtype=np.int64)] = np.asarray(r["predictions"], dtype=np.int64)
    return pred, how


def subset_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


@st.cache_data(max_entries=12, show_spinner=False)
def projection(path: str, cid: str, dataset: str, method: str, n: int, seed: int, perplexity: float,
               n_neighbors: int, min_dist: float, _progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, xy)`` for ``n`` test points (all when ``n`` >= the split's size)."""
    from cl.projection import project

    emb = embeddings(path, cid, dataset, "test")
    idx = subset_indices(len(emb), n, seed)
    if len(idx) < 3:
        raise ConfigError(f"need at least 3 points to project, got {len(idx)}")
    xy = project(emb[idx], method, seed=seed, perplexity=perplexity, n_neighbors=n_neighbors,
                 min_dist=min_dist, progress=_progress)
    return idx, xy


def shipped_layouts(path: str, cid: str, dataset: str, test: ImageSet) -> dict | None:
    """The model's shipped layouts placed on the test split shown (``rows``: which of its images
    they are), or ``None`` when there are none, they are stale, or they do not match these images."""
    from cl.layouts import gallery_rows, read_layouts

    data = read_layouts(path)
    if data is None or data["meta"].get("dataset") != dataset:
        return None
    rows = gallery_rows(len(test), len(data["labels"]))
    if rows is None or not np.array_equal(test.labels.numpy()[rows], data["labels"].astype(np.int64)):
        return None
    return {"rows": rows, **{k: data[k] for k in ("tsne", "umap", "pca") if k in data}}


def is_shipped_view(req: dict, n_layout: int) -> bool:
    """Whether an Embedding-page request is exactly what the shipped layouts hold."""
    from cl.layouts import DEFAULTS

    return (int(req["n"]) == n_layout and int(req["seed"]) == DEFAULTS["seed"]
            and float(req["perplexity"]) == DEFAULTS["perplexity"]
            and int(req["n_neighbors"]) == DEFAULTS["n_neighbors"]
            and float(req["min_dist"]) == DEFAULTS["min_dist"])


@st.cache_data(max_entries=6, show_spinner=False)
def thumbnails(dataset: str, split: str) -> list[str]:
    """PNG data URLs of every image of a split (for the scatter tooltips)."""
    from . import images as ui_images  # imports torch: not needed to draw the first page

    data = load_data(dataset, split)
    scale = 2 if data.size <= 32 else 1
    return ui_images.data_urls(data.images, scale=scale)


@st.cache_data(max_entries=8, show_spinner=False)
def snapshot_projection(key: str, _snapshots: dict) -> list[np.ndarray]:
    """PCA of per-epoch embedding snapshots, signs aligned with the last epoch (for the replay)."""
    from sklearn.decomposition import PCA

    frames = [np.asarray(f, dtype=np.float32) for f in _snapshots["embeddings"]]
    final = PCA(n_components=2, random_state=0).fit(frames[-1])
    out = []
    for emb in frames:
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        ref = final.transform(emb)
        for k in range(2):  # flip each axis to agree with the final layout
            if np.dot(xy[:, k], ref[:, k]) < 0:
                xy[:, k] = -xy[:, k]
        out.append(xy.astype(np.float32))
    return out
