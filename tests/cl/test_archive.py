"""cl.archive: image archives in, hostile archives refused before anything is extracted.

Every archive is built here with :mod:`zipfile` (hostile ones by hand where zipfile would refuse
to write them). Each refusal is checked for its one-line reason, for nothing written outside the
cache folder, and for no half-extracted folder left inside it.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl import archive as arc
from cl.archive import ArchiveError, ArchiveLimits, extract_archive
from cl.data import dataset_spec, load_dataset

ROOT = Path(__file__).resolve().parents[2]


# Every test here gets its own cache folder (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("archive_cache_dir")


def png(value: int, size: int = 12, mode: str = "RGB") -> bytes:
    """A small PNG whose pixels are all ``value`` (distinct values identify images)."""
    buf = io.BytesIO()
    Image.new(mode, (size, size), (value, 255 - value, value // 2) if mode == "RGB" else value).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``entries``; the same entries always give the same bytes (fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()


def class_set(classes=("cat", "dog", "fish"), per_class=23, prefix="") -> dict[str, bytes]:
    return {f"{prefix}{c}/{i}.png": png(30 * k + i) for k, c in enumerate(classes) for i in range(per_class)}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def assert_nothing_extracted(cache_dir: Path) -> None:
    leftovers = files_under(cache_dir / "archives")
    assert leftovers == set(), leftovers


# ------------------------------------------------------------------------------------ good archives
def test_class_folders_become_a_dataset_with_a_seeded_stratified_split(archive_cache_dir):
    entries = class_set(per_class=25, prefix="my-pets/")  # inside one top-level folder
    entries["my-pets/README.txt"] = b"notes"
    entries["__MACOSX/my-pets/._cat"] = b"junk"
    entries["my-pets/cat/.DS_Store"] = b"junk"
    entries["my-pets/dog/notes.csv"] = b"a,b"
    ex = extract_archive(make_zip(entries), name="my-pets.zip")
    m = ex.manifest
    assert m.classes == ["cat", "dog", "fish"] and m.layout == "classes" and m.n_images == 75
    assert m.skipped == {"system metadata files": 2, "files not directly in a class folder": 1, "non-image files": 1}
    assert ex.root == archive_cache_dir / "archives" / m.id and ex.dataset == f"archive:{m.id}"
    train = load_dataset(ex.dataset, "train")
    test = load_dataset(ex.dataset, "test")
    assert (len(train), len(test)) == (60, 15)
    assert train.images.shape[1:] == (3, 32, 32) and train.classes == ["cat", "dog", "fish"]
    assert np.bincount(test.labels.numpy()).tolist() == [5, 5, 5]
    # every image lands in exactly one split, with its own class: the red channel identifies it
    reds = sorted(int(x) for x in torch_cat(train, test))
    assert reds == sorted(30 * k + i for k in range(3) for i in range(25))
    assert "archive my-pets.zip" in train.provenance()["source"] and str(archive_cache_dir) not in train.provenance()["source"]
    assert dataset_spec(ex.dataset).classes == ("cat", "dog", "fish")
    # the same bytes again: found by content, nothing re-extracted
    again = extract_archive(make_zip(entries), name="renamed.zip")
    assert again.reused and again.manifest.id == m.id


def torch_cat(*sets):
    import torch

    imgs = torch.cat([s.images for s in sets])
    labels = torch.cat([s.labels for s in sets])
    # the generated colour is (v, 255 - v, v // 2); resizing a flat image keeps it exact
    reds = imgs[:, 0, 0, 0]
    assert all(int(r) // 30 == int(y) for r, y in zip(reds, labels, strict=True)), "each image keeps its class"
    return reds.tolist()


def test_train_and_test_folders_are_used_as_given(archive_cache_dir):
    entries = {**class_set(("a", "b"), 7, "train/"), **class_set(("a", "b"), 5, "test/")}
    ex = extract_archive(make_zip(entries), name="split.zip")
    assert ex.manifest.layout == "train-test"
    assert ex.manifest.counts == {"train": {"a": 7, "b": 7}, "test": {"a": 5, "b": 5}}
    assert len(load_dataset(ex.dataset, "train")) == 14 and len(load_dataset(ex.dataset, "test")) == 10
    with pytest.raises(ArchiveError, match="at least 5 images in test/; too few in b \\(4\\)"):
        entries["test/b/x.png"] = b"not an image"  # an unreadable file does not count
        del entries["test/b/0.png"]
        extract_archive(make_zip(entries))


def test_odd_class_names_get_folders_we_choose_and_keep_their_names(archive_cache_dir):
    entries = class_set(("Ünïcode class", "with:colon", "CON"))
    ex = extract_archive(make_zip(entries))
    assert ex.manifest.classes == sorted(["Ünïcode class", "with:colon", "CON"])
    for folder in ex.manifest.folders.values():
        assert (ex.root / folder).is_dir() and ":" not in folder
    assert load_dataset(ex.dataset, "test").classes == ex.manifest.classes


def test_the_cli_reads_folder_zip_and_refuses_a_bad_archive_with_one_line(tmp_path, archive_cache_dir, capsys):
    from cl.cli import main

    good = tmp_path / "set.zip"
    good.write_bytes(make_zip(class_set(("x", "y"))))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file at all")
    env = dict(os.environ, CL_CACHE_DIR=str(archive_cache_dir))
    # as a user runs it: a subprocess, exit 2, one line
    r = subprocess.run([sys.executable, "-m", "cl", "train", "--dataset", f"folder:{bad}", "--epochs", "1",
                        "--out", str(tmp_path / "m.safetensors")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a zip archive" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # training and evaluating on the archive (in-process: the same main(), without a second torch import)
    assert main(["train", "--dataset", f"folder:{good}", "--epochs", "1", "--batch-size", "8", "--json",
                 "--out", str(tmp_path / "m.safetensors")]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["n_train"] == 36 and payload["metrics"]["paper"]["n_test"] == 2  # 20 % of 10 test images
    assert payload["train_data"]["source"] == f"archive set.zip (sha256 {payload['train_data']['source'][-17:-1]})"
    assert (tmp_path / "m.safetensors").is_file()
    archives = archive_cache_dir / "archives"
    assert files_under(archives) and not any(p.name.endswith(".part") for p in archives.iterdir())
    assert main(["evaluate", str(tmp_path / "m.safetensors")]) == 0, "the card's data set is found again"
    assert "paper protocol, folder:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ hostile archives
def test_a_zip_bomb_of_zeros_is_refused_from_its_directory(archive_cache_dir):
    zeros = b"\0" * (50 * 2**20)  # 50 MiB of zeros deflate to ~50 KiB (ratio ~1000)
    data = make_zip({"a/zeros.png": zeros, **class_set(("a", "b"))})
    assert len(data) < 200 * 1024
    t0 = time.perf_counter()
    with pytest.raises(ArchiveError, match="expands \\d{3}x \\(limit 100x\\); this looks like a zip bomb"):
        extract_archive(data, name="bomb.zip")  # the whole archive's ratio
    assert time.perf_counter() - t0 < 1.0, "refused from the directory, not by inflating"
    # hidden among 1 MiB of incompressible bytes the overall ratio is low: the entry's own ratio
    noise = np.random.default_rng(0).integers(0, 256, 1_200_000, dtype=np.uint8).tobytes()
    data = make_zip({"a/zeros.png": zeros, "noise.bin": noise, **class_set(("a", "b"))})
    with pytest.raises(ArchiveError, match="entry 'a/zeros.png' expands"):
        extract_archive(data, name="bomb.zip", limits=ArchiveLimits(max_entry_bytes=100 * 2**20))
    with pytest.raises(ArchiveError, match="over the 20 MiB limit per image"):
        extract_archive(data, name="bomb.zip")  # the default per-entry bound catches it first
    assert time.perf_counter() - t0 < 3.0
    assert_nothing_extracted(archive_cache_dir)


def test_many_small_bombs_are_refused_by_the_total(archive_cache_dir):
    # 40 entries of 60 KiB of zeros each: every one under the per-entry ratio threshold (64 KiB),
    # together far more than the archive's size times the ratio limit
    entries = {f"a/z{i}.png": b"\0" * (60 * 1024) for i in range(40)}
    with pytest.raises(ArchiveError, match="zip bomb"):
        extract_archive(make_zip({**entries, **class_set(("a", "b"))}), name="bombs.zip")
    assert_nothing_extracted(archive_cache_dir)


def _raw_zip(name: bytes, data: bytes, external_attr: int = 0, create_system: int = 3) -> bytes:
    """A one-entry stored zip written byte by byte (zipfile sanitises names it writes)."""
    crc = zlib.crc32(data)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data), len(name), 0)
    central = struct.pack("<4sBBHHHHHIIIHHHHHII", b"PK\x01\x02", 20, create_system, 20, 0, 0, 0, 0, crc,
                          len(data), len(data), len(name), 0, 0, 0, 0, external_attr, 0)
    body = local + name + data
    cd = central + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(body), 0)
    return body + cd + end


def _with_good_entries(hostile: dict[str, bytes], **info) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in class_set(("a", "b")).items():
            zf.writestr(name, data)
        for name, data in hostile.items():
            zi = zipfile.ZipInfo(name)
            for k, v in info.items():
                setattr(zi, k, v)
            zf.writestr(zi, data)
    return buf.getvalue()


@pytest.mark.parametrize("name, reason", [
    (b"../evil.png", "'..' component"),
    (b"a/../../evil.png", "'..' component"),
    (b"/etc/evil.png", "absolute path"),
    (b"C:\\evil.png", "absolute path"),
    (b"a\\..\\..\\evil.png", "'..' component"),
])
def test_traversal_and_absolute_names_are_refused(archive_cache_dir, tmp_path, name, reason):
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(_raw_zip(name, png(1)), name="evil.zip")
    # zipfile.writestr keeps these names too; a good archive around them changes nothing
    data = _with_good_entries({name.decode(): png(2)})
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(data, name="evil.zip")
    assert_nothing_extracted(archive_cache_dir)
    assert not (tmp_path / "evil.png").exists() and not Path("/etc/evil.png").exists()


def test_a_symlink_entry_is_refused(archive_cache_dir):
    link_mode = (stat.S_IFLNK | 0o777) << 16
    data = _with_good_entries({"a/link.png": b"/etc/passwd"}, external_attr=link_mode, create_system=3)
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_archive(data, name="link.zip")
    assert_nothing_extracted(archive_cache_dir)


def test_a_hundred_thousand_tiny_entries_are_refused_from_the_entry_count(archive_cache_dir, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(100_000):
            zf.writestr(zipfile.ZipInfo(f"a/{i}.png"), b"")
    data = buf.getvalue()
    built = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: built.append(1) or pytest.fail("parsed the directory"))
    t0 = time.perf_counter()
    with pytest.raises(ArchiveError, match="100,000 entries is over the limit of 50,000"):
        extract_archive(data, name="tiny.zip")
    assert time.perf_counter() - t0 < 0.5 and not built
    assert_nothing_extracted(archive_cache_dir)


def test_an_archive_inside_the_archive_is_refused_by_name_and_by_content(archive_cache_dir):
    inner = make_zip(class_set(("a", "b")))
    with pytest.raises(ArchiveError, match="archive inside the archive"):
        extract_archive(make_zip({**class_set(("a", "b")), "a/more.zip": inner}), name="nested.zip")
    # renamed to look like an image: caught by its first bytes before it is decoded
    with pytest.raises(ArchiveError, match="archive inside the archive"):
        extract_archive(make_zip({**class_set(("a", "b")), "a/more.png": inner}), name="nested.zip")
    with pytest.raises(ArchiveError, match="archive inside the archive"):
        extract_archive(make_zip({**class_set(("a", "b")), "b/x.tar.gz": b"\x1f\x8b" + b"\0" * 20}))
    assert_nothing_extracted(archive_cache_dir)


@pytest.mark.parametrize("data, reason", [
    (b"", "not a zip archive"),
    (b"this is not a zip file at all, just text" * 3, "not a zip archive"),
    (png(5), "not a zip archive"),
    (b"PK\x03\x04" + b"\0" * 100, "no end-of-central-directory"),
])
def test_a_zip_that_is_not_a_zip_is_refused(archive_cache_dir, data, reason):
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(data, name="fake.zip")
    assert_nothing_extracted(archive_cache_dir)


def test_a_truncated_zip_is_refused(archive_cache_dir):
    data = make_zip(class_set(("a", "b")))
    with pytest.raises(ArchiveError):
        extract_archive(data[: len(data) // 2], name="cut.zip")
    assert_nothing_extracted(archive_cache_dir)


def test_an_entry_that_lies_about_its_size_is_refused(archive_cache_dir):
    data = bytearray(make_zip({**class_set(("a", "b"))}, method=zipfile.ZIP_STORED))
    # shrink the declared size of the first entry in the central directory (not the local header)
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    first_cd = data.find(b"PK\x01\x02")
    real = struct.unpack("<I", data[first_cd + 24:first_cd + 28])[0]
    data[first_cd + 24:first_cd + 28] = struct.pack("<I", real // 2)
    assert cd > 0
    with pytest.raises(ArchiveError):
        extract_archive(bytes(data), name="liar.zip")
    assert_nothing_extracted(archive_cache_dir)


def test_an_image_over_the_pixel_bound_is_skipped_and_counted(archive_cache_dir):
    # a PNG declaring 50,000 x 50,000 pixels (2.5 GP) in a few hundred bytes
    big = io.BytesIO()
    Image.new("1", (10, 10)).save(big, "PNG")
    raw = bytearray(big.getvalue())
    ihdr = raw.find(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", 50_000, 50_000)
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr:ihdr + 17])))
    ex = extract_archive(make_zip({**class_set(("a", "b")), "a/huge.png": bytes(raw), "b/bad.png": b"junk"}))
    assert ex.manifest.skipped == {"unreadable images": 2} and ex.manifest.n_images == 46


@pytest.mark.parametrize("entries, reason", [
    (class_set(("only",), 10), "need at least 2"),
    (class_set(("a", "b"), 22), "at least 23 images \\(5 are held out for testing\\); too few in a \\(22\\), b \\(22\\)"),
    ({**class_set(("a", "b")), **{f"c/{i}.txt": b"x" for i in range(9)}}, None),  # c has no image: not a class
    ({**class_set(("a", "b"), 5, "train/"), **class_set(("z",), 5, "test/")}, "test/ has classes that train/ has not"),
    ({f"{i}.png": png(i) for i in range(50)}, "need at least 2"),
])
def test_class_structure_is_checked(archive_cache_dir, entries, reason):
    data = make_zip(entries)
    if reason is None:
        assert extract_archive(data).manifest.classes == ["a", "b"]
        return
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(data)
    assert_nothing_extracted(archive_cache_dir)


def test_size_and_count_limits(archive_cache_dir):
    data = make_zip(class_set(("a", "b"), 23))
    with pytest.raises(ArchiveError, match="over the 0 MiB limit for an image archive"):
        extract_archive(data, limits=ArchiveLimits(max_archive_bytes=1000))
    with pytest.raises(ArchiveError, match="46 images is over the limit of 10"):
        extract_archive(data, limits=ArchiveLimits(max_images=10))
    with pytest.raises(ArchiveError, match="uncompressed"):
        extract_archive(data, limits=ArchiveLimits(max_total_bytes=100))
    with pytest.raises(ArchiveError, match="million pixels"):
        extract_archive(data, limits=ArchiveLimits(max_total_pixels=1000))
    assert_nothing_extracted(archive_cache_dir)


def test_only_hex_ids_name_a_cached_archive(archive_cache_dir):
    for bad in ("../../etc", "abc", "0123456789abcdef/..", ""):
        with pytest.raises(ArchiveError):
            arc.archive_root(bad)
    with pytest.raises(ArchiveError, match="no longer on this machine"):
        load_dataset("archive:0123456789abcdef", "test")


def test_the_cache_keeps_the_newest_archives_within_its_bound(archive_cache_dir):
    first = extract_archive(make_zip(class_set(("a", "b"))))
    os.utime(first.root, (1, 1))  # long ago
    second = extract_archive(make_zip(class_set(("c", "d"))))
    size = sum(p.stat().st_size for p in second.root.rglob("*") if p.is_file())
    third = extract_archive(make_zip(class_set(("e", "f"))), limits=ArchiveLimits(max_cache_bytes=int(2.5 * size)))
    assert not first.root.exists() and second.root.exists() and third.root.exists()
    with pytest.raises(ArchiveError, match="no longer on this machine"):
        load_dataset(first.dataset, "test")
    # the archive just extracted stays even when it alone is over the bound
    fourth = extract_archive(make_zip(class_set(("g", "h"))), limits=ArchiveLimits(max_cache_bytes=1))
    assert fourth.root.exists() and not second.root.exists() and not third.root.exists()


def test_an_end_record_that_understates_the_entry_count_is_caught_by_the_directory(archive_cache_dir):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(60):
            zf.writestr(zipfile.ZipInfo(f"a/{i}.png"), b"")
    data = bytearray(buf.getvalue())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = struct.pack("<HH", 1, 1)  # "1 entry"
    with pytest.raises(ArchiveError, match="60 entries is over the limit of 50"):
        extract_archive(bytes(data), limits=ArchiveLimits(max_entries=50))
    assert_nothing_extracted(archive_cache_dir)


def test_encrypted_entries_and_unknown_compression_are_refused(archive_cache_dir):
    data = bytearray(make_zip(class_set(("a", "b")), method=zipfile.ZIP_STORED))
    first_cd = data.find(b"PK\x01\x02")
    data[first_cd + 8] |= 0x1  # the "encrypted" flag (zipfile will not write one)
    with pytest.raises(ArchiveError, match="is encrypted"):
        extract_archive(bytes(data))
    data[first_cd + 8] &= ~0x1 & 0xFF
    data[first_cd + 10:first_cd + 12] = struct.pack("<H", 99)  # AES (WinZip): not ours to decode
    with pytest.raises(ArchiveError, match="unsupported compression method \\(99\\)"):
        extract_archive(bytes(data))
    assert_nothing_extracted(archive_cache_dir)


def test_duplicate_names_never_overwrite_each_other(archive_cache_dir):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in class_set(("a", "b")).items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning):  # zipfile warns about a duplicate name; it writes it anyway
            zf.writestr("a/0.png", png(200))
    ex = extract_archive(buf.getvalue())
    assert ex.manifest.counts["all"] == {"a": 24, "b": 23}
