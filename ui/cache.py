"""Shared, bounded caches (all of the server's shared state is listed in :mod:`ui.shared`). Keys
are checkpoint ids (path + size + mtime) and data-set names, so a re-trained file gets new entries
and every session reuses the same work.

- models: ``st.cache_resource`` (one object shared read-only by all sessions, eval mode)
- embeddings, evaluations, projections, thumbnails: ``st.cache_data`` with ``max_entries``
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np
import streamlit as st

from cl import allocator
from cl.checkpoints import load_checkpoint
from cl.data import ImageSet, dataset_status, load_dataset
from cl.errors import ConfigError, DataUnavailableError, UserError
from cl.projection import ProjectionParams
from cl.workflow import data_for_card

from . import own, shared


def load_data(name: str, split: str) -> ImageSet:
    """One split, never downloading (the Train page offers an explicit download). The test
    split falls back to the shipped gallery; cl.data keeps a small LRU cache of loaded sets. An
    embeddings file (:mod:`ui.own`) is a test split only: its rows."""
    if own.is_own(name):
        if split != "test":
            raise DataUnavailableError(f"{own.label(name)} is an embeddings file: its rows are the only split")
        return own.image_set(name)
    return load_dataset(name, split, download=False, allow_gallery=(split == "test"))


def forget_status() -> None:
    """Re-check data availability on the next call (after a download)."""
    _status.clear()


def status(name: str) -> dict:
    """cl.data.dataset_status for the current data folder (cached for 10 minutes)."""
    from cl.data import resolve_data_dir

    if own.is_own(name):
        try:
            return own.status(name)
        except UserError:
            return {"n_train": 0, "n_test": 0}
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
    if own.is_own(dataset):  # the file's rows are its "model"'s test embeddings
        return own.opened(dataset)[0].embeddings if split == "test" else load_data(dataset, split).images
    if split == "test":
        warmed = _warmed_test_embeddings((path, cid, dataset))
        if warmed is not None:
            return warmed
    net, card = model(path, cid)
    _name, data = data_for_card(card, dataset, split, download=False, source=card.get("name", path))
    from cl.evaluation import embed

    out = embed(net, data.images)
    if split == "test":
        shared.WARM_EMBEDDINGS.put((path, cid, dataset), out)
    return out


# ---- test embeddings computed ahead, in the background -------------------------------------
# Retrieval needs the active model's embeddings of the whole test split (10,000 MNIST images:
# ~1.5 s of both cores), and so do a fresh projection and a recomputed evaluation. Every other
# page draws from shipped files, so after any page has drawn, app.py asks for them here; a visitor
# who then opens Retrieval finds them ready. The thread runs at a lower priority (it takes only
# idle CPU from page runs) and outside Streamlit's caches, which expect a session's script thread.
# Results go to ui.shared.WARM_EMBEDDINGS; the computations under way are here.
_WARM_RUNNING: dict[tuple, threading.Event] = {}
_WARM_LOCK = threading.Lock()


def warm_test_embeddings(path: str, cid: str, dataset: str) -> bool:
    """Start computing ``embeddings(path, cid, dataset, "test")`` in the background, unless it is
    known or under way; returns whether a computation started. Errors are left for the page."""
    key = (path, cid, dataset)
    with _WARM_LOCK:
        if key in shared.WARM_EMBEDDINGS or key in _WARM_RUNNING:
            return False
        done = _WARM_RUNNING[key] = threading.Event()

    def work() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        try:
            net, card = load_checkpoint(path)  # its own copy: the shared one belongs to script runs
            _name, data = data_for_card(card, dataset, "test", download=False, source=card.get("name", path))
            from cl.evaluation import embed

            shared.WARM_EMBEDDINGS.put(key, embed(net, data.images))
        except Exception:  # noqa: BLE001 - the page computes it again and shows the error itself
            pass
        finally:
            # This thread's malloc arena keeps the embedding's freed activations (measured: the
            # peak of one visitor's session with a 10,000-point scatter rose from 756 to 882 MB
            # with the warm-up); hand them back now that it is done.
            allocator.return_freed_memory()
            with _WARM_LOCK:
                _WARM_RUNNING.pop(key, None)
            done.set()

    threading.Thread(target=work, name="warm-test-embeddings", daemon=True).start()
    return True


def _warmed_test_embeddings(key: tuple) -> np.ndarray | None:
    """The background result, waiting for it when it is under way (rather than computing twice)."""
    with _WARM_LOCK:
        running = _WARM_RUNNING.get(key)
    if running is not None:
        running.wait()
    return shared.WARM_EMBEDDINGS.get(key)


@st.cache_data(max_entries=16, show_spinner=False)
def evaluation(path: str, cid: str, dataset: str, protocol: str) -> dict:
    """cl.evaluation.evaluate_embeddings under ``protocol`` (``standard`` needs the train split)."""
    from cl.evaluation import evaluate_embeddings
    from cl.layouts import load_evaluation

    test_set = load_data(dataset, "test")
    if own.is_own(dataset):  # no train split: the paper protocol's seeded 80/20 split of the rows, as the CLI
        if not own.opened(dataset)[0].has_labels:
            raise ConfigError(f"{own.label(dataset)} has no labels; a probe and kNN need each row's class")
        if protocol == "standard":
            load_data(dataset, "train")  # says why there is none
        r = evaluate_embeddings(embeddings(path, cid, dataset, "test"), test_set, "paper", seed=0)
        name = own.opened(dataset)[0].name  # the file as the person named it, not its id
        return {**r, "dataset": name, "fitted_on": {**r["fitted_on"], "dataset": name},
                "scored_on": {**r["scored_on"], "dataset": name}}
    shipped = load_evaluation(path, protocol, split_digest(dataset, "test"), status(dataset).get("n_train"))
    if shipped is not None:  # a shipped model on the same test images: computed by the build script
        return {**shipped, "shipped": True}
    test_emb = embeddings(path, cid, dataset, "test")
    train_set = train_emb = None
    if protocol == "standard":
        train_set = load_data(dataset, "train")
        train_emb = embeddings(path, cid, dataset, "train")
    return evaluate_embeddings(test_emb, test_set, protocol, train_emb, train_set, seed=0)


@st.cache_data(max_entries=16, ttl=600, show_spinner=False)
def split_digest(dataset: str, split: str) -> str:
    """SHA-256 of a split's images and labels, to match shipped evaluations to the data shown."""
    from cl.layouts import gallery_digest

    data = load_data(dataset, split)
    return gallery_digest(data.images.numpy(), data.labels.numpy())


def predictions(path: str, cid: str, dataset: str) -> tuple[np.ndarray, str]:
    """A predicted class for every test image (-1 where none) and where it came from.

    The standard protocol's probe (fitted on the train split) predicts every test image; when
    the train split is unavailable the paper protocol's probe scores its 20 % only."""
    n = len(load_data(dataset, "test"))
    if own.is_own(dataset) and not own.opened(dataset)[0].has_labels:
        return np.full(n, -1, dtype=np.int64), "none: the embeddings file has no labels to fit a probe on"
    try:
        r = evaluation(path, cid, dataset, "standard")
        how = f"linear probe fitted on {r['n_fit']:,} {dataset} train images"
    except DataUnavailableError:
        r = evaluation(path, cid, dataset, "paper")
        shown = own.opened(dataset)[0].name if own.is_own(dataset) else dataset
        how = (f"paper protocol probe fitted on {r['n_fit']:,} {shown} test images; "
               f"the other {n - r['n_test']:,} points have no prediction")
    pred = np.full(n, -1, dtype=np.int64)
    pred[np.asarray(r["scored_indices"], dtype=np.int64)] = np.asarray(r["predictions"], dtype=np.int64)
    return pred, how


def subset_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


@st.cache_data(max_entries=12, show_spinner=False)
def projection(path: str, cid: str, dataset: str, params: ProjectionParams,
               _progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, xy)`` for ``params.n`` test points (all when ``None`` or >= the split's size)."""
    from cl.projection import project

    emb = embeddings(path, cid, dataset, "test")
    idx = subset_indices(len(emb), len(emb) if params.n is None else params.n, params.seed)
    if len(idx) < 3:
        raise ConfigError(f"need at least 3 points to project, got {len(idx)}")
    return idx, project(emb[idx], params, progress=_progress)


@st.cache_data(max_entries=12, show_spinner=False)
def map_trust(path: str, cid: str, dataset: str, params: ProjectionParams, shipped_on: int | None = None) -> dict:
    """How faithful a map is (:func:`cl.maptrust.map_trust`: its summary, ``kept`` per point and
    ``neighbors``, both in the map's point order), computed once per map for everyone. The map
    is :func:`projection`'s with ``params``, or (``shipped_on``) the model's shipped
    ``params.method`` layout on a test split of that many images, for a layout file that does
    not carry its figures."""
    from cl.maptrust import map_trust as score

    emb = embeddings(path, cid, dataset, "test")
    method = params.method
    if shipped_on is not None:
        layout = shipped_layouts(path, dataset, shipped_on)
        if layout is None or method not in layout:
            raise ConfigError(f"no shipped {method} layout of {shipped_on:,} {dataset} test images for this model")
        idx, xy = layout["rows"], layout[method]
    else:
        idx, xy = projection(path, cid, dataset, params)
    r = score(emb[idx], xy)
    return {**r.summary(), "kept": r.kept, "neighbors": r.neighbors}


@st.cache_resource(max_entries=4, show_spinner=False)
def placer(path: str, cid: str, dataset: str, params: ProjectionParams, shipped: bool, _reference: np.ndarray,
           _coords: np.ndarray):
    """The fitted layout (:func:`cl.placement.fit_placer`) of the Embedding page's view: the
    arguments name the view, ``_reference`` and ``_coords`` are its points' embeddings and
    positions. Shared read-only by every session (placing is serialised inside)."""
    from cl.placement import fit_placer

    return fit_placer(_reference, _coords, params)


def _stamp(path) -> tuple:
    try:
        s = os.stat(path)
        return (s.st_size, s.st_mtime_ns)
    except OSError:
        return ()


def shipped_layouts(path: str, dataset: str, n_test: int) -> dict | None:
    """The model's shipped layouts placed on the test split shown here (``n_test`` images), or
    ``None`` (none shipped, stale, or another split). Needs no PyTorch: a cold server draws the
    scatter while torch is still being imported for the next page.

    ``rows``: which test images the layout's points are (:func:`cl.layouts.gallery_rows`);
    ``labels`` and ``thumbs``: full-length per test index, filled on ``rows``. Made once per
    checkpoint and layout file (their sizes and times), shared read-only by every session."""
    from cl.layouts import layout_path

    from .images import thumbnails_present

    key = (path, dataset, n_test, _stamp(path), _stamp(layout_path(path)))
    out = _shipped_layouts(*key)
    if out is not None and len(out["rows"]) and not thumbnails_present([out["thumbs"][out["rows"][0]]]):
        _shipped_layouts.cache_clear()  # the thumbnails were pruned from the static folder: write them again
        out = _shipped_layouts(*key)
    return out


@functools.lru_cache(maxsize=64)
def _shipped_layouts(path: str, dataset: str, n_test: int, _ckpt_stamp: tuple, _layout_stamp: tuple) -> dict | None:
    from cl.layouts import METHODS, gallery_rows, layout_trust, read_layouts

    data = read_layouts(path)
    if data is None or data["meta"].get("dataset") != dataset:
        return None
    n_layout = len(data["labels"])
    n_full = gallery_n_full(dataset)
    # The split here is the gallery itself, or the full split the gallery was sampled from.
    if n_test != n_layout and n_test != n_full:
        return None
    rows = gallery_rows(n_test, n_layout)
    if rows is None:
        return None
    labels = np.zeros(n_test, dtype=np.int64)
    labels[rows] = data["labels"]
    thumbs: list[str | None] = [None] * n_test
    for r, url in zip(rows, gallery_thumbnails(dataset, n_layout), strict=True):
        thumbs[r] = url
    # each map's stored figures (cl.maptrust), None for a layout file written before them
    trust = {m: layout_trust(data, m) for m in METHODS if m in data}
    return {"rows": rows, "labels": labels, "thumbs": thumbs, "trust": trust,
            **{k: data[k] for k in ("tsne", "umap", "pca") if k in data}}


def gallery_n_full(dataset: str) -> int | None:
    from cl.data import gallery_path

    try:
        with np.load(gallery_path(dataset), allow_pickle=False) as z:
            return int(z["n_full"]) if "n_full" in z.files else None
    except (OSError, ValueError, KeyError):
        return None


def gallery_thumbnails(dataset: str, n: int) -> list[str]:
    """Thumbnail URLs (:func:`ui.images.thumbnail_urls`) of a layout's test-gallery images, in
    order, made with NumPy and Pillow only."""
    from .images import thumbnails_present

    urls = _gallery_thumbnails(dataset, n)
    if not thumbnails_present(urls):  # pruned from the static folder since: write them again
        _gallery_thumbnails.clear(dataset, n)
        urls = _gallery_thumbnails(dataset, n)
    return urls


@st.cache_data(max_entries=6, show_spinner=False)
def _gallery_thumbnails(dataset: str, n: int) -> list[str]:
    from cl.layouts import gallery_images

    from .images import thumbnail_urls

    images = gallery_images(dataset)
    return thumbnail_urls(images[:n], scale=2 if images.shape[-1] <= 32 else 1)


def thumbnails(dataset: str, split: str) -> list[str] | None:
    """Thumbnail URLs of every image of a split (for the scatter tooltips), as
    :func:`gallery_thumbnails`; an uploaded image set's the same way."""
    from .images import thumbnails_present

    if own.is_own(dataset) and own.opened(dataset)[1] is None:
        return None  # an embeddings file without its images: points without pictures
    urls = _thumbnails(dataset, split)
    if not thumbnails_present(urls):
        _thumbnails.clear(dataset, split)
        urls = _thumbnails(dataset, split)
    return urls


@st.cache_data(max_entries=6, show_spinner=False)
def _thumbnails(dataset: str, split: str) -> list[str]:
    from .images import thumbnail_urls

    data = load_data(dataset, split)
    return thumbnail_urls(data.images, scale=2 if data.size <= 32 else 1)


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


@st.cache_data(max_entries=8, show_spinner=False)
def neighbour_agreement(path_a: str, cid_a: str, path_b: str, cid_b: str, dataset: str, k: int = 10) -> np.ndarray:
    """Per test image, the share of its k nearest neighbours that two models agree on (cached for all)."""
    from cl.retrieval import neighbour_agreement as agreement

    return agreement(embeddings(path_a, cid_a, dataset, "test"), embeddings(path_b, cid_b, dataset, "test"), k)


@st.cache_data(max_entries=4, show_spinner=False)
def snapshot_tsne(key: str, _snapshots: dict) -> list[np.ndarray]:
    """t-SNE frames of the per-epoch snapshots, each started from the next epoch's (cl.projection.tsne_sequence)."""
    from cl.projection import tsne_sequence

    return tsne_sequence([np.asarray(f, dtype=np.float32) for f in _snapshots["embeddings"]])


@st.cache_data(max_entries=256, show_spinner=False)
def augmented_grid(dataset: str, split: str, augmentation: str, indices: tuple[int, ...], seed: int,
                   scale: int) -> bytes:
    """The images ``indices`` of ``dataset``'s ``split`` after ``augmentation`` (random stream
    ``seed``), as one PNG grid: the same draw gives the same picture, made once for everyone."""
    import torch

    from cl.augmentations import augment_to_uint8, get_augmentation

    from .images import grid_png

    data = load_data(dataset, split)
    views = augment_to_uint8(data.images[torch.tensor(indices, dtype=torch.long)], get_augmentation(augmentation),
                             torch.Generator().manual_seed(seed))
    return grid_png(views, ncol=len(indices), scale=scale)
