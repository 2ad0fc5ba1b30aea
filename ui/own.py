"""Embeddings made elsewhere, in the app: an uploaded file is a data set (``embeddings:ID``) whose
only "model" is the file itself, so Embedding, Metrics and Retrieval read its rows as the test
embeddings of that model (:mod:`ui.cache` asks here first) and need no special page.

The file is checked by :mod:`cl.own_embeddings` and kept, with its images when a zip of them came
along, in the app's cache folder under ``embeddings/`` (bounded like uploaded models); a link
``dataset=embeddings:ID`` reopens it while it is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from cl.data import ImageSet
from cl.errors import UserError
from cl.own_embeddings import MAX_STORED, NEEDS_A_MODEL, EmbeddingLimits, open_stored, stored_path

from . import demo
from .models import ModelEntry

PREFIX = "embeddings:"  # the data-set name of a kept file: embeddings:ID
EMBEDDING_SUFFIXES = (".npz", ".parquet")
NO_LABEL = "no label"  # the one class of a file without labels
MAX_KEPT_DEMO = 20  # files kept on a hosted demo (each up to 100 MB of vectors and 200 MB of images)


def folder() -> Path:
    from cl.archive import cache_dir

    return cache_dir() / "embeddings"


def limits() -> EmbeddingLimits:
    return EmbeddingLimits.demo() if demo.enabled() else EmbeddingLimits()


def is_own(dataset: str | None) -> bool:
    return bool(dataset) and str(dataset).startswith(PREFIX)


def path_of(dataset: str) -> Path | None:
    """The kept file of ``embeddings:ID``, or ``None`` once it is gone."""
    return stored_path(dataset[len(PREFIX):], folder()) if is_own(dataset) else None


def _stamp(path: Path) -> tuple:
    s = os.stat(path)
    return (s.st_size, s.st_mtime_ns)


@st.cache_resource(max_entries=4, show_spinner=False)
def _opened(path: str, _stamp: tuple):
    return open_stored(path)


def opened(dataset: str):
    """``(OwnEmbeddings, images or None)`` of a kept file; :class:`UserError` once it is gone."""
    path = path_of(dataset)
    if path is None:
        raise UserError("this embeddings file is no longer on this server (uploads are kept while there is room); "
                        "upload it again under \"Bring your own\"")
    return _opened(str(path), _stamp(path))


def image_set(dataset: str) -> ImageSet:
    """The file's rows as the test split of data set ``dataset`` (no images: a ``(N, 0, 0, 0)`` tensor)."""
    own, images = opened(dataset)
    base = own.image_set(images)
    labels, classes = base.labels, base.classes
    if not own.has_labels:  # one class for every row: maps and neighbours work, probes are refused (ui.cache)
        labels, classes = labels.clamp(min=0), [NO_LABEL]
    return ImageSet(dataset, "test", base.images, labels, classes, base.source, notes=base.notes,
                    label=own.name, origins=base.origins)


def status(dataset: str) -> dict:
    own, images = opened(dataset)
    return {"n_train": 0, "n_test": len(own), "train_complete": True, "images": images is not None,
            "labelled": own.has_labels}


def label(dataset: str) -> str:
    try:
        own, _images = opened(dataset)
    except UserError:
        return "an embeddings file no longer on this server"
    return f"{own.name} (your embeddings)"


def entry(dataset: str) -> ModelEntry | None:
    """The file as the data set's one model: its rows are that model's test embeddings."""
    path = path_of(dataset)
    if path is None:
        return None
    own, _images = opened(dataset)
    card = {"name": own.name, "data": {"dataset": dataset, "label": own.name, "n_images": len(own), "split": "file"},
            "config": {"augmentation": "none", "loss": ""}, "own": own.provenance()}
    return ModelEntry(str(path), "session", card, dataset[len(PREFIX):], own=True)


def needs_a_model(what: str) -> None:
    """Stop a page that needs a model, saying so plainly."""
    st.info(f"{what} needs a model, and the data set chosen is an embeddings file made elsewhere (its vectors only). "
            f"Not offered for such a file: {', '.join(NEEDS_A_MODEL)}. The Embedding, Metrics and Retrieval pages "
            f"work on it; choose another data set in the sidebar for the rest.", icon=":material/info:")
    st.stop()


def take_upload(files: list) -> tuple[str, str]:
    """Check and keep an upload: one ``.npz``/``.parquet`` and at most one ``.zip`` of its images.
    Returns ``(dataset, what it is)``; raises :class:`UserError` (one line) and keeps nothing."""
    from cl.own_embeddings import OwnEmbeddingsError, load_images, load_own_embeddings, store_own_embeddings

    tables = [f for f in files if Path(f.name).suffix.lower() in EMBEDDING_SUFFIXES]
    zips = [f for f in files if Path(f.name).suffix.lower() == ".zip"]
    others = [f.name for f in files if f not in tables and f not in zips]
    if others:
        raise OwnEmbeddingsError(f"{others[0]}: not an .npz, .parquet or .zip file")
    if len(tables) != 1 or len(zips) > 1:
        raise OwnEmbeddingsError(f"give one embeddings file (.npz or .parquet) and at most one .zip of its images; "
                                 f"got {len(tables)} embeddings file(s) and {len(zips)} zip(s)")
    lim = limits()
    data = tables[0].getvalue()
    own = load_own_embeddings(data, name=tables[0].name, limits=lim)
    images = None
    content = data
    if zips:
        archive = zips[0].getvalue()
        if len(archive) > lim.max_images_bytes:
            raise OwnEmbeddingsError(f"{zips[0].name}: {len(archive) / 2**20:,.1f} MiB is over the "
                                     f"{lim.max_images_bytes / 2**20:,.0f} MiB limit for the images")
        images = load_images(own, archive, lim)
        content = data + archive
    key = store_own_embeddings(own, images, folder(), content, keep=MAX_KEPT_DEMO if demo.enabled() else MAX_STORED)
    what = (f"{own.name}: {len(own):,} rows of {own.embeddings.shape[1]:,} dimensions, "
            + (f"{len(own.classes):,} classes" if own.has_labels else "no labels")
            + (", with their images" if images is not None else ", no images"))
    return PREFIX + key, what
