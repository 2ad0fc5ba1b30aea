"""A ``.zip`` of images as an image-folder data set, read defensively.

An archive is someone else's file: it may be a zip bomb, hold ``../`` or absolute names, symlinks,
archives inside the archive, millions of tiny entries, or not be a zip at all. Everything is
checked *before* a byte is extracted, from the end-of-central-directory record (the entry count,
before Python builds one object per entry) and then from the central directory (names, declared
sizes, compression ratios, kinds of file):

- compressed size of the archive, total and per-entry uncompressed size, number of entries,
  compression ratio per entry and overall;
- names with ``..``, absolute paths (``/x``, ``C:\\x``, ``\\\\server``), symlinks, encrypted
  entries and unknown compression methods refuse the whole archive;
- an archive inside the archive (by extension or by its first bytes) refuses it too: one level
  only, so a zip-of-zips bomb cannot be unfolded;
- anything that is not an image (by extension, then by decoding) is skipped and counted;
- at least :attr:`ArchiveLimits.min_classes` classes with :attr:`ArchiveLimits.min_per_class`
  images each; every image is decoded with the same byte and pixel bounds as an upload
  (:func:`cl.images.decode_image_bytes`), plus a bound on the pixels of the whole set.

Layouts: ``<class>/<image>`` or ``train/<class>/<image>`` and ``test/<class>/<image>``, optionally
inside one top-level folder (what zipping a folder makes). macOS metadata (``__MACOSX/``,
``._*``, ``.DS_Store``) is ignored.

Only files we name are written, only inside :func:`cache_dir` (``$CL_CACHE_DIR``, default
``~/.cache/contrastive-explorer``): ``archives/<id>/`` where ``<id>`` is the first 16 hex digits of
the archive's SHA-256. Names from the archive are never used as paths: class folders get
sanitised names and images are numbered. The folder is built under a temporary name and renamed
into place, so a crash never leaves a half-extracted set under its final name. A ``manifest.json``
records the classes, counts, what was skipped and the archive's name and hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from .errors import UserError
from .imagefolders import ARCHIVE_PREFIX, IMAGE_EXTENSIONS, held_out_count

__all__ = ["ARCHIVE_PREFIX", "ArchiveError", "ArchiveLimits", "Extracted", "Manifest", "extract_archive", "read_manifest"]

MANIFEST = "manifest.json"
FORMAT = "contrastive-explorer-archive/2"  # /2: the manifest keeps each image's path in the archive
# Nested archives by extension; their magic numbers are checked too (a renamed one is caught).
ARCHIVE_EXTENSIONS = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz", ".lzma",
                      ".jar", ".apk", ".whl", ".cab", ".iso"}
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
                 b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")
_SAFE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"


class ArchiveError(UserError):
    """An image archive that cannot be used (refused before anything is extracted)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds checked before extraction. The defaults suit a laptop and the CLI; :meth:`demo` is
    what a hosted demo lets every visitor upload."""

    max_archive_bytes: int = 200 * 2**20
    max_total_bytes: int = 1024 * 2**20  # declared uncompressed size of all entries
    max_entry_bytes: int = 20 * 2**20  # one image: the upload limit of cl.images
    max_entries: int = 50_000  # central-directory entries, folders included
    max_ratio: float = 100.0  # uncompressed / compressed, per entry and overall
    max_images: int = 30_000
    max_total_pixels: int = 2_000_000_000  # decoded pixels of all images together
    max_classes: int = 200
    min_classes: int = 2
    max_cache_bytes: int = 4 * 2**30  # all extracted archives together; the oldest go first
    # The paper protocol fits a probe on 80 % of the test split, stratified: every class needs a
    # few test images (or scikit-learn refuses the split). An archive without train/ and test/ is
    # split 80/20 per class, so a class needs min_per_split_needed() images there.
    min_train_per_class: int = 5
    min_test_per_class: int = 5

    def min_per_class(self) -> int:
        """Images a class needs in an archive without train/ and test/ (split per class as
        :mod:`cl.data` does: :func:`cl.data.held_out_count` test images)."""
        n = 1
        while held_out_count(n) < self.min_test_per_class or n - held_out_count(n) < self.min_train_per_class:
            n += 1
        return n

    @classmethod
    def demo(cls) -> ArchiveLimits:
        return cls(max_archive_bytes=50 * 2**20, max_total_bytes=200 * 2**20, max_entry_bytes=5 * 2**20,
                   max_entries=12_000, max_images=10_000, max_total_pixels=200_000_000, max_classes=50,
                   max_cache_bytes=1 * 2**30)


@dataclass
class Manifest:
    """What an extracted archive holds (``manifest.json`` in its folder)."""

    id: str
    archive_name: str
    sha256: str
    layout: str  # "classes" (one folder per class) or "train-test"
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split ("all", or "train" and "test") -> class -> images
    n_images: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of entries
    folders: dict[str, str] = field(default_factory=dict)  # class -> the folder name we chose
    # our file ("<folder>/000012.png", relative to its split) -> its path in the archive
    # ("<class>/<file>", below any top folder and train/ or test/): cl.data splits by it
    sources: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    created: str = ""

    def describe(self) -> str:
        """One line, e.g. ``pets.zip: 3 classes, 120 images (2 non-image files skipped)``."""
        text = f"{self.archive_name}: {len(self.classes)} classes, {self.n_images:,} images"
        n_skipped = sum(self.skipped.values())
        if n_skipped:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            text += f" ({n_skipped} entr{'y' if n_skipped == 1 else 'ies'} skipped: {parts})"
        return text


@dataclass
class Extracted:
    """An archive extracted into the cache: its data-set name, folder and manifest."""

    root: Path
    manifest: Manifest
    reused: bool = False  # the same archive was extracted before (found by its hash)

    @property
    def dataset(self) -> str:
        return ARCHIVE_PREFIX + self.manifest.id


# --------------------------------------------------------------------------- cache folder
def cache_dir() -> Path:
    """The only folder archives are ever written to: ``$CL_CACHE_DIR`` or the user's cache."""
    env = os.environ.get("CL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "contrastive-explorer"


def archives_dir() -> Path:
    return cache_dir() / "archives"


def archive_root(archive_id: str) -> Path:
    """The folder of an extracted archive; refuses anything but 16 hex digits (no path tricks)."""
    if not re.fullmatch(r"[0-9a-f]{16}", archive_id or ""):
        raise ArchiveError(f"{archive_id!r} is not an image-set id")
    return archives_dir() / archive_id


def read_manifest(archive_id: str) -> Manifest:
    root = archive_root(archive_id)
    try:
        data = json.loads((root / MANIFEST).read_text())
        return Manifest(**data)
    except (OSError, ValueError, TypeError):
        raise ArchiveError(f"the image set {archive_id} is no longer on this machine; upload the archive again") from None


# --------------------------------------------------------------------------- reading the directory
def _central_directory_count(fh, size: int) -> int:
    """Number of entries from the end-of-central-directory record (zip64 aware), without letting
    :mod:`zipfile` build a ZipInfo per entry first."""
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0 or len(tail) - pos < 22:
        raise ArchiveError("not a zip archive (no end-of-central-directory record)")
    (_sig, _disk, _cd_disk, _n_disk, n_total, _cd_size, _cd_offset, _comment) = struct.unpack(
        "<4sHHHHIIH", tail[pos:pos + 22])
    if n_total == 0xFFFF and pos >= 20 and tail[pos - 20:pos - 16] == _EOCD64_LOCATOR:
        (_sig, _disk, offset64, _disks) = struct.unpack("<4sIQI", tail[pos - 20:pos])
        if offset64 + 56 <= size:
            fh.seek(offset64)
            rec = fh.read(56)
            if rec[:4] == _EOCD64:
                n_total = struct.unpack("<Q", rec[32:40])[0]
    return int(n_total)


def _unsafe_name(name: str) -> str | None:
    """Why an entry name is dangerous, or ``None``."""
    if "\x00" in name:
        return "a NUL byte in its name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return "an absolute path"
    if any(part == ".." for part in norm.split("/")):
        return "a '..' component"
    return None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)  # 3: Unix, which alone stores links


def _ignored_metadata(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store" or parts[-1].startswith("._") or parts[-1] == "Thumbs.db"


def _safe_folder_name(name: str, used: set[str]) -> str:
    """A class name as a folder name we choose: letters, digits, ``-_ .``; unique; no dot first."""
    text = unicodedata.normalize("NFC", name)
    text = re.sub(r"[^\w\- .]", "_", text).strip(" .") or "class"
    text = text[:64]
    candidate, k = text, 2
    while candidate.lower() in used:
        candidate, k = f"{text}_{k}", k + 1
    used.add(candidate.lower())
    return candidate


@dataclass
class _Plan:
    layout: str
    classes: list[str]
    members: list[tuple[str, str, zipfile.ZipInfo]]  # (split, class, entry)
    skipped: dict[str, int]


def _plan(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: ArchiveLimits, label: str) -> _Plan:
    """Check every entry and decide what each becomes; raise on anything hostile."""
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    total = 0
    files: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
    for info in infos:
        name = info.filename
        why = _unsafe_name(name)
        if why:
            raise ArchiveError(f"{label}: entry {name!r} has {why}; refusing the archive")
        if _is_symlink(info):
            raise ArchiveError(f"{label}: entry {name!r} is a symbolic link; refusing the archive")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{label}: entry {name!r} is encrypted; upload an archive without a password")
        if info.is_dir():
            continue
        if info.compress_type not in _SAFE_METHODS:
            raise ArchiveError(f"{label}: entry {name!r} uses an unsupported compression method "
                               f"({info.compress_type}); use ordinary zip (deflate)")
        if info.file_size > limits.max_entry_bytes:
            raise ArchiveError(f"{label}: entry {name!r} is {info.file_size / 2**20:.1f} MiB uncompressed, over the "
                               f"{limits.max_entry_bytes / 2**20:.0f} MiB limit per image")
        # A tiny entry may compress well (a few bytes of header); the ratio matters for big ones.
        if info.file_size > 64 * 1024 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(f"{label}: entry {name!r} expands {info.file_size / max(info.compress_size, 1):,.0f}x "
                               f"(limit {limits.max_ratio:.0f}x); this looks like a zip bomb")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveError(f"{label}: more than {limits.max_total_bytes / 2**20:,.0f} MiB uncompressed; "
                               f"this is over the limit (or a zip bomb)")
        parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
        if not parts or _ignored_metadata(parts):
            skip("system metadata files")
            continue
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if suffix in ARCHIVE_EXTENSIONS:
            raise ArchiveError(f"{label}: entry {name!r} is an archive inside the archive; upload one archive "
                               f"of image folders")
        files.append((parts, info))

    # One top-level folder around everything (zipping a folder makes that): look inside it.
    while files and all(len(p) > 1 for p, _ in files) and len({p[0] for p, _ in files}) == 1:
        top = files[0][0][0]
        if top.lower() in ("train", "test"):
            break
        files = [(p[1:], i) for p, i in files]

    tops = {p[0].lower() for p, _ in files if len(p) > 1}
    layout = "train-test" if tops and tops <= {"train", "test"} and "train" in tops else "classes"
    members: list[tuple[str, str, zipfile.ZipInfo]] = []
    for parts, info in files:
        if layout == "train-test":
            split, rest = parts[0].lower(), parts[1:]
            if split not in ("train", "test"):
                skip("files outside train/ and test/")
                continue
        else:
            split, rest = "all", parts
        if len(rest) != 2:
            skip("files not directly in a class folder")
            continue
        cls, file = rest
        if cls.startswith("."):
            skip("files in hidden folders")
            continue
        if PurePosixPath(file).suffix.lower() not in IMAGE_EXTENSIONS:
            skip("non-image files")
            continue
        members.append((split, cls, info))

    if layout == "train-test":
        classes = sorted({c for s, c, _ in members if s == "train"})
        extra = sorted({c for s, c, _ in members if s == "test"} - set(classes))
        if extra:
            raise ArchiveError(f"{label}: test/ has classes that train/ has not: {', '.join(extra[:5])}")
    else:
        classes = sorted({c for _, c, _ in members})
    if layout == "train-test":
        _check_classes(label, classes, members, limits, "train", limits.min_train_per_class)
        _check_classes(label, classes, members, limits, "test", limits.min_test_per_class)
    else:
        _check_classes(label, classes, members, limits, "all", limits.min_per_class())
    if len(members) > limits.max_images:
        raise ArchiveError(f"{label}: {len(members):,} images is over the limit of {limits.max_images:,}")
    return _Plan(layout, classes, members, skipped)


def _check_classes(label, classes, members, limits, split, minimum) -> None:
    if len(classes) < limits.min_classes:
        raise ArchiveError(f"{label}: found {len(classes)} class folder{'s' if len(classes) != 1 else ''} with images; "
                           f"need at least {limits.min_classes} (one folder per class, or train/ and test/ "
                           f"each with class folders)")
    if len(classes) > limits.max_classes:
        raise ArchiveError(f"{label}: {len(classes)} classes is over the limit of {limits.max_classes}")
    counts = {c: 0 for c in classes}
    for s, c, _ in members:
        if s == split and c in counts:
            counts[c] += 1
    small = [f"{c} ({n})" for c, n in counts.items() if n < minimum]
    if small:
        where = {"all": "", "train": " in train/", "test": " in test/"}[split]
        why = (f" ({limits.min_test_per_class} are held out for testing)" if split == "all" else "")
        raise ArchiveError(f"{label}: every class needs at least {minimum} images{where}{why}; too few in "
                           f"{', '.join(small[:5])}{' ...' if len(small) > 5 else ''}")


# --------------------------------------------------------------------------- extraction
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
    """An entry's bytes, never more than it declared (a lying header cannot inflate it)."""
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise ArchiveError(f"{label}: entry {info.filename!r} holds more bytes than it declares; refusing the archive")
    return data


def extract_archive(source: str | os.PathLike | bytes, name: str | None = None,
                    limits: ArchiveLimits | None = None) -> Extracted:
    """Check an image archive and extract it into the cache (once per content).

    ``source`` is a path or the archive's bytes (an upload). Raises :class:`ArchiveError` with one
    line on anything refused; nothing is left behind then.
    """
    from PIL import Image

    from .errors import ImageInputError
    from .images import decode_image_bytes

    limits = limits or ArchiveLimits()
    if isinstance(source, (bytes, bytearray)):
        label = name or "upload.zip"
        size = len(source)
        if size > limits.max_archive_bytes:
            raise ArchiveError(f"{label}: {size / 2**20:.1f} MiB is over the {limits.max_archive_bytes / 2**20:.0f} MiB "
                               f"limit for an image archive")
        data = bytes(source)
    else:
        path = Path(source).expanduser()
        label = name or path.name
        if not path.is_file():
            raise ArchiveError(f"{path}: no such archive" if not path.exists() else f"{path}: not a file")
        size = path.stat().st_size
        if size > limits.max_archive_bytes:
            raise ArchiveError(f"{label}: {size / 2**20:.1f} MiB is over the {limits.max_archive_bytes / 2**20:.0f} MiB "
                               f"limit for an image archive")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ArchiveError(f"{path}: cannot read ({err.strerror})") from None
    if size < 22 or data[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ArchiveError(f"{label}: not a zip archive")
    digest = hashlib.sha256(data).hexdigest()
    archive_id = digest[:16]
    root = archive_root(archive_id)
    stale = False
    if (root / MANIFEST).is_file():
        try:
            extracted = Extracted(root, read_manifest(archive_id), reused=True)
            if extracted.manifest.format == FORMAT:
                os.utime(root)  # recently used: the last to be pruned
                return extracted
        except ArchiveError:
            pass  # unreadable manifest: extract again below
        stale = True  # an older extraction (no file paths): replaced by this one

    buf = io.BytesIO(data)
    n_entries = _central_directory_count(buf, size)
    if n_entries > limits.max_entries:
        raise ArchiveError(f"{label}: {n_entries:,} entries is over the limit of {limits.max_entries:,}")
    try:
        zf = zipfile.ZipFile(buf)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as err:
        raise ArchiveError(f"{label}: not a readable zip archive ({err})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:  # the record may understate; the directory cannot lie
            raise ArchiveError(f"{label}: {len(infos):,} entries is over the limit of {limits.max_entries:,}")
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_ratio * size and declared > 1024 * 1024:
            raise ArchiveError(f"{label}: expands {declared / size:,.0f}x (limit {limits.max_ratio:.0f}x); "
                               f"this looks like a zip bomb")
        plan = _plan(zf, infos, limits, label)
        archives_dir().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{archive_id}.", suffix=".part", dir=archives_dir()))
        try:
            manifest = _extract(zf, plan, tmp, archive_id, label, digest, limits, decode_image_bytes,
                                ImageInputError, Image)
            (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=1, sort_keys=True))
            if stale:
                shutil.rmtree(root, ignore_errors=True)
            try:
                os.replace(tmp, root)
            except OSError:  # another process extracted the same archive meanwhile: keep theirs
                if not (root / MANIFEST).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    prune_cache(limits.max_cache_bytes, keep=archive_id)
    return Extracted(root, manifest)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def prune_cache(max_bytes: int, keep: str | None = None) -> list[str]:
    """Delete the least recently extracted archives until the cache's archives take at most
    ``max_bytes`` (``keep`` always stays); return the ids deleted. A session still naming a
    deleted set is told to upload it again."""
    folder = archives_dir()
    if not folder.is_dir():
        return []
    entries = []
    for d in folder.iterdir():
        if d.is_dir() and re.fullmatch(r"[0-9a-f]{16}", d.name):
            try:
                entries.append((d.stat().st_mtime, d.name, _folder_bytes(d)))
            except OSError:
                continue
    total = sum(size for _, _, size in entries)
    deleted = []
    for _mtime, name, size in sorted(entries):
        if total <= max_bytes:
            break
        if name == keep:
            continue
        shutil.rmtree(folder / name, ignore_errors=True)
        deleted.append(name)
        total -= size
    return deleted


def _extract(zf, plan: _Plan, tmp: Path, archive_id, label, digest, limits, decode, ImageInputError, Image) -> Manifest:
    used: set[str] = set()
    folder_of = {c: _safe_folder_name(c, used) for c in plan.classes}
    skipped = dict(plan.skipped)
    counts: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    pixels = 0
    # In the order a folder of the same images is read (class, then file name): the files we
    # write sort as the archive's names did, so the folder and its zip give the same data set.
    members = sorted(plan.members, key=lambda m: (m[0], m[1], PurePosixPath(m[2].filename.replace("\\", "/")).name))
    for k, (split, cls, info) in enumerate(members):
        if cls not in folder_of:
            continue
        try:
            raw = _read_member(zf, info, label)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
            raise ArchiveError(f"{label}: entry {info.filename!r} is corrupt ({err}); refusing the archive") from None
        head = raw[:8]
        if any(head.startswith(m) for m in ARCHIVE_MAGIC):
            raise ArchiveError(f"{label}: entry {info.filename!r} is an archive inside the archive; upload one "
                               f"archive of image folders")
        try:
            img = decode(raw, name=info.filename, max_bytes=limits.max_entry_bytes)
            w, h = img.size
        except ImageInputError:
            skipped["unreadable images"] = skipped.get("unreadable images", 0) + 1
            continue
        pixels += w * h
        if pixels > limits.max_total_pixels:
            raise ArchiveError(f"{label}: the images hold more than {limits.max_total_pixels / 1e6:,.0f} million "
                               f"pixels together; use smaller images or fewer of them")
        sub = tmp if split == "all" else tmp / split
        folder = sub / folder_of[cls]
        folder.mkdir(parents=True, exist_ok=True)
        ext = PurePosixPath(info.filename).suffix.lower()
        (folder / f"{k:06d}{ext}").write_bytes(raw)
        sources[f"{folder_of[cls]}/{k:06d}{ext}"] = f"{cls}/{PurePosixPath(info.filename.replace(chr(92), '/')).name}"
        counts.setdefault(split, {}).setdefault(cls, 0)
        counts[split][cls] += 1
    # Undecodable files may have pushed a class under the minimum: check what was written.
    checks = ([("train", limits.min_train_per_class), ("test", limits.min_test_per_class)]
              if plan.layout == "train-test" else [("all", limits.min_per_class())])
    written = counts.get(checks[0][0], {})
    present = [c for c in plan.classes if written.get(c, 0) > 0]
    for split, minimum in checks:
        written_members = [(split, c, None) for c, n in counts.get(split, {}).items() for _ in range(n)]
        _check_classes(label, present, written_members, limits, split, minimum)
    # Class folders are named by us; the manifest maps them back to the archive's names.
    classes = [c for c in plan.classes if written.get(c, 0) > 0]
    for c in plan.classes:
        if c not in written:
            shutil.rmtree(tmp / folder_of[c], ignore_errors=True)
    return Manifest(id=archive_id, archive_name=PurePosixPath(label.replace("\\", "/")).name, sha256=digest,
                    layout=plan.layout, classes=classes,
                    counts={s: dict(v) for s, v in counts.items()}, folders={c: folder_of[c] for c in classes},
                    n_images=sum(sum(v.values()) for v in counts.values()), skipped=skipped, sources=sources,
                    created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
