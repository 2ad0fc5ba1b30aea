"""Data sets as uint8 tensors in memory.

Every loader returns an :class:`ImageSet`: ``images`` is a ``uint8`` tensor ``(N, C, H, W)``,
``labels`` an ``int64`` tensor ``(N,)``. Keeping uint8 in memory is 4x smaller than float and
lets augmentation run batched on tensors (see :mod:`cl.augmentations`).

Names: ``digits`` (scikit-learn's bundled 8x8 digits, no file needed), ``mnist``,
``fashion-mnist``, ``cifar10`` and ``folder:PATH`` (one sub-folder per class; ``PATH/train`` and
``PATH/test`` are used when present, otherwise each class is split 80/20 by a hash of each file's
path in the set, so a folder and its zip give the same split: :func:`split_by_path`).
``folder:PATH.zip`` is the same as an archive: it is checked and extracted into the cache by
:mod:`cl.archive` first; ``archive:ID`` names an archive already extracted there (what the app
uses for an uploaded image set: the name holds no path).

The data directory is ``--data-dir``, else ``$CL_DATA_DIR``, else ``./data``. Files are looked up
in torchvision's layout; when they are missing we try torchvision's download, and when that
fails (offline) we raise :class:`~cl.errors.DataUnavailableError` naming the files expected.
When the full test split is unavailable the small gallery shipped in ``checkpoints/galleries``
is used instead, and its provenance says so.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, DataUnavailableError
from .imagefolders import (  # noqa: F401 - re-exported: cl.data is where callers look for them
    ARCHIVE_PREFIX,
    FOLDER_CHANNELS,
    FOLDER_PREFIX,
    FOLDER_SIZE,
    IMAGE_EXTENSIONS,
    TEST_SHARE,
    held_out_count,
)

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

if TYPE_CHECKING:  # torch is imported where tensors are made: listing data sets needs none
    import torch

GALLERY_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "galleries"


@dataclass(frozen=True)
class DatasetSpec:
    """What a named data set looks like, before any file is read."""

    name: str
    channels: int
    size: int
    classes: tuple[str, ...]
    n_train_full: int
    n_test_full: int
    description: str
    dark_background: bool = True  # digits are light strokes on black


SPECS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", 1, 28, tuple(MNIST_CLASSES), 1257, 540,
                          "scikit-learn's 8x8 handwritten digits, upscaled to 20x20 and padded to 28x28"),
    "mnist": DatasetSpec("mnist", 1, 28, tuple(MNIST_CLASSES), 60000, 10000, "MNIST handwritten digits"),
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, 28, tuple(FASHION_CLASSES), 60000, 10000,
                                 "Zalando Fashion-MNIST clothing images"),
    "cifar10": DatasetSpec("cifar10", 3, 32, tuple(CIFAR10_CLASSES), 50000, 10000,
                           "CIFAR-10 32x32 colour photos", dark_background=False),
}


@dataclass
class ImageSet:
    """Images of one split of one data set, with where they came from."""

    name: str
    split: str
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]
    source: str
    n_full: int | None = None  # size of the complete split, when known
    notes: list[str] = field(default_factory=list)
    label: str | None = None  # how a person names it (an uploaded archive: its file name); default ``name``
    # Where each image came from, in row order: its path in the folder or archive, or for a
    # built-in set ``<set>/<split>/<index>`` (see docs/app.md, "Where an image came from").
    origins: list[str] | None = None

    def __post_init__(self) -> None:
        if self.origins is None:
            self.origins = _index_origins(self.name, self.split, range(len(self)))
        elif len(self.origins) != len(self):
            raise ValueError(f"{len(self.origins)} origins for {len(self)} images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def complete(self) -> bool:
        return self.n_full is None or len(self) >= self.n_full

    def provenance(self) -> dict:
        """Which data a figure came from: set, split, count, completeness, source."""
        return {
            "dataset": self.name,
            "split": self.split,
            "n_images": len(self),
            "n_full": self.n_full,
            "complete": self.complete,
            "source": self.source,
            "notes": list(self.notes),
            **({"label": self.label} if self.label else {}),
        }

    def describe(self) -> str:
        """One human line, e.g. ``mnist train, 17,387 of 60,000 images (partial)``."""
        text = f"{self.label or self.name} {self.split}, {len(self):,}"
        if self.n_full and not self.complete:
            text += f" of {self.n_full:,} images (partial)"
        else:
            text += " images"
        return text

    def subset(self, indices) -> ImageSet:
        import torch

        idx = torch.as_tensor(indices, dtype=torch.long)
        origins = self.origins or []
        return ImageSet(self.name, self.split, self.images[idx], self.labels[idx], self.classes,
                        self.source, None, self.notes + [f"subset of {len(idx)} images"], self.label,
                        [origins[i] for i in idx.tolist()])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]`` (the study's normalisation: mean 0.5, std 0.5)."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` if given, else ``$CL_DATA_DIR``, else ``./data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    return Path(os.environ.get("CL_DATA_DIR") or "data").expanduser()


def portable_provenance(prov: dict | None, data_dir=None) -> dict | None:
    """Provenance whose ``source`` names the data relative to the data directory
    (``<data-dir>/MNIST/raw``): a card or a shipped file must not carry the machine's paths."""
    if prov is None:
        return None
    out = dict(prov)
    src = str(out.get("source", ""))
    try:
        root = str(resolve_data_dir(data_dir).resolve())
    except OSError:
        return out
    if src == root or src.startswith(root + os.sep):
        out["source"] = "<data-dir>" + src[len(root):].replace(os.sep, "/")
    return out


# --------------------------------------------------------------------------- data sources
class DataSource:
    """One kind of data set behind a name: what it looks like (:meth:`spec`), its images
    (:meth:`load`) and, where that is cheap, how many there are (:meth:`count`)."""

    name: str

    def spec(self) -> DatasetSpec:
        raise NotImplementedError

    def load(self, split: str, root: Path, download: bool) -> ImageSet:
        raise NotImplementedError

    def count(self, split: str, root: Path) -> tuple[int, str, bool] | None:
        """``(n_images, source, complete)`` read from headers and listings, or ``None`` when
        only loading can tell."""
        return None


class DigitsSource(DataSource):
    """scikit-learn's bundled 8x8 digits: no file needed."""

    name = "digits"

    def spec(self) -> DatasetSpec:
        return SPECS["digits"]

    def load(self, split: str, root: Path, download: bool) -> ImageSet:
        return _load_digits(split)

    def count(self, split: str, root: Path) -> tuple[int, str, bool]:
        return _full_size(self.spec(), split), DIGITS_SOURCE, True


class TorchvisionSource(DataSource):
    """MNIST, Fashion-MNIST or CIFAR-10 in torchvision's layout under the data directory."""

    def __init__(self, name: str):
        self.name = name

    def spec(self) -> DatasetSpec:
        return SPECS[self.name]

    def load(self, split: str, root: Path, download: bool) -> ImageSet:
        if self.name in IDX_FOLDERS:
            return _load_idx_set(self.name, split, root, download)
        return _load_cifar10(split, root, download)

    def count(self, split: str, root: Path) -> tuple[int, str, bool] | None:
        full = _full_size(self.spec(), split)
        if self.name in IDX_FOLDERS:
            found = _locate_idx(self.name, split, root)
            if found and not any(f.suffix == ".gz" for f in found):
                n = min(_idx_count(found[0], 28 * 28), _idx_count(found[1], 1))
                return n, str(found[0].parent), n >= full
        elif not (root / "cifar-10-batches-py").is_dir():
            subset = root / "cifar10-subset" / split
            n = sum(len(_image_files(subset / cls)) for cls in CIFAR10_CLASSES)
            if n:
                return n, str(subset), n >= full
        return None


class FolderSource(DataSource):
    """``folder:PATH``: one sub-folder per class (or ``train/`` and ``test/`` with class folders);
    a ``.zip`` path is read as an archive (:class:`ArchiveSource`) after extraction."""

    def __init__(self, name: str):
        self.name = name
        self.path = Path(name[len(FOLDER_PREFIX):]).expanduser()

    def spec(self) -> DatasetSpec:
        return DatasetSpec(self.name, FOLDER_CHANNELS, FOLDER_SIZE, (), 0, 0, f"image folder {self.path}",
                           dark_background=False)

    def load(self, split: str, root: Path, download: bool) -> ImageSet:
        if self.path.suffix.lower() == ".zip" or self.path.is_file():
            from .archive import extract_archive

            # Extracted once per content into the cache; a changed file is a new archive.
            return ArchiveSource(ARCHIVE_PREFIX + extract_archive(self.path).manifest.id).load_as(self.name, split)
        return _load_folder(self.name, self.path, split)


class ArchiveSource(DataSource):
    """``archive:ID``: an archive :mod:`cl.archive` extracted into the cache (an uploaded image set)."""

    def __init__(self, name: str):
        self.name = name
        self.archive_id = name[len(ARCHIVE_PREFIX):]

    def spec(self) -> DatasetSpec:
        from .archive import read_manifest

        manifest = read_manifest(self.archive_id)
        return DatasetSpec(self.name, FOLDER_CHANNELS, FOLDER_SIZE, tuple(manifest.classes), 0, 0,
                           f"image archive {manifest.archive_name}", dark_background=False)

    def load(self, split: str, root: Path, download: bool) -> ImageSet:
        return self.load_as(self.name, split)

    def load_as(self, name: str, split: str) -> ImageSet:
        return _load_archive(name, self.archive_id, split)


def data_source(name: str) -> DataSource:
    """The source behind a data-set name; one clear error for an unknown name."""
    if name == "digits":
        return DigitsSource()
    if name in SPECS:
        return TorchvisionSource(name)
    if name.startswith(FOLDER_PREFIX):
        return FolderSource(name)
    if name.startswith(ARCHIVE_PREFIX):
        return ArchiveSource(name)
    raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(SPECS)}, {FOLDER_PREFIX}PATH or "
                      f"{FOLDER_PREFIX}PATH.zip")


def _full_size(spec: DatasetSpec, split: str) -> int:
    return spec.n_train_full if split == "train" else spec.n_test_full


def dataset_spec(name: str) -> DatasetSpec:
    return data_source(name).spec()


def load_dataset(name: str, split: str = "train", data_dir=None, download: bool = True,
                 allow_gallery: bool = True) -> ImageSet:
    """Load one split of a named data set as uint8 tensors.

    Raises :class:`DataUnavailableError` with instructions when the files are missing and cannot
    be downloaded. With ``allow_gallery`` a missing *test* split falls back to the shipped gallery.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; use train or test")
    root = resolve_data_dir(data_dir)  # an unknown name is refused by data_source, inside (never cached)
    try:
        return _load_cached(name, split, str(root.resolve()), download)
    except DataUnavailableError:
        if allow_gallery and split == "test" and name in SPECS:
            gallery = load_gallery(name)
            if gallery is not None:
                return gallery
        raise


@lru_cache(maxsize=8)
def _load_cached(name: str, split: str, root: str, download: bool) -> ImageSet:
    return data_source(name).load(split, Path(root), download)


def clear_cache() -> None:
    _load_cached.cache_clear()


def _index_origins(name: str, split: str, indices) -> list[str]:
    """Where images of a built-in set come from: ``<set>/<split>/<index in the split>``."""
    return [f"{name}/{split}/{int(i):05d}" for i in indices]


# --------------------------------------------------------------------------- digits
def _load_digits(split: str) -> ImageSet:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    # MNIST digits sit in a 20x20 box centred on a 28x28 canvas; doing the same keeps digits
    # comparable with MNIST and lets the study's encoder (28x28 input) run unchanged.
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False, antialias=True)
    x = F.pad(x, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    idx = np.arange(len(y))
    spec = SPECS["digits"]
    train_idx, test_idx = train_test_split(idx, test_size=spec.n_test_full, stratify=bunch.target, random_state=0)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    # The index in load_digits(): the split is ours, the numbering is scikit-learn's.
    return ImageSet("digits", split, x[chosen].contiguous(), y[chosen], list(MNIST_CLASSES),
                    DIGITS_SOURCE, _full_size(spec, split), origins=[f"digits/{int(i):04d}" for i in chosen])


# --------------------------------------------------------------------------- IDX (MNIST family)
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}  # torchvision's folder names
DIGITS_SOURCE = "sklearn.datasets.load_digits (bundled with scikit-learn)"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise DataUnavailableError(f"{path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataUnavailableError(f"{path} is not a uint8 IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if body.size < expected:
        raise DataUnavailableError(f"{path} is truncated: {body.size} of {expected} bytes")
    return body[:expected].reshape(dims)


def _find_file(candidates: list[Path]) -> Path | None:
    for base in candidates:
        for path in (base, base.with_name(base.name + ".gz")):
            if path.is_file():
                return path
    return None


def _locate_idx(name: str, split: str, root: Path) -> tuple[Path, Path] | None:
    """The ``(images, labels)`` IDX files of a split (plain or ``.gz``), or ``None``."""
    image_file, label_file = _IDX_FILES[split]
    bases = [root / IDX_FOLDERS[name] / "raw"]
    if name == "fashion-mnist":  # Debian's dataset-fashion-mnist package
        bases.append(Path("/usr/share/datasets/fashion-mnist"))
    for base in bases:
        img, lab = _find_file([base / image_file]), _find_file([base / label_file])
        if img and lab:
            return img, lab
    return None


def _load_idx_set(name: str, split: str, root: Path, download: bool) -> ImageSet:
    spec = SPECS[name]
    image_file, label_file = _IDX_FILES[split]
    folder = IDX_FOLDERS[name]
    found = _locate_idx(name, split, root)
    if found is None and download:
        _try_torchvision_download(name, root)
        found = _locate_idx(name, split, root)
    if found is None:
        raise DataUnavailableError(
            f"{name} {split} split not found: expected {root / folder / 'raw' / image_file} and "
            f"{label_file} (torchvision layout). Run once with internet access to download it, or "
            f"copy the files there and pass --data-dir / set CL_DATA_DIR")
    import torch

    images = _read_idx(found[0])
    labels = _read_idx(found[1]).astype(np.int64)
    n = min(len(images), len(labels))
    full = _full_size(spec, split)
    notes = [] if n >= full else [f"partial {split} split: {n:,} of {full:,} images"]
    return ImageSet(name, split, torch.from_numpy(images[:n].copy())[:, None], torch.from_numpy(labels[:n]),
                    list(spec.classes), str(found[0].parent), full, notes, origins=_index_origins(name, split, range(n)))


def _try_torchvision_download(name: str, root: Path) -> None:
    """Best effort: torchvision's own downloader. Offline it fails; the caller then explains."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception:  # noqa: BLE001 - any network or disk failure means "not available"
        pass


# --------------------------------------------------------------------------- CIFAR-10
_CIFAR_BATCH_FILE = re.compile(r"^(?:test_batch|data_batch_([1-5]))_(\d+)\.png$")


def _cifar_origin(split: str, path: str) -> str:
    """A file of the offline CIFAR-10 subset (``cat/test_batch_00046.png``) named as the full
    set names it (``cifar10/test/00046``); any other file keeps its path."""
    m = _CIFAR_BATCH_FILE.match(path.rsplit("/", 1)[-1])
    if not m:
        return f"cifar10/{split}/{path}"
    index = int(m.group(2)) + (10000 * (int(m.group(1)) - 1) if m.group(1) else 0)
    return f"cifar10/{split}/{index:05d}"


def _load_cifar10(split: str, root: Path, download: bool) -> ImageSet:
    spec = SPECS["cifar10"]
    full = _full_size(spec, split)
    batches = root / "cifar-10-batches-py"
    subset = root / "cifar10-subset" / split
    if not batches.is_dir() and not subset.is_dir() and download:
        _try_torchvision_download("cifar10", root)
    if batches.is_dir():
        import torch
        import torchvision.datasets as tvd

        ds = tvd.CIFAR10(root=str(root), train=(split == "train"), download=False)
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        labels = torch.as_tensor(ds.targets, dtype=torch.long)
        return ImageSet("cifar10", split, images, labels, list(CIFAR10_CLASSES), str(batches), full,
                        origins=_index_origins("cifar10", split, range(len(labels))))
    if subset.is_dir():
        images, labels, _, files = _read_class_folders(subset, list(CIFAR10_CLASSES))
        n = len(labels)
        notes = [f"partial {split} split: {n:,} of {full:,} images (cifar10-subset folder)"]
        return ImageSet("cifar10", split, images, labels, list(CIFAR10_CLASSES), str(subset), full, notes,
                        origins=[_cifar_origin(split, f) for f in files])
    raise DataUnavailableError(
        f"cifar10 {split} split not found: expected {batches} (torchvision layout) or "
        f"{subset}/<class>/*.png. Run once with internet access to download it, or copy the files "
        f"there and pass --data-dir / set CL_DATA_DIR")


# --------------------------------------------------------------------------- image folders
def _read_class_folders(path: Path, classes: list[str] | None, channels: int = FOLDER_CHANNELS,
                        size: int = FOLDER_SIZE):
    """Images of ``path/<class>/*`` in class order, then file-name order: ``(images, labels,
    classes, files)``, each file as ``<class folder>/<file name>``."""
    import torch

    from .images import decode_image_file, fit_to_format

    if classes is None:
        classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels, files = [], [], []
    for label, cls in enumerate(classes):
        for file in _image_files(path / cls):
            pil = decode_image_file(file)
            images.append(fit_to_format(pil, channels=channels, size=size, mode="resize"))
            labels.append(label)
            files.append(f"{cls}/{file.name}")
    if not images:
        raise DataUnavailableError(f"no images found under {path} (expected {path}/<class>/*.png)")
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.long), classes, files


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by extension), sorted; none if it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)


SPLIT_NOTE = "stratified 80/20 split by a hash of each file's path in the set"  # 20 %: TEST_SHARE


def _load_folder(name: str, path: Path, split: str) -> ImageSet:
    if not path.is_dir():
        raise DataUnavailableError(f"image folder {path} does not exist")
    if (path / "train").is_dir() and (path / "test").is_dir():
        classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
        images, labels, classes, files = _read_class_folders(path / split, classes)
        return ImageSet(name, split, images, labels, classes, str(path / split),
                        origins=[f"{split}/{f}" for f in files])
    images, labels, classes, files = _read_class_folders(path, None)
    # No split of its own: split by what the images are called, so the same images give the same
    # split however they arrive (this folder, or its zip uploaded or named folder:PATH.zip).
    mask = split_by_path(files, labels.numpy(), len(classes))
    keep = _split_keep(mask, split)
    return ImageSet(name, split, images[keep], labels[keep], classes, str(path),
                    notes=[f"{SPLIT_NOTE} (a folder without train/test)"], origins=_kept(files, mask, split))


def _kept(items: list[str], test_mask: np.ndarray, split: str) -> list[str]:
    return [x for x, is_test in zip(items, test_mask, strict=True) if is_test == (split == "test")]


def _load_archive(name: str, archive_id: str, split: str) -> ImageSet:
    """An archive extracted by :mod:`cl.archive`: class names come from its manifest (the folders
    on disk have names we chose), and its provenance names the archive, not the cache folder.
    Each image's origin is its path in the archive (below any one top folder around everything)."""
    from .archive import archive_root, read_manifest

    manifest = read_manifest(archive_id)
    root = archive_root(archive_id)
    folders = [manifest.folders.get(c, c) for c in manifest.classes]
    source = f"archive {manifest.archive_name} (sha256 {manifest.sha256[:16]})"
    skipped = sum(manifest.skipped.values())
    notes = ([f"{skipped} archive entries skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(manifest.skipped.items()))]
             if skipped else [])
    if manifest.layout == "train-test":
        images, labels, _, files = _read_class_folders(root / split, folders)
        return ImageSet(name, split, images, labels, list(manifest.classes), source, notes=notes,
                        label=manifest.archive_name,
                        origins=[f"{split}/{manifest.sources.get(f, f)}" for f in files])
    images, labels, _, files = _read_class_folders(root, folders)
    paths = [manifest.sources.get(f, f) for f in files]
    if manifest.sources:  # each file's path in the archive: the same split as the same folder's
        mask, how = split_by_path(paths, labels.numpy(), len(folders)), SPLIT_NOTE
    else:  # extracted before the manifest kept the paths: its split stays what it was
        mask, how = _seeded_split_mask(labels.numpy(), len(folders)), "seeded stratified 80/20 split"
    keep = _split_keep(mask, split)
    return ImageSet(name, split, images[keep], labels[keep], list(manifest.classes), source,
                    notes=notes + [f"{how} (an archive without train/test)"], label=manifest.archive_name,
                    origins=_kept(paths, mask, split))


def split_by_path(paths: list[str], labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The stratified 80/20 split of a set without one, as a function of the images' paths in the
    set (``<class>/<file>``): per class, the :func:`held_out_count` images whose SHA-256 of the
    NFC-normalised path is smallest are the test images. ``True`` marks a test image. Renaming
    the set's folder or zipping it changes nothing."""
    import hashlib
    import unicodedata

    keys = [hashlib.sha256(unicodedata.normalize("NFC", p).encode()).hexdigest() for p in paths]
    return _test_mask(labels, n_classes, lambda idx: sorted(idx, key=lambda i: keys[i]))


def _seeded_split_mask(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """The seeded, stratified 80/20 split of archives extracted before their manifests kept each
    file's path: ``True`` marks a test image."""
    rng = np.random.default_rng(0)

    def shuffled(idx: np.ndarray) -> np.ndarray:
        rng.shuffle(idx)
        return idx

    return _test_mask(labels, n_classes, shuffled)


def _test_mask(labels: np.ndarray, n_classes: int, order) -> np.ndarray:
    """Per class, the first :func:`held_out_count` images in ``order(indices)`` are test images."""
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in range(n_classes):
        ranked = order(np.flatnonzero(labels == c))
        test_mask[np.asarray(ranked[:held_out_count(len(ranked))], dtype=np.int64)] = True
    return test_mask


def _split_keep(test_mask: np.ndarray, split: str):
    """The rows of ``split`` under a test mask, as a torch bool mask."""
    import torch

    return torch.from_numpy(test_mask if split == "test" else ~test_mask)


# --------------------------------------------------------------------------- galleries
def gallery_path(name: str) -> Path:
    return GALLERY_DIR / f"{name}-test.npz"


def load_gallery(name: str) -> ImageSet | None:
    """The small test gallery shipped for the demo, or ``None`` when there is none."""
    path = gallery_path(name)
    if not path.is_file():
        return None
    import torch

    with np.load(path, allow_pickle=False) as npz:
        images = torch.from_numpy(npz["images"].copy())
        labels = torch.from_numpy(npz["labels"].astype(np.int64))
        n_full = int(npz["n_full"]) if "n_full" in npz else None
        # each image's origin in the full set; a gallery without them numbers its own images
        origins = ([str(o) for o in npz["origins"]] if "origins" in npz
                   else [f"{name}/test-gallery/{i:05d}" for i in range(len(labels))])
    spec = SPECS[name]
    return ImageSet(name, "test", images, labels, list(spec.classes), f"shipped gallery {path.name}",
                    n_full, [f"shipped gallery: {len(labels):,} test images, the full data set was not found"],
                    origins=origins)


@lru_cache(maxsize=4)
def gallery_origins(name: str) -> tuple[str, ...]:
    """Where each image of a shipped gallery came from (its ``origins``), without its images."""
    gallery = load_gallery(name) if gallery_path(name).is_file() else None
    return tuple(gallery.origins or []) if gallery is not None else ()


def save_gallery(image_set: ImageSet, n: int, seed: int = 0) -> Path:
    """Write a stratified sample of ``n`` test images as a compressed ``.npz`` gallery."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(image_set))[:n]
    idx.sort()
    GALLERY_DIR.mkdir(parents=True, exist_ok=True)
    path = gallery_path(image_set.name)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=image_set.images[idx].numpy(), labels=image_set.labels[idx].numpy().astype(np.uint8),
                        n_full=np.int64(image_set.n_full or len(image_set)),
                        origins=np.array([(image_set.origins or [])[i] for i in idx], dtype=str))
    os.replace(tmp, path)
    return path


def dataset_status(name: str, data_dir=None) -> dict:
    """Whether a data set is usable here, without downloading anything."""
    spec = dataset_spec(name)
    row: dict[str, Any] = {"name": name, "channels": spec.channels, "size": spec.size, "classes": len(spec.classes),
           "n_train_full": spec.n_train_full, "n_test_full": spec.n_test_full, "description": spec.description}
    for split in ("train", "test"):
        try:
            n, source, complete = _count_split(name, split, data_dir)
            row[f"n_{split}"] = n
            row[f"{split}_source"] = source
            row[f"{split}_complete"] = complete
        except DataUnavailableError as err:
            row[f"n_{split}"] = 0
            row[f"{split}_source"] = None
            row[f"{split}_error"] = str(err)
    row["available"] = row["n_train"] > 0
    return row


def _count_split(name: str, split: str, data_dir=None) -> tuple[int, str, bool]:
    """``(n_images, source, complete)`` of a split, read from headers and file listings.

    The app's first page shows this for every data set; decoding 6,000 CIFAR-10 PNGs or
    importing scikit-learn for the digits took 6 s of its start-up. Whatever cannot be counted
    cheaply (gzip files, pickled CIFAR batches, user folders) is loaded as usual.
    """
    root = resolve_data_dir(data_dir).resolve()
    try:
        counted = data_source(name).count(split, root)
        if counted is not None:
            return counted
    except (OSError, ValueError):
        pass  # fall through to a real load, which explains what is wrong
    try:
        s = load_dataset(name, split, data_dir, download=False, allow_gallery=False)
        return len(s), s.source, s.complete
    except DataUnavailableError:
        if split == "test" and name in SPECS and gallery_path(name).is_file():
            with np.load(gallery_path(name), allow_pickle=False) as npz:
                return int(len(npz["labels"])), f"shipped gallery {gallery_path(name).name}", False
        raise


def _idx_count(path: Path, item_bytes: int) -> int:
    """Number of complete items in an uncompressed IDX file, from its header and size."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        zero, dtype_code, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
            raise ValueError(f"{path} is not a uint8 IDX file")
        dims = struct.unpack(">" + "I" * ndim, fh.read(4 * ndim))
    body = path.stat().st_size - 4 - 4 * ndim
    if body < dims[0] * item_bytes:
        raise ValueError(f"{path} is truncated")
    return int(dims[0])
