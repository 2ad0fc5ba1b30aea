"""Where models live and what they are: shipped checkpoints, the runs folder, session models.

Shipped checkpoints are read from ``checkpoints/`` beside ``app.py`` (override with
``$CL_CHECKPOINTS_DIR``); models trained in the app go to the runs folder (``$CL_RUNS_DIR``,
default ``./runs``) and never into the shipped folder. A checkpoint a visitor uploads is written
to the app's cache folder (:func:`cl.archive.cache_dir`, under ``models/``, named by its content
hash) and validated there exactly as the command line loads one. Only the metadata card is read
here (cheap); weights are loaded through :mod:`ui.cache`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from cl.checkpoints import Card, checkpoint_id, read_card
from cl.errors import CheckpointError

from . import demo
from .paths import APP_ROOT, checkpoints_dir, runs_dir  # noqa: F401  (the pages name them through ui.models)

MAX_UPLOAD_MODEL_BYTES = 100 * 2**20  # our largest encoder is a few MB
DEMO_MAX_UPLOAD_MODEL_BYTES = 20 * 2**20
MAX_UPLOADED_MODELS = 200  # files kept in the uploads folder; the least recently uploaded go first


def list_runs_enabled() -> bool:
    """Whether earlier runs in the runs folder are listed: on a laptop yes (they are the user's own),
    in demo mode no (they belong to other visitors, who reach theirs by link). ``CL_APP_LIST_RUNS``
    (1/0) overrides."""
    value = os.environ.get("CL_APP_LIST_RUNS", "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    return not demo.enabled()


@dataclass
class ModelEntry:
    path: str
    source: str  # "shipped", "session" or "runs"
    card: dict
    cid: str
    snapshots: dict | None = field(default=None, repr=False)  # per-epoch embeddings (session models)
    uploaded: bool = False  # a session model the visitor uploaded (not trained here)
    own: bool = False  # an embeddings file made elsewhere (ui.own): its rows are the test embeddings, no network

    @cached_property
    def typed_card(self) -> Card:
        """:attr:`card` (the JSON as stored) read as a :class:`cl.checkpoints.Card`."""
        return Card.from_dict(self.card)

    @property
    def name(self) -> str:
        return str(self.typed_card.name or Path(self.path).stem)

    @property
    def dataset(self) -> str:
        return str(self.typed_card.dataset or "?")

    @property
    def config(self) -> dict:
        return self.typed_card.config

    @property
    def shape(self) -> tuple[int, int]:
        spec = self.typed_card.encoder_spec
        return int(spec.in_channels), int(spec.image_size)

    @property
    def label(self) -> str:
        if self.own:
            return f"{self.name} (your embeddings file)"
        c = self.config
        where = {"shipped": "shipped", "session": "trained this session", "runs": "runs folder"}[self.source]
        if self.uploaded:
            where = "uploaded this session"
        return f"{self.name} ({c.get('augmentation', '?')}, {c.get('loss', '?')}; {where})"

    def replay(self) -> dict | None:
        """The per-epoch embeddings of its training (the Embedding page's replay): kept with this
        session's record, else read from ``NAME.replay.npz`` beside the checkpoint (a reload, a link)."""
        if self.snapshots is not None:
            return self.snapshots
        return _cached_replay(self.path, self.cid)

    def trained_on(self, dataset: str) -> bool:
        """Whether it was trained on ``dataset``; an uploaded image set (``archive:ID``) counts as the
        same data as a model trained by the CLI on that zip (its card names the archive's hash)."""
        if self.dataset == dataset:
            return True
        if dataset.startswith("archive:"):
            source = str(self.typed_card.data.source or "")
            return f"sha256 {dataset[len('archive:'):]}" in source
        return False

    def train_note(self) -> str:
        """e.g. ``trained on 1,257 digits train images (complete)``."""
        if self.own:
            p = self.card.get("own", {})  # an embeddings file's own record, not a model card
            return (f"embeddings made elsewhere: {p.get('n_images', 0):,} rows of {p.get('dim', 0):,} dimensions; "
                    f"no model here")
        d = self.typed_card.data
        n, full = d.n_images, d.n_full
        text = (f"trained on {n:,} {d.label or d.dataset or '?'} {d.split or 'train'} images"
                if n else "training data unknown")
        if n and full and n < full:
            text += f" (partial: {n:,} of {full:,})"
        epochs = self.typed_card.training.epochs_completed
        if epochs:
            text += f", {epochs} epoch{'s' if epochs != 1 else ''}"
        return text


@lru_cache(maxsize=8)
def _cached_replay(path: str, cid: str) -> dict | None:
    from .jobs import load_replay

    return load_replay(path)


def _entries_in(folder: Path, source: str) -> tuple[list[ModelEntry], list[str]]:
    if not folder.is_dir():
        return [], []
    listing = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            st = path.stat()
        except OSError:
            continue
        listing.append((path.name, st.st_size, st.st_mtime_ns))
    entries, problems = _read_entries(str(folder.resolve()), source, tuple(listing))
    return list(entries), list(problems)


@lru_cache(maxsize=16)
def _read_entries(folder: str, source: str, listing: tuple) -> tuple[tuple[ModelEntry, ...], tuple[str, ...]]:
    """The cards of a folder's checkpoints, read once per listing (names, sizes, modification
    times): every page view lists the models, and reading 28 headers each time was ~0.05 s of it."""
    entries, problems = [], []
    for name, _size, _mtime in listing:
        path = Path(folder) / name
        try:
            card = read_card(path)
            entries.append(ModelEntry(str(path.resolve()), source, card, checkpoint_id(path)))
        except (CheckpointError, OSError) as err:
            problems.append(str(err))
    return tuple(entries), tuple(problems)


def shipped_models() -> tuple[list[ModelEntry], list[str]]:
    """Shipped checkpoints and one message per file that could not be used."""
    return _entries_in(checkpoints_dir(), "shipped")


def runs_models() -> tuple[list[ModelEntry], list[str]]:
    return _entries_in(runs_dir(), "runs")


def session_entry(record: dict) -> ModelEntry | None:
    """A session model record (see :mod:`ui.state`) as an entry; ``None`` if its file is gone."""
    path = Path(record["path"])
    if not path.is_file():
        return None
    try:
        return ModelEntry(str(path), "session", record["card"], checkpoint_id(path), record.get("snapshots"),
                          uploaded=bool(record.get("uploaded")))
    except OSError:
        return None


# A model's id in a link: a shipped checkpoint by its file stem, one trained in the app as
# "run:STEM" (a file in the runs folder), one uploaded as "upload:STEM" (its content hash). Stems are
# file names the app made, so an id never names a path outside those folders.
# Runs saved before file names became portable may start with "archive:ID" (still read).
_LINK_STEM = re.compile(r"(archive:)?[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def link_id(entry: ModelEntry) -> str | None:
    """The model's id in a link (``None`` for a file outside the app's folders)."""
    path = Path(entry.path)
    if entry.source == "shipped":
        return path.stem
    for prefix, folder in (("run", runs_dir()), ("upload", uploads_dir())):
        try:
            if path.resolve().parent == folder.resolve():
                return f"{prefix}:{path.stem}"
        except OSError:
            pass
    return None


def entry_for_link(model_id: str) -> ModelEntry | None:
    """The model a link names, while its file exists; ``None`` otherwise."""
    prefix, _, stem = model_id.partition(":") if model_id.startswith(("run:", "upload:")) else ("", "", model_id)
    if not _LINK_STEM.fullmatch(stem) or stem.endswith(".part"):
        return None
    if prefix == "":
        return next((e for e in shipped_models()[0] if Path(e.path).stem == stem), None)
    folder = {"run": runs_dir(), "upload": uploads_dir()}.get(prefix)
    if folder is None:
        return None
    path = folder / f"{stem}.safetensors"
    if not path.is_file():
        return None
    try:
        card = read_card(path)
        if prefix == "upload":
            card = dict(card)
            card.setdefault("name", stem)
        return ModelEntry(str(path.resolve()), "session", card, checkpoint_id(path), uploaded=prefix == "upload")
    except (CheckpointError, OSError):
        return None


def compatible(entry: ModelEntry, channels: int, size: int) -> bool:
    return entry.shape == (channels, size)


def uploads_dir() -> Path:
    """Where uploaded checkpoints are kept: the app's cache folder, never the shipped or runs one."""
    from cl.archive import cache_dir

    return cache_dir() / "models"


def max_upload_model_bytes() -> int:

    return DEMO_MAX_UPLOAD_MODEL_BYTES if demo.enabled() else MAX_UPLOAD_MODEL_BYTES


def save_uploaded_checkpoint(data: bytes, name: str) -> tuple[str, dict]:
    """Validate an uploaded ``.safetensors`` checkpoint as the CLI does (header, card, encoder,
    every weight) and keep it; return ``(path, card)``. Raises :class:`CheckpointError` naming the
    upload, never the server's folders; a refused file is not kept."""
    import hashlib
    import tempfile

    from cl.checkpoints import load_checkpoint, write_atomically

    limit = max_upload_model_bytes()
    if not data:
        raise CheckpointError(f"{name}: the file is empty")
    if len(data) > limit:
        raise CheckpointError(f"{name}: {len(data) / 2**20:.1f} MiB is over the {limit / 2**20:.0f} MiB limit for a model")
    folder = uploads_dir()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.safetensors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload.", suffix=".part", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as err:
        raise CheckpointError(f"{name}: cannot be stored on the server ({err.strerror or err})") from None
    try:
        # The full load, not only the card: a truncated file or weights that do not fit the
        # encoder the card describes are refused now, not on the first page that uses them.
        _model, card = load_checkpoint(tmp)
    except CheckpointError as err:
        raise CheckpointError(str(err).replace(str(tmp), name).replace(str(Path(tmp).resolve()), name)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    try:
        write_atomically(path, data)  # same content, same name: a second upload replaces it harmlessly
    except OSError as err:
        raise CheckpointError(f"{name}: cannot be stored on the server ({err.strerror or err})") from None
    _prune_uploads(folder, keep=path)
    card = dict(card)
    card.setdefault("name", Path(name).stem)
    return str(path), card


def _prune_uploads(folder: Path, keep: Path, limit: int = MAX_UPLOADED_MODELS) -> None:
    """Bound the uploads folder on a shared server: the least recently uploaded files go first
    (a session still listing one finds its file gone and stops listing it)."""
    files = []
    for p in folder.glob("*.safetensors"):
        try:
            files.append((p.stat().st_mtime, p))
        except OSError:
            pass
    files.sort()
    for _mtime, p in files[: max(0, len(files) - limit)]:
        if p != keep:
            try:
                p.unlink()
            except OSError:
                pass
