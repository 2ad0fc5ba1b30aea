"""Data loaders against independent readers (scikit-learn, raw IDX bytes, torchvision ImageFolder)."""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cl.data as data_mod
from cl.data import (
    ImageSet,
    clear_cache,
    dataset_spec,
    dataset_status,
    load_dataset,
    load_gallery,
    resolve_data_dir,
    save_gallery,
    to_float,
)
from cl.errors import ConfigError, DataUnavailableError

PROVENANCE_KEYS = {"dataset", "split", "n_images", "n_full", "complete", "source", "notes"}


def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _hashes(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in images]


# ----------------------------------------------------------------------------- digits
def test_digits_shapes_and_split():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1257, 540)
    for s in (train, test):
        assert s.images.dtype == torch.uint8 and tuple(s.images.shape[1:]) == (1, 28, 28)
        assert s.labels.dtype == torch.int64 and set(s.labels.tolist()) == set(range(10))
        assert s.complete and s.channels == 1 and s.size == 28
        assert s.classes == [str(i) for i in range(10)]
        prov = s.provenance()
        assert PROVENANCE_KEYS <= set(prov) and prov["n_images"] == len(s) and prov["complete"] is True
        # the digit sits in the central 20x20 box, like MNIST
        assert int(s.images[:, :, :4].max()) == 0 and int(s.images[:, :, :, -4:].max()) == 0
    bunch = load_digits()
    assert Counter(train.labels.tolist() + test.labels.tolist()) == Counter(bunch.target.tolist())
    # stratified: class shares in test follow the whole set
    for c in range(10):
        assert abs((test.labels == c).sum().item() - 540 * (bunch.target == c).mean()) <= 1
    # each 28x28 image is the 8x8 original scaled up: downsampling the 20x20 box recovers it
    ref = torch.from_numpy(bunch.images.astype(np.float32) * (255 / 16))
    box = test.images[:, 0, 4:24, 4:24].float()
    down = torch.nn.functional.adaptive_avg_pool2d(box[:, None], 8)[:, 0]
    dist = torch.cdist(down.flatten(1), ref.flatten(1))  # (540, 1797)
    nearest = dist.argmin(1)
    assert (torch.from_numpy(bunch.target)[nearest] == test.labels).float().mean() > 0.97
    # train and test do not share images (beyond originals that occur twice in the whole set)
    original_counts = Counter(hashlib.sha1(im.tobytes()).hexdigest() for im in bunch.images)
    n_duplicated = sum(c for c in original_counts.values() if c > 1)
    shared = set(_hashes(train.images)) & set(_hashes(test.images))
    assert len(shared) <= n_duplicated


def test_to_float_normalisation():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8)
    torch.testing.assert_close(to_float(x), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]))


# ----------------------------------------------------------------------------- MNIST family
def test_mnist_partial_train(data_dir):
    train = load_dataset("mnist", "train", data_dir)
    raw_images = _read_idx(data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte")
    raw_labels = _read_idx(data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte")
    assert len(train) == 17_387 == len(raw_labels)
    assert train.images.shape == (17_387, 1, 28, 28) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images[:, 0].numpy(), raw_images)
    assert np.array_equal(train.labels.numpy(), raw_labels.astype(np.int64))
    assert not train.complete and train.n_full == 60_000
    prov = train.provenance()
    assert PROVENANCE_KEYS <= set(prov)
    assert prov["complete"] is False and prov["n_images"] == 17_387 and prov["n_full"] == 60_000
    assert any("partial" in n for n in prov["notes"])
    assert "partial" in train.describe() and "17,387 of 60,000" in train.describe()


def test_mnist_and_fashion_test_complete(data_dir):
    import torchvision

    test = load_dataset("mnist", "test", data_dir)
    ref = torchvision.datasets.MNIST(root=str(data_dir), train=False, download=False)
    assert len(test) == 10_000 and test.complete and test.provenance()["notes"] == []
    assert torch.equal(test.images[:, 0], ref.data) and torch.equal(test.labels, ref.targets)
    fashion = load_dataset("fashion-mnist", "train", data_dir)
    assert len(fashion) == 60_000 and fashion.complete and fashion.classes[0] == "T-shirt/top"
    raw = _read_idx(data_dir / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte")
    assert np.array_equal(fashion.labels.numpy(), raw.astype(np.int64))


def test_cifar10_subset_matches_imagefolder(data_dir):
    import torchvision

    test = load_dataset("cifar10", "test", data_dir)
    ref = torchvision.datasets.ImageFolder(str(data_dir / "cifar10-subset" / "test"))
    assert ref.classes == test.classes  # alphabetical folder order happens to equal CIFAR-10's
    assert len(test) == len(ref) == 1017 and test.images.shape[1:] == (3, 32, 32)
    assert not test.complete and test.n_full == 10_000 and test.provenance()["notes"]
    for i in (0, 1, 500, 1016):
        img, label = ref[i]
        assert label == int(test.labels[i])
        assert np.array_equal(np.asarray(img).transpose(2, 0, 1), test.images[i].numpy())


def test_missing_files_raise_with_instructions(tmp_path):
    with pytest.raises(DataUnavailableError) as excinfo:
        load_dataset("mnist", "train", tmp_path, download=False)
    msg = str(excinfo.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg and "\n" not in msg
    with pytest.raises(DataUnavailableError):
        load_dataset("cifar10", "train", tmp_path, download=False)


def test_truncated_idx_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">HBBIII", 0, 8, 3, 10, 28, 28) + b"\x00" * 100)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 10) + b"\x00" * 10)
    with pytest.raises(DataUnavailableError) as excinfo:
        load_dataset("mnist", "test", tmp_path, download=False, allow_gallery=False)
    assert "truncated" in str(excinfo.value)


def test_names_and_splits():
    with pytest.raises(ConfigError):
        load_dataset("imagenet")
    with pytest.raises(ConfigError):
        load_dataset("digits", "validation")
    assert dataset_spec("cifar10").channels == 3 and dataset_spec("mnist").size == 28
    assert dataset_spec("folder:/x").channels == 3


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("/somewhere") == Path("/somewhere")
    monkeypatch.delenv("CL_DATA_DIR")
    assert resolve_data_dir(None) == Path("data")


def test_dataset_status(data_dir, tmp_path):
    row = dataset_status("mnist", data_dir)
    assert row["available"] and row["n_train"] == 17_387 and row["n_test"] == 10_000
    assert row["train_complete"] is False and row["test_complete"] is True
    row = dataset_status("digits")
    assert row["n_train"] == 1257 and row["n_test"] == 540


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion-mnist", "cifar10"])
def test_dataset_status_counts_match_real_loads(data_dir, name):
    """The cheap counts (headers, file listings) agree with decoding every image."""
    row = dataset_status(name, data_dir)
    for split in ("train", "test"):
        s = load_dataset(name, split, data_dir, download=False)
        assert (row[f"n_{split}"], row[f"{split}_source"], row[f"{split}_complete"]) == (len(s), s.source, s.complete)


def test_dataset_status_truncated_idx_reports_the_problem(tmp_path):
    """A header promising more images than the file holds is not counted: the real loader runs
    and its message names the problem (the train split has no gallery to fall back on)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">HBBIII", 0, 8, 3, 10, 28, 28) + b"\x00" * 100)
    (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 10) + b"\x00" * 10)
    row = dataset_status("mnist", tmp_path)
    assert row["n_train"] == 0 and not row["available"]
    assert "truncated" in row["train_error"], row
    # the same files made whole are counted from their headers
    (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">HBBIII", 0, 8, 3, 10, 28, 28) + b"\x00" * 7840)
    clear_cache()
    row = dataset_status("mnist", tmp_path)
    assert row["n_train"] == 10 and row["train_complete"] is False and row["available"]


# ----------------------------------------------------------------------------- folder:PATH
def _write_tree(root: Path, counts: dict[str, int], seed: int, size=(20, 14)):
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i:03d}.png")
    (root / next(iter(counts)) / "notes.txt").write_text("not an image, skipped")


def test_folder_without_split(tmp_path):
    root = tmp_path / "pets"
    _write_tree(root, {"cat": 10, "dog": 7, "emu": 1}, seed=0)
    name = f"folder:{root}"
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert train.classes == test.classes == ["cat", "dog", "emu"]
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == 18
    assert Counter(test.labels.tolist()) == {0: 2, 1: 1}  # 20 % per class, rounded, at least one
    assert Counter(train.labels.tolist()) == {0: 8, 1: 6, 2: 1}  # a single-image class stays in train
    assert not set(_hashes(train.images)) & set(_hashes(test.images))
    assert train.notes and "80/20" in train.notes[0]
    # seeded: the same split every time
    clear_cache()
    again = load_dataset(name, "test")
    assert torch.equal(again.images, test.images)


def test_folder_with_split(tmp_path):
    root = tmp_path / "set"
    _write_tree(root / "train", {"a": 4, "b": 3}, seed=1)
    _write_tree(root / "test", {"a": 2, "b": 2}, seed=2)
    name = f"folder:{root}"
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    assert (len(train), len(test)) == (7, 4)
    assert train.classes == ["a", "b"] and train.source.endswith("train") and test.source.endswith("test")
    assert not set(_hashes(train.images)) & set(_hashes(test.images))
    # independent check of one image: centre-crop 20x14 -> 14x14, resize to 32
    pil = Image.open(root / "test" / "b" / "000.png").convert("RGB")
    ref = np.asarray(pil.crop((3, 0, 17, 14)).resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    got = test.images[test.labels.tolist().index(1)].numpy()
    assert np.abs(got.astype(int) - ref.astype(int)).mean() < 1


def test_folder_errors(tmp_path):
    with pytest.raises(DataUnavailableError):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataUnavailableError):
        load_dataset(f"folder:{tmp_path / 'empty'}")


# ----------------------------------------------------------------------------- galleries
def test_gallery_fallback(tmp_path, monkeypatch):
    source = load_dataset("digits", "test")
    as_mnist = ImageSet("mnist", "test", source.images, source.labels, source.classes, "digits as mnist", 10_000)
    monkeypatch.setattr(data_mod, "GALLERY_DIR", tmp_path / "galleries")
    path = save_gallery(as_mnist, 100)
    assert path.is_file()
    empty = tmp_path / "nodata"
    empty.mkdir()
    got = load_dataset("mnist", "test", empty, download=False)
    assert len(got) == 100 and got.images.shape[1:] == (1, 28, 28) and got.images.dtype == torch.uint8
    assert "gallery" in got.source and any("gallery" in n for n in got.notes)
    assert not got.complete and got.n_full == 10_000
    assert set(_hashes(got.images)) <= set(_hashes(source.images))
    # never for training, and only when allowed
    with pytest.raises(DataUnavailableError):
        load_dataset("mnist", "train", empty, download=False)
    with pytest.raises(DataUnavailableError):
        load_dataset("mnist", "test", empty, download=False, allow_gallery=False)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_shipped_gallery_if_present(name):
    gallery = load_gallery(name)
    if gallery is None:
        pytest.skip(f"no shipped gallery for {name}")
    spec = dataset_spec(name)
    assert gallery.images.dtype == torch.uint8
    assert tuple(gallery.images.shape[1:]) == (spec.channels, spec.size, spec.size)
    assert len(gallery) == len(gallery.labels) > 0
    assert int(gallery.labels.max()) < len(spec.classes)
    assert not gallery.complete and any("gallery" in n for n in gallery.notes)


# ----------------------------------------------------------------------------- where each image came from
def _decoded(path: Path) -> np.ndarray:
    """A file as the loaders read a folder image (the same decoding and fitting), independently of the set."""
    from cl.images import decode_image_file, fit_to_format

    return fit_to_format(decode_image_file(path), channels=3, size=32, mode="resize").numpy()


@pytest.mark.parametrize("zipped", [False, True])
def test_folder_and_zip_images_carry_their_paths(tmp_path, zipped, archive_cache_dir):
    import shutil

    root = tmp_path / "pets"
    _write_tree(root, {"cat": 25, "dog": 23}, seed=3)  # archives need 23 per class (5 held out for testing)
    name = f"folder:{root}"
    if zipped:
        name = f"folder:{shutil.make_archive(str(tmp_path / 'pets'), 'zip', tmp_path, 'pets')}"
    seen = []
    for split in ("train", "test"):
        s = load_dataset(name, split)
        assert len(s.origins) == len(s)
        for image, label, origin in zip(s.images, s.labels.tolist(), s.origins, strict=True):
            cls, file = origin.split("/")
            assert cls == s.classes[label]
            assert np.array_equal(image.numpy(), _decoded(root / cls / file))  # the origin names this very image
        seen += s.origins
    assert sorted(seen) == sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*.png"))


def test_folder_with_split_origins_name_the_split(tmp_path):
    root = tmp_path / "set"
    _write_tree(root / "train", {"a": 4, "b": 3}, seed=1)
    _write_tree(root / "test", {"a": 2, "b": 2}, seed=2)
    test = load_dataset(f"folder:{root}", "test")
    assert all(o.startswith("test/") for o in test.origins)
    for image, origin in zip(test.images, test.origins, strict=True):
        assert np.array_equal(image.numpy(), _decoded(root / origin))


def test_subset_keeps_origins():
    s = load_dataset("digits", "test")
    sub = s.subset([5, 2])
    assert sub.origins == [s.origins[5], s.origins[2]]


def test_digits_origins_index_scikit_learns_images():
    from sklearn.datasets import load_digits

    s = load_dataset("digits", "train")
    target = load_digits().target
    for origin, label in zip(s.origins, s.labels.tolist(), strict=True):
        assert target[int(origin.split("/")[1])] == label


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_gallery_origins_point_into_the_full_test_split(data_dir, name):
    gallery = load_gallery(name)
    full = load_dataset(name, "test", data_dir=data_dir, allow_gallery=False)
    where = {o: i for i, o in enumerate(full.origins)}
    for k in range(0, len(gallery), 97):
        assert np.array_equal(gallery.images[k].numpy(), full.images[where[gallery.origins[k]]].numpy())
    if name != "cifar10":  # the offline CIFAR-10 subset names its files after the full set's indices
        assert gallery.origins[0].startswith(f"{name}/test/")
