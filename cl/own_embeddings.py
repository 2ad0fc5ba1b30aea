"""Embeddings made elsewhere (a ResNet, CLIP, anything) read in, checked, and explored without a model.

A file is ``.npz`` or ``.parquet``:

- ``.npz`` (what ``python -m cl export --format npz`` writes): array ``embeddings`` (N x D, numbers);
  optional ``labels`` (N integers, or N strings: each distinct string becomes a class), ``classes``
  (strings, the names of integer labels), ``origins`` (N strings: each row's image, its path
  relative to an image folder or zip). No pickled objects are read.
- ``.parquet``: a column ``embedding`` of fixed-length lists of numbers, or numeric columns
  ``e0 .. e{D-1}`` (what the csv export names them); optional ``label`` (integers or strings),
  ``class`` (strings: the class of each row, used when there is no ``label``) and ``origin``.

Every check happens before anything is kept, and each refusal is one line
(:class:`OwnEmbeddingsError`): the file's size, the declared shape before the values are read
(an ``.npz`` entry's header, a parquet file's metadata), NaN or infinite values, labels or origins
whose count does not match, labels outside the class names, origins that are absolute or climb
out with ``..``, and (with images) origins not found in the image folder or zip.

What needs a model and is therefore not offered for such a file: placing augmented views of an
image, embedding a new query image, training, the model's card.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .data import FOLDER_CHANNELS, FOLDER_SIZE, ImageSet
from .errors import UserError

OWN_PREFIX = "embeddings:"  # the data-set name of an embeddings file: embeddings:<file name>
NEEDS_A_MODEL = ("placing an image's augmented views on the map", "searching with a new image (upload, drawing, photo)",
                 "training and the model's card")


class OwnEmbeddingsError(UserError):
    """An embeddings file that cannot be used (nothing of it is kept)."""


@dataclass(frozen=True)
class EmbeddingLimits:
    """Bounds checked before the values are read; :meth:`demo` is what a hosted demo accepts."""

    max_file_bytes: int = 1024 * 2**20
    max_values: int = 200_000_000  # N x D: 800 MB of float32
    max_rows: int = 1_000_000
    max_dim: int = 16_384
    max_classes: int = 1_000
    max_image_bytes: int = 20 * 2**20  # one image in the folder or zip
    max_images_bytes: int = 1024 * 2**20  # all images named together, uncompressed

    @classmethod
    def demo(cls) -> EmbeddingLimits:
        return cls(max_file_bytes=100 * 2**20, max_values=25_000_000, max_rows=20_000, max_dim=4_096,
                   max_classes=200, max_image_bytes=5 * 2**20, max_images_bytes=200 * 2**20)


@dataclass
class OwnEmbeddings:
    """A checked embeddings file: rows of vectors, their classes and where each image is."""

    name: str  # the file's name, as a person calls it
    embeddings: np.ndarray  # float32 (N, D)
    labels: np.ndarray  # int64 (N,); -1 where a row has no label
    classes: list[str]
    origins: list[str]
    has_labels: bool
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dataset(self) -> str:
        return OWN_PREFIX + self.name

    def image_set(self, images=None) -> ImageSet:
        """The rows as an :class:`ImageSet` (what evaluation, retrieval and the map read): the
        images from :func:`load_images`, or none (a ``(N, 0, 0, 0)`` tensor) without them."""
        import torch

        if images is None:
            images = torch.zeros((len(self), 0, 0, 0), dtype=torch.uint8)
        return ImageSet(self.dataset, "test", images, torch.from_numpy(self.labels.copy()), list(self.classes),
                        f"embeddings file {self.name}", notes=list(self.notes), label=self.name,
                        origins=list(self.origins))

    def provenance(self) -> dict:
        return {"dataset": self.dataset, "file": self.name, "n_images": len(self), "dim": int(self.embeddings.shape[1]),
                "labelled": self.has_labels, "classes": len(self.classes)}


def load_own_embeddings(source: str | os.PathLike | bytes, name: str | None = None,
                        limits: EmbeddingLimits | None = None) -> OwnEmbeddings:
    """Read and check an ``.npz`` or ``.parquet`` embeddings file (a path, or an upload's bytes)."""
    limits = limits or EmbeddingLimits()
    if isinstance(source, (bytes, bytearray)):
        label = name or "embeddings"
        data = bytes(source)
        size = len(data)
    else:
        path = Path(source).expanduser()
        label = name or path.name
        if not path.is_file():
            raise OwnEmbeddingsError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
        size = path.stat().st_size
        data = b""
    if size > limits.max_file_bytes:
        raise OwnEmbeddingsError(f"{label}: {size / 2**20:,.1f} MiB is over the {limits.max_file_bytes / 2**20:,.0f} MiB "
                                 f"limit for an embeddings file")
    if not data:
        try:
            data = Path(source).expanduser().read_bytes()  # type: ignore[arg-type]
        except OSError as err:
            raise OwnEmbeddingsError(f"{label}: cannot read ({err.strerror})") from None
    suffix = PurePosixPath(label).suffix.lower()
    if data[:4] == b"PK\x03\x04" or suffix == ".npz":
        columns = _read_npz(data, label, limits)
    elif data[:4] == b"PAR1" or suffix == ".parquet":
        columns = _read_parquet(data, label, limits)
    else:
        raise OwnEmbeddingsError(f"{label}: not an .npz or .parquet file")
    return _checked(label, limits, **columns)


# --------------------------------------------------------------------------- .npz
def _read_npz(data: bytes, label: str, limits: EmbeddingLimits) -> dict:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise OwnEmbeddingsError(f"{label}: not a readable .npz file ({err})") from None
    with zf:
        arrays = {PurePosixPath(i.filename).stem: i for i in zf.infolist() if i.filename.endswith(".npy")}
        if "embeddings" not in arrays:
            found = ", ".join(sorted(arrays)) or "none"
            raise OwnEmbeddingsError(f"{label}: no array named 'embeddings' (arrays found: {found})")
        out = {}
        for key in ("embeddings", "labels", "classes", "origins"):
            if key in arrays:
                out[key] = _read_npy(zf, arrays[key], key, label, limits)
    return out


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, label: str, limits: EmbeddingLimits) -> np.ndarray:
    """One array of an ``.npz``, its declared shape and dtype checked before its values are read."""
    fmt = np.lib.format
    try:
        with zf.open(info) as fh:
            version = fmt.read_magic(fh)
            shape, _fortran, dtype = (fmt.read_array_header_1_0(fh) if version == (1, 0)
                                      else fmt.read_array_header_2_0(fh))
            if dtype.hasobject:
                raise OwnEmbeddingsError(f"{label}: array '{key}' holds Python objects; store numbers or strings")
            n_values = int(np.prod(shape)) if shape else 1
            if key == "embeddings" and n_values > limits.max_values:
                raise OwnEmbeddingsError(f"{label}: 'embeddings' is {' x '.join(map(str, shape))}, over the limit of "
                                         f"{limits.max_values:,} values")
            if n_values * max(dtype.itemsize, 1) > limits.max_file_bytes * 4:
                raise OwnEmbeddingsError(f"{label}: array '{key}' declares {n_values:,} values; too large")
        with zf.open(info) as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except OwnEmbeddingsError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise OwnEmbeddingsError(f"{label}: array '{key}' cannot be read ({err})") from None


# --------------------------------------------------------------------------- .parquet
def _read_parquet(data: bytes, label: str, limits: EmbeddingLimits) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.metadata
        names = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise OwnEmbeddingsError(f"{label}: not a readable .parquet file ({err})") from None
    vector_columns = [c for c in names if c.startswith("e") and c[1:].isdigit()]
    vector_columns.sort(key=lambda c: int(c[1:]))
    if "embedding" in names:
        width = None
    elif vector_columns:
        width = len(vector_columns)
        if [int(c[1:]) for c in vector_columns] != list(range(width)):
            raise OwnEmbeddingsError(f"{label}: columns e0 .. e{width - 1} must all be present")
    else:
        raise OwnEmbeddingsError(f"{label}: no column 'embedding' (lists of numbers) nor columns e0, e1, ...")
    if meta.num_rows > limits.max_rows:
        raise OwnEmbeddingsError(f"{label}: {meta.num_rows:,} rows is over the limit of {limits.max_rows:,}")
    uncompressed = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    if uncompressed > 4 * limits.max_values * 2:
        raise OwnEmbeddingsError(f"{label}: {uncompressed / 2**20:,.0f} MiB of values uncompressed; too large")
    wanted = (["embedding"] if width is None else vector_columns) + [c for c in ("label", "class", "origin") if c in names]
    try:
        table = pf.read(columns=wanted)
        if width is None:
            column = table.column("embedding").combine_chunks()
            if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)
                    or pa.types.is_large_list(column.type)):
                raise OwnEmbeddingsError(f"{label}: column 'embedding' must hold lists of numbers")
            lengths = set(column.value_lengths().to_numpy(zero_copy_only=False).tolist()) if len(column) else {0}
            if len(lengths) != 1 or None in lengths:
                raise OwnEmbeddingsError(f"{label}: the rows of 'embedding' have different lengths ({sorted(lengths)[:3]} ...)"
                                         if len(lengths) > 1 else f"{label}: 'embedding' has empty rows")
            emb = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), lengths.pop())
        else:
            emb = np.column_stack([table.column(c).to_numpy() for c in vector_columns])
    except OwnEmbeddingsError:
        raise
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise OwnEmbeddingsError(f"{label}: the embeddings cannot be read as numbers ({err})") from None
    out: dict = {"embeddings": emb}
    if "label" in names:
        out["labels"] = table.column("label").to_numpy(zero_copy_only=False)
    elif "class" in names:
        out["labels"] = table.column("class").to_numpy(zero_copy_only=False).astype(str)
    if "origin" in names:
        out["origins"] = table.column("origin").to_numpy(zero_copy_only=False)
    return out


# --------------------------------------------------------------------------- checks
def _checked(label: str, limits: EmbeddingLimits, embeddings, labels=None, classes=None, origins=None) -> OwnEmbeddings:
    emb = np.asarray(embeddings)
    if emb.ndim != 2:
        raise OwnEmbeddingsError(f"{label}: 'embeddings' must be a matrix (rows x dimensions); it is "
                                 f"{emb.ndim}-dimensional, shape {emb.shape}")
    n, dim = emb.shape
    if not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise OwnEmbeddingsError(f"{label}: 'embeddings' must hold numbers, not {emb.dtype}")
    if n < 3 or dim < 1:
        raise OwnEmbeddingsError(f"{label}: 'embeddings' is {n} x {dim}; need at least 3 rows and 1 dimension")
    if n > limits.max_rows or dim > limits.max_dim or n * dim > limits.max_values:
        raise OwnEmbeddingsError(f"{label}: {n:,} x {dim:,} embeddings is over the limit ({limits.max_rows:,} rows, "
                                 f"{limits.max_dim:,} dimensions, {limits.max_values:,} values)")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise OwnEmbeddingsError(f"{label}: {int(bad.sum()):,} rows hold NaN or infinite values (the first is row "
                                 f"{int(np.flatnonzero(bad)[0])})")
    if (np.abs(emb).max(axis=1) == 0).any():
        raise OwnEmbeddingsError(f"{label}: row {int(np.flatnonzero(np.abs(emb).max(axis=1) == 0)[0])} is all zeros; "
                                 f"cosine similarity needs a direction")
    names = None if classes is None else [str(c) for c in np.asarray(classes).reshape(-1).tolist()]
    if labels is None:
        y = np.full(n, -1, dtype=np.int64)
        names = names or []
        has_labels = False
    else:
        raw = np.asarray(labels).reshape(-1) if np.asarray(labels).ndim <= 1 else None
        if raw is None or len(raw) != n:
            raise OwnEmbeddingsError(f"{label}: {np.asarray(labels).size:,} labels for {n:,} embeddings; they must "
                                     f"match one to one")
        if np.issubdtype(raw.dtype, np.integer):
            y = raw.astype(np.int64)
            if (y < 0).any():
                raise OwnEmbeddingsError(f"{label}: labels must be 0 or more (row {int(np.flatnonzero(y < 0)[0])} is "
                                         f"{int(y[y < 0][0])})")
            names = names or [str(k) for k in range(int(y.max()) + 1)]
            if int(y.max()) >= len(names):
                raise OwnEmbeddingsError(f"{label}: label {int(y.max())} has no class name ({len(names)} classes given)")
        elif raw.dtype.kind in "US" or raw.dtype == object:
            text = np.array([str(v) for v in raw.tolist()])
            if names:
                unknown = sorted(set(text.tolist()) - set(names))
                if unknown:
                    raise OwnEmbeddingsError(f"{label}: labels {unknown[:3]} are not among the class names")
            else:
                names = sorted(set(text.tolist()))
            lookup = {c: k for k, c in enumerate(names)}
            y = np.array([lookup[t] for t in text.tolist()], dtype=np.int64)
        else:
            raise OwnEmbeddingsError(f"{label}: labels must be integers or strings, not {raw.dtype}")
        has_labels = True
    if len(names) > limits.max_classes:
        raise OwnEmbeddingsError(f"{label}: {len(names):,} classes is over the limit of {limits.max_classes:,}")
    if origins is None:
        where = [f"row {i}" for i in range(n)]
    else:
        raw_origins = np.asarray(origins).reshape(-1)
        if len(raw_origins) != n:
            raise OwnEmbeddingsError(f"{label}: {len(raw_origins):,} image paths for {n:,} embeddings; they must match "
                                     f"one to one")
        where = [str(o) for o in raw_origins.tolist()]
        for i, o in enumerate(where):
            why = unsafe_path(o)
            if why:
                raise OwnEmbeddingsError(f"{label}: image path {o!r} (row {i}) {why}; paths are relative to the "
                                         f"uploaded images")
    notes = [] if has_labels else ["no labels: accuracies and class colours are not available"]
    return OwnEmbeddings(PurePosixPath(label.replace("\\", "/")).name, emb, y, names, where, has_labels, notes)


def unsafe_path(path: str) -> str | None:
    """Why a path taken from a file cannot name an image inside a folder or zip, or ``None``."""
    norm = path.replace("\\", "/")
    if not norm or "\x00" in norm:
        return "is empty or holds a NUL byte"
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "is absolute"
    if any(part == ".." for part in norm.split("/")):
        return "climbs out with '..'"
    return None


# --------------------------------------------------------------------------- images
def load_images(own: OwnEmbeddings, source: str | os.PathLike | bytes, limits: EmbeddingLimits | None = None,
                size: int = FOLDER_SIZE):
    """Each row's image from a folder or a ``.zip`` (path or bytes), by its origin, as uint8
    ``(N, 3, size, size)``; a zip with one top folder around everything is read inside it.
    Refuses (one line) when a path is missing or an image cannot be decoded."""
    import torch

    from .errors import ImageInputError
    from .images import decode_image_bytes, fit_to_format

    limits = limits or EmbeddingLimits()
    if any(o == f"row {i}" for i, o in enumerate(own.origins[:1])):
        raise OwnEmbeddingsError(f"{own.name}: has no image paths ('origins'), so its images cannot be found")
    read = _zip_reader(source, own, limits) if _is_zip(source) else _folder_reader(Path(source))  # type: ignore[arg-type]
    images = []
    for i, origin in enumerate(own.origins):
        raw = read(origin)
        if raw is None:
            raise OwnEmbeddingsError(f"{own.name}: image {origin!r} (row {i}) is not among the uploaded images")
        try:
            pil = decode_image_bytes(raw, name=origin, max_bytes=limits.max_image_bytes)
        except ImageInputError as err:
            raise OwnEmbeddingsError(f"{own.name}: image {origin!r} (row {i}) cannot be used: {err}") from None
        images.append(fit_to_format(pil, channels=FOLDER_CHANNELS, size=size, mode="resize"))
    return torch.stack(images)


def _is_zip(source) -> bool:
    if isinstance(source, (bytes, bytearray)):
        return True
    return Path(source).is_file()


def _zip_reader(source, own: OwnEmbeddings, limits: EmbeddingLimits):
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise OwnEmbeddingsError(f"the images: not a readable zip archive ({err})") from None
    names = {i.filename.replace("\\", "/"): i for i in infos if not i.filename.startswith("__MACOSX/")}
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):  # one folder around everything (zipping a folder)
        top = tops.pop() + "/"
        if not any(o.startswith(top) for o in own.origins[:1]):
            names = {n[len(top):]: i for n, i in names.items()}
    wanted = [names[o] for o in own.origins if o in names]
    if sum(i.file_size for i in wanted) > limits.max_images_bytes:
        raise OwnEmbeddingsError(f"the images named are over {limits.max_images_bytes / 2**20:,.0f} MiB uncompressed")

    def read(origin: str) -> bytes | None:
        info = names.get(origin.replace("\\", "/"))
        if info is None:
            return None
        if info.file_size > limits.max_image_bytes:
            raise OwnEmbeddingsError(f"image {origin!r} is {info.file_size / 2**20:.1f} MiB, over the "
                                     f"{limits.max_image_bytes / 2**20:.0f} MiB limit per image")
        with zf.open(info) as fh:
            return fh.read(info.file_size + 1)[: info.file_size]

    return read


def _folder_reader(root: Path):
    if not root.is_dir():
        raise OwnEmbeddingsError(f"{root}: no such folder or zip")
    base = root.resolve()

    def read(origin: str) -> bytes | None:
        path = (base / origin).resolve()
        if base not in path.parents or not path.is_file():
            return None
        return path.read_bytes()

    return read


# --------------------------------------------------------------------------- kept on a server
# The app keeps a checked file (and its images, decoded) as one plain .npz named by the content
# hash of what was uploaded: a link ``dataset=embeddings:ID`` reopens it while it is kept.
STORED_ID = re.compile(r"[0-9a-f]{16}")
MAX_STORED = 50  # files kept in the folder; the least recently stored go first


def store_own_embeddings(own: OwnEmbeddings, images, folder: str | os.PathLike, content: bytes,
                         keep: int = MAX_STORED) -> str:
    """Keep a checked file (``images``: uint8 ``(N, C, H, W)`` or ``None``) in ``folder`` under
    the SHA-256 of ``content`` (the uploaded bytes); returns that id. Written atomically; the
    folder holds at most ``keep`` files."""
    import hashlib
    import tempfile

    folder = Path(folder)
    key = hashlib.sha256(content).hexdigest()[:16]
    arrays: dict[str, Any] = {"embeddings": own.embeddings, "labels": own.labels, "classes": np.asarray(own.classes, dtype=str),
              "origins": np.asarray(own.origins, dtype=str), "name": np.asarray(own.name),
              "has_labels": np.asarray(own.has_labels)}
    if images is not None:
        arrays["images"] = np.asarray(images.numpy() if hasattr(images, "numpy") else images, dtype=np.uint8)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".own.", suffix=".part", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, folder / f"{key}.npz")
    except OSError as err:
        raise OwnEmbeddingsError(f"{own.name}: cannot be stored on the server ({err.strerror or err})") from None
    stored = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime)
    for old in stored[: max(0, len(stored) - keep)]:
        if old.stem != key:
            old.unlink(missing_ok=True)
    return key


def stored_path(key: str, folder: str | os.PathLike) -> Path | None:
    """The kept file of id ``key``, or ``None`` (not an id, or no longer kept)."""
    if not STORED_ID.fullmatch(key):
        return None
    path = Path(folder) / f"{key}.npz"
    return path if path.is_file() else None


def open_stored(path: str | os.PathLike):
    """``(OwnEmbeddings, images or None)`` of a file :func:`store_own_embeddings` wrote."""
    import torch

    try:
        with np.load(path, allow_pickle=False) as z:
            own = OwnEmbeddings(str(z["name"]), z["embeddings"].astype(np.float32), z["labels"].astype(np.int64),
                                [str(c) for c in z["classes"].tolist()], [str(o) for o in z["origins"].tolist()],
                                bool(z["has_labels"]))
            images = torch.from_numpy(z["images"].copy()) if "images" in z.files else None
    except (OSError, ValueError, KeyError) as err:
        raise OwnEmbeddingsError(f"the kept embeddings file cannot be read ({err})") from None
    if not own.has_labels:
        own.notes.append("no labels: accuracies and class colours are not available")
    return own, images
