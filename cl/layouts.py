"""Shipped 2-D layouts of a checkpoint's test gallery, so a cold server draws a scatter at once.

For ``checkpoints/NAME.safetensors`` the file ``checkpoints/layouts/NAME.npz`` holds

- ``tsne``, ``umap``, ``pca``: ``(N, 2)`` float32 coordinates, seed 0 and the app's default
  parameters (:class:`cl.projection.ProjectionParams`), of the model's embeddings of its **test gallery**;
- ``labels``: the gallery's labels (``uint8``), a cheap check that the images are the same;
- ``meta``: a JSON string with the checkpoint's SHA-256, the gallery's SHA-256, the parameters
  and the library versions that computed it, and ``trust``: each map's trustworthiness,
  continuity and mean neighbours kept (:mod:`cl.maptrust`, ``k`` = 10, cosine in the embedding);
- ``neighbors``: ``(N, 10)`` int32, each point's 10 nearest other points in the embedding (cosine,
  rows of the layout, nearest first), and ``kept_tsne``, ``kept_umap``, ``kept_pca``: ``(N,)``
  uint8, how many of them are also among its 10 nearest on that map.

Files written before the map-trust figures lack ``trust``, ``neighbors`` and ``kept_*``; they
are read as before (the app then computes the figures itself), and :func:`add_trust` adds them
without recomputing the maps.

The test gallery is what the app shows for a data set when its full test split is not on the
server: the shipped ``checkpoints/galleries/D-test.npz`` (a seeded sample of the test split, see
:func:`cl.data.save_gallery`) for MNIST, Fashion-MNIST and CIFAR-10, and the whole bundled test
split for ``digits``. Because the gallery is ``sorted(default_rng(0).permutation(n_full)[:n])``
of the full test split, the same layout also serves a server that has the full split, for the
view "``n`` points, seed 0" (:func:`gallery_rows`).

:func:`load_layout` returns ``None`` when the file is missing or *stale* (the checkpoint's bytes
changed since the layout was computed), so a rebuilt model never shows an old picture.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .checkpoints import write_atomically
from .projection import METHODS, ProjectionParams

FORMAT = "contrastive-explorer-layout/1"


def layout_path(checkpoint_path: str | os.PathLike) -> Path:
    p = Path(checkpoint_path)
    return p.parent / "layouts" / f"{p.stem}.npz"


@lru_cache(maxsize=64)
def _weights_cached(path: str, size: int, mtime_ns: int) -> str:
    from cl.checkpoints import weights_sha256

    return weights_sha256(path)


def weights_digest(checkpoint_path: str | os.PathLike) -> str:
    """SHA-256 of the checkpoint's tensor bytes (memoised on path, size and modification time):
    a new card leaves the layouts valid, any changed weight makes them stale."""
    st = os.stat(checkpoint_path)
    return _weights_cached(str(Path(checkpoint_path).resolve()), st.st_size, st.st_mtime_ns)


def gallery_for(dataset: str):
    """The test images a layout is computed on (an :class:`cl.data.ImageSet`), or ``None``."""
    from cl.data import load_dataset, load_gallery

    if dataset == "digits":
        return load_dataset("digits", "test", download=False, allow_gallery=False)
    return load_gallery(dataset)


def gallery_images(dataset: str) -> np.ndarray:
    """The uint8 ``(N, C, H, W)`` images a layout was computed on, read with NumPy only."""
    from cl.data import gallery_path

    if dataset == "digits":
        return gallery_for("digits").images.numpy()
    with np.load(gallery_path(dataset), allow_pickle=False) as z:
        return z["images"]


def gallery_digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return h.hexdigest()


def gallery_rows(n_shown: int, n_layout: int) -> np.ndarray | None:
    """Rows of a test split of ``n_shown`` images that a gallery of ``n_layout`` images holds.

    ``n_shown == n_layout``: the split *is* the gallery. Otherwise the gallery is the seeded
    sample :func:`cl.data.save_gallery` drew from the full split (the same rule as the app's
    "``n`` points, seed 0" subset). Callers check the labels before trusting the rows.
    """
    if n_shown == n_layout:
        return np.arange(n_layout)
    if n_shown < n_layout:
        return None
    return np.sort(np.random.default_rng(0).permutation(n_shown)[:n_layout])


def build_layouts(checkpoint_path: str | os.PathLike, data_dir=None, progress=print,
                  methods: tuple[str, ...] = METHODS) -> Path:
    """Embed the checkpoint's test gallery and write its layouts (t-SNE, UMAP and PCA by default)."""
    from cl.checkpoints import load_checkpoint
    from cl.errors import DataUnavailableError
    from cl.evaluation import embed
    from cl.projection import project

    ckpt = Path(checkpoint_path)
    model, card = load_checkpoint(ckpt)
    dataset = card["data"]["dataset"]
    gallery = gallery_for(dataset)
    if gallery is None:
        raise DataUnavailableError(f"no test gallery for {dataset}: run scripts/build_checkpoints.py first")
    emb = embed(model, gallery.images)
    out = {}
    for method in methods:
        out[method] = project(emb, ProjectionParams(method)).astype(np.float32)
    labels = gallery.labels.numpy()
    meta = {"format": FORMAT, "checkpoint": ckpt.name, "weights_sha256": weights_digest(ckpt),
            "dataset": dataset, "gallery": gallery.source, "n": int(len(labels)),
            "gallery_sha256": gallery_digest(gallery.images.numpy(), labels), "params": ProjectionParams().settings(),
            "versions": _versions()}
    out.update(_trust_arrays(emb, out, meta))
    path = _write(ckpt, labels, meta, out)
    if progress:
        progress(f"layouts {path.name}: {', '.join(methods)} of {len(labels):,} {dataset} test-gallery images; "
                 + _trust_line(meta))
    return path


def _trust_arrays(emb: np.ndarray, maps: dict, meta: dict) -> dict:
    """Each map's figures into ``meta["trust"]``; the arrays ``neighbors`` and ``kept_METHOD``."""
    from cl.maptrust import map_trust

    arrays, trust = {}, {}
    for method in METHODS:
        if method in maps:
            r = map_trust(emb, maps[method])
            trust[method] = r.summary()
            arrays[f"kept_{method}"] = np.round(r.kept * r.k).astype(np.uint8)
            arrays["neighbors"] = r.neighbors.astype(np.int32)
    meta["trust"] = trust
    return arrays


def _trust_line(meta: dict) -> str:
    return "trustworthiness / continuity " + ", ".join(
        f"{m} {t['trustworthiness']:.3f} / {t['continuity']:.3f}" for m, t in meta.get("trust", {}).items())


def _write(ckpt: Path, labels: np.ndarray, meta: dict, arrays: dict) -> Path:
    path = layout_path(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = io.BytesIO()
    np.savez_compressed(blob, labels=labels.astype(np.uint8), meta=np.array(json.dumps(meta, sort_keys=True)),
                        **arrays)
    write_atomically(path, blob.getvalue())  # a reader sees the old layout or the new one
    _read.cache_clear()
    return path


def add_trust(checkpoint_path: str | os.PathLike, progress=print) -> Path | None:
    """Add the map-trust figures (:func:`_trust_arrays`) to a current layout file that lacks them,
    keeping its maps as they are; ``None`` when there is no current layout."""
    from cl.checkpoints import load_checkpoint
    from cl.evaluation import embed

    ckpt = Path(checkpoint_path)
    data = read_layouts(ckpt)
    if data is None:
        return None
    model, _card = load_checkpoint(ckpt)
    gallery = gallery_for(data["meta"]["dataset"])
    if gallery is None or not np.array_equal(gallery.labels.numpy(), data["labels"].astype(np.int64)):
        return None
    meta = dict(data["meta"])
    maps = {m: data[m] for m in METHODS if m in data}
    arrays = {**maps, **_trust_arrays(embed(model, gallery.images), maps, meta)}
    path = _write(ckpt, data["labels"], meta, arrays)
    if progress:
        progress(f"layouts {path.name}: " + _trust_line(meta))
    return path


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("numpy", "openTSNE", "umap-learn", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=64)
def _read(path: str, size: int, mtime_ns: int) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        data["meta"] = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError):
        return None
    return data


def read_layouts(checkpoint_path: str | os.PathLike) -> dict | None:
    """Every array of the checkpoint's layout file and its ``meta``, or ``None`` when the file is
    missing, unreadable or stale."""
    path = layout_path(checkpoint_path)
    try:
        st = os.stat(path)
        data = _read(str(path), st.st_size, st.st_mtime_ns)
        if data is None or data["meta"].get("weights_sha256") != weights_digest(checkpoint_path):
            return None
    except OSError:
        return None
    return data


def layout_trust(data: dict, method: str) -> dict | None:
    """A layout's stored figures for ``method`` (from :func:`read_layouts`): the
    :meth:`cl.maptrust.MapTrust.summary` plus ``kept`` (per point, 0-1) and ``neighbors``
    (layout rows), or ``None`` for a file written before they were stored."""
    trust = (data.get("meta") or {}).get("trust", {}).get(method)
    if trust is None or f"kept_{method}" not in data or "neighbors" not in data:
        return None
    return {**trust, "kept": data[f"kept_{method}"].astype(np.float32) / trust["k"], "neighbors": data["neighbors"]}


def load_layout(checkpoint_path: str | os.PathLike, method: str) -> np.ndarray | None:
    """The shipped ``(N, 2)`` layout for ``method``, or ``None`` (absent or stale)."""
    data = read_layouts(checkpoint_path)
    if data is None or method not in data:
        return None
    return data[method]


# ------------------------------------------------------------------ shipped evaluations
def evaluation_path(checkpoint_path: str | os.PathLike) -> Path:
    p = Path(checkpoint_path)
    return p.parent / "layouts" / f"{p.stem}.eval.json"


def build_evaluations(checkpoint_path: str | os.PathLike, data_dir=None, progress=print) -> Path:
    """Both protocols' full results (per-class accuracy, confusion matrix, each scored image's
    prediction) on the test splits a server may show for this model: the data directory's test
    split when it is there, and the shipped test gallery. The app shows them at once when its
    test split is byte-identical (``test_sha256``), instead of embedding and fitting a probe."""
    from cl.checkpoints import load_checkpoint
    from cl.data import load_dataset, portable_provenance
    from cl.errors import DataUnavailableError
    from cl.evaluation import embed, evaluate_embeddings

    ckpt = Path(checkpoint_path)
    model, card = load_checkpoint(ckpt)
    dataset = card["data"]["dataset"]
    splits = []
    try:
        splits.append((load_dataset(dataset, "test", data_dir, download=False, allow_gallery=False), True))
    except DataUnavailableError:
        pass
    gallery = gallery_for(dataset)
    if gallery is not None and not any(len(s) == len(gallery) and s.source == gallery.source for s, _ in splits):
        splits.append((gallery, False))
    train = train_emb = None
    try:
        train = load_dataset(dataset, "train", data_dir, download=False, allow_gallery=False)
    except DataUnavailableError:
        pass
    entries: list[dict] = []
    for test, with_standard in splits:
        test_emb = embed(model, test.images)
        results = {"paper": evaluate_embeddings(test_emb, test, "paper", seed=0)}
        if with_standard and train is not None:
            if train_emb is None:
                train_emb = embed(model, train.images)
            results["standard"] = evaluate_embeddings(test_emb, test, "standard", train_emb, train, seed=0)
        for r in results.values():
            r["fitted_on"] = portable_provenance(r["fitted_on"], data_dir)
            r["scored_on"] = portable_provenance(r["scored_on"], data_dir)
        entries.append({"test_sha256": gallery_digest(test.images.numpy(), test.labels.numpy()),
                        "n_test_split": len(test), "results": results})
    payload = {"format": FORMAT, "checkpoint": ckpt.name, "weights_sha256": weights_digest(ckpt),
               "dataset": dataset, "entries": entries}
    path = evaluation_path(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(payload, separators=(",", ":"), default=_json_default).encode())
    if progress:
        progress(f"evaluations {path.name}: " + "; ".join(
            f"{e['n_test_split']:,} test images ({', '.join(e['results'])})" for e in entries))
    return path


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load_evaluation(checkpoint_path: str | os.PathLike, protocol: str, test_sha256: str,
                    n_train: int | None = None) -> dict | None:
    """The shipped result for ``protocol`` on the test split with digest ``test_sha256`` (and, for
    the standard protocol, a train split of ``n_train`` images), or ``None``."""
    path = evaluation_path(checkpoint_path)
    try:
        payload = json.loads(path.read_text())
        if payload.get("weights_sha256") != weights_digest(checkpoint_path):
            return None
    except (OSError, ValueError):
        return None
    for entry in payload.get("entries", []):
        r = entry.get("results", {}).get(protocol)
        if entry.get("test_sha256") == test_sha256 and r is not None:
            if protocol == "standard" and r.get("fitted_on", {}).get("n_images") != n_train:
                return None
            return r
    return None
