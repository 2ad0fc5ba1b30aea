"""Checkpoints: one safetensors file per model, weights plus a JSON metadata card.

safetensors holds only tensors and a string map, so loading never unpickles anything: a
pickle (``torch.save`` file) or any foreign file is refused with a clear message before a byte
of it is executed. Writes are atomic (temporary file in the same folder, fsync, rename), so a
crash, a kill or a full disk never leaves a half-written file under the final name.

The card (``metadata["card"]``) holds: format version, encoder and input shape, the resolved
training config, data provenance (set, split, how many images, whether the split is complete),
metrics, the command that made it, and library versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .errors import CheckpointError

if TYPE_CHECKING:  # reading cards needs no torch: the app lists models before importing it
    import torch

    from .encoder import ConvNetEncoder, PaperEncoder

FORMAT = "contrastive-explorer/1"
MAX_HEADER = 16 * 1024 * 1024


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder a card's weights belong to (written by :func:`save_checkpoint`)."""

    name: str = "convnet"
    width: int = 0
    in_channels: int = 1
    image_size: int = 28
    embedding_dim: int = 0


@dataclass(frozen=True)
class Provenance:
    """What a card's figures were computed on: the data set, its split, how many images, whether
    the split is complete (:meth:`cl.data.ImageSet.provenance`)."""

    dataset: str | None = None
    label: str | None = None  # the set's display name, where it differs from ``dataset`` (an uploaded zip)
    split: str | None = None
    n_images: int = 0
    n_full: int = 0
    complete: bool = True
    source: str | None = None
    notes: list | str | None = None


@dataclass(frozen=True)
class ProtocolFigures:
    """One protocol's headline figures (:data:`cl.evaluation.SUMMARY_KEYS`); None where the card has none."""

    protocol: str | None = None
    dataset: str | None = None
    split: str | None = None
    n_test: int | None = None
    n_fit: int | None = None
    linear_acc: float | None = None
    top3_acc: float | None = None
    knn_acc: float | None = None
    precision_at_10: float | None = None
    n_classes: int | None = None
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    def summary(self) -> dict:
        """The figures as stored, with their intervals and flags (what :mod:`cl.uncertainty` reads)."""
        return self.raw


@dataclass(frozen=True)
class TrainingRecord:
    """How the training went: its time, epochs, images, why it stopped, the per-epoch history."""

    seconds: float = 0.0
    epochs_completed: int = 0
    images_seen: int = 0
    stopped: str = "completed"
    history: list = field(default_factory=list)
    world_size: int = 1
    backend: str | None = None
    global_batch: int | None = None


def _record(cls, raw):
    """``cls`` from the keys of ``raw`` it knows (a card written earlier may lack some: their
    defaults fill in); anything else in ``raw`` is left to the card's JSON."""
    raw = raw if isinstance(raw, dict) else {}
    known = {f.name: raw[f.name] for f in fields(cls) if f.name != "raw" and raw.get(f.name) is not None}
    return cls(**known, raw=raw) if "raw" in {f.name for f in fields(cls)} else cls(**known)


@dataclass(frozen=True)
class Card:
    """A checkpoint's card, typed. :meth:`from_dict` accepts every card written so far (older ones
    lack ``measures``, ``test_data``, ``made_by``, ...); :attr:`raw` is the JSON as stored, so that
    :meth:`to_dict` gives back exactly what was read, unknown keys included."""

    name: str | None
    command: str | None
    config: dict  # the resolved training config (cl.training.ResolvedConfig's fields)
    data: Provenance
    test_data: Provenance | None
    training: TrainingRecord
    metrics: dict[str, ProtocolFigures]  # protocol ("paper", "standard") -> figures
    measures: dict | None  # cl.measures on a sample of the test split; it names its own data
    encoder_spec: EncoderSpec
    n_parameters: int | None
    created: str | None
    made_by: str | None
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, card: dict) -> Card:
        metrics = card.get("metrics")
        if not isinstance(metrics, dict):
            metrics = {}
        measures = card.get("measures")
        return cls(name=card.get("name"), command=card.get("command"),
                   config=dict(card.get("config") or {}), data=_record(Provenance, card.get("data")),
                   test_data=_record(Provenance, card["test_data"]) if card.get("test_data") else None,
                   training=_record(TrainingRecord, card.get("training")),
                   metrics={p: _record(ProtocolFigures, m) for p, m in metrics.items() if isinstance(m, dict)},
                   measures=measures if isinstance(measures, dict) else None,
                   encoder_spec=_record(EncoderSpec, card.get("encoder_spec")), n_parameters=card.get("n_parameters"),
                   created=card.get("created"), made_by=card.get("made_by"), raw=card)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Card:
        """The card of the checkpoint at ``path`` (its header only, as :func:`read_card`)."""
        return cls.from_dict(read_card(path))

    def to_dict(self) -> dict:
        return self.raw

    @property
    def dataset(self) -> str | None:
        """The data set it was trained on (from the provenance, else the config)."""
        return self.data.dataset or self.config.get("dataset")

    def figures(self, protocol: str = "paper") -> ProtocolFigures:
        """``protocol``'s figures; all None when the card has none (an unevaluated model)."""
        return self.metrics.get(protocol) or ProtocolFigures()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:  # read from the installed metadata: importing scikit-learn costs a second or more
        sklearn_version = version("scikit-learn")
    except PackageNotFoundError:
        sklearn_version = None
    return {"cl": __import__("cl").__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn_version, "python": platform.python_version()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, card: dict) -> Path:
    """Write ``model``'s weights and ``card`` atomically to ``path`` (``.safetensors``)."""
    from safetensors.torch import save as st_save

    from .encoder import ConvNetEncoder

    path = Path(path)
    card = dict(card)
    card.setdefault("format", FORMAT)
    card.setdefault("versions", versions())
    # The spec must describe the model actually saved, or the file cannot be loaded back.
    is_convnet = isinstance(model, ConvNetEncoder)
    encoder = cast("PaperEncoder | ConvNetEncoder", model)  # the two encoders a card can describe
    card["encoder_spec"] = {
        "name": "convnet" if is_convnet else "paper",
        "width": int(cast("torch.nn.Conv2d", cast("ConvNetEncoder", model).backbone[0]).out_channels) if is_convnet else 0,
        "in_channels": int(encoder.in_channels),
        "image_size": int(encoder.image_size),
        "embedding_dim": int(encoder.embedding_dim),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        blob = st_save(state, metadata={"card": json.dumps(card, sort_keys=True)})
    except Exception as err:  # noqa: BLE001 - the serialiser and the encoder builder raise many types; each becomes one CheckpointError
        raise CheckpointError(f"cannot serialise the model: {err}") from None
    folder = path.parent  # Path("m.safetensors").parent is Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot write to {folder}: {err.strerror or err}") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        write_atomically(path, blob, 0o666 & ~umask)  # an ordinary file, not mkstemp's 0600
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def _describe_foreign(head: bytes) -> str:
    if head[:2] == b"PK":
        return "a zip archive (probably a torch.save pickle); pickles are never loaded because they can run code"
    if head[:1] == b"\x80":
        return "a Python pickle; pickles are never loaded because they can run code"
    return "not a safetensors checkpoint"


def read_card(path: str | os.PathLike) -> dict:
    """Read only the metadata card (cheap: the header, not the weights)."""
    path = Path(path)
    header = _read_header(path)
    return _card_from_header(path, header)


def _read_header(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: file is empty or truncated")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or n < 2:
                raise CheckpointError(f"{path}: {_describe_foreign(head)}")
            raw = fh.read(n)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror})") from None
    if len(raw) < n:
        raise CheckpointError(f"{path}: truncated header")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: {_describe_foreign(head)}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors checkpoint")
    return header


def _card_from_header(path: Path, header: dict) -> dict:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or "card" not in meta:
        raise CheckpointError(f"{path}: a safetensors file, but not a Contrastive Explorer checkpoint (no card)")
    try:
        card = json.loads(meta["card"])
    except (TypeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: the metadata card is not valid JSON") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT or "encoder_spec" not in card:
        raise CheckpointError(f"{path}: unsupported checkpoint format {card.get('format') if isinstance(card, dict) else None!r}")
    spec = card["encoder_spec"]
    # Bound what a (possibly hostile) card makes us build: the encoder runs a dry forward pass
    # of one image_size x image_size input when it is constructed.
    try:
        ok = (isinstance(spec, dict) and 1 <= int(spec["in_channels"]) <= 4
              and 1 <= int(spec["image_size"]) <= 1024 and 0 <= int(spec.get("width") or 0) <= 1024)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: the card's encoder description is invalid or out of range")
    return card


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load ``(model, card)``; raise :class:`CheckpointError` on anything wrong."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .encoder import build_encoder

    path = Path(path)
    card = read_card(path)
    spec = card["encoder_spec"]
    try:
        model = build_encoder(spec["name"], int(spec["in_channels"]), int(spec["image_size"]), int(spec.get("width") or 32))
    except Exception as err:  # noqa: BLE001 - the serialiser and the encoder builder raise many types; each becomes one CheckpointError
        raise CheckpointError(f"{path}: the card describes an encoder we cannot build ({err})") from None
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated weights ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the encoder in the card ({first})") from None
    model.eval()
    # Channels-last weights match the channels-last batches `embed` feeds; mixed layouts send
    # oneDNN down a slower path (10,000 MNIST images: 2.6 s instead of 3.8 s on 2 cores).
    return model.to(device).to(memory_format=torch.channels_last), card


def as_card(card: Card | dict) -> Card:
    """``card`` as a :class:`Card` (a card's JSON dict is read with :meth:`Card.from_dict`)."""
    return card if isinstance(card, Card) else Card.from_dict(card)


def check_compatible(card: Card | dict, channels: int, size: int, dataset: str | None = None,
                     path: str = "checkpoint") -> None:
    """Refuse a model whose input shape does not fit the data it is asked to embed."""
    c = as_card(card)
    spec = c.encoder_spec
    if int(spec.in_channels) != channels or int(spec.image_size) != size:
        raise CheckpointError(
            f"{path}: the model takes {spec.in_channels}x{spec.image_size}x{spec.image_size} images "
            f"(trained on {c.data.dataset or '?'}) but {dataset or 'the data'} has {channels}x{size}x{size}")


def checkpoint_id(path: str | os.PathLike) -> str:
    """A short content id (path, size, mtime) used as a cache key by the app."""
    p = Path(path)
    st = p.stat()
    return hashlib.sha1(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint's tensor bytes only (not its header), so rewriting the card leaves
    it unchanged while any change to a weight changes it."""
    import hashlib

    path = Path(path)
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(8 + n)
        h = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rewrite_card(path: str | os.PathLike, card: dict) -> Path:
    """Replace a checkpoint's card, keeping its tensor bytes identical (atomic, like saving).

    safetensors stores data offsets relative to the end of the header, so a header of another
    length stays valid."""
    path = Path(path)
    header = _read_header(path)
    _card_from_header(path, header)  # only our own checkpoints
    header.setdefault("__metadata__", {})["card"] = json.dumps(card, sort_keys=True)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        fh.seek(8 + n)
        data = fh.read()
    write_atomically(path, struct.pack("<Q", len(raw)) + raw + data, path.stat().st_mode & 0o777)
    return path


def write_atomically(path: Path, blob: bytes, mode: int = 0o644) -> None:
    """Write ``blob`` to a temporary file beside ``path``, sync it, give it ``mode`` and rename it
    over ``path``: readers see the old file or the new one, never a part. On any failure, Ctrl-C
    included, the temporary file is removed and the old file is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def shipped_checkpoints_dir() -> Path:
    """The shipped checkpoints: ``$CL_CHECKPOINTS_DIR``, else ``checkpoints/`` beside the package."""
    return Path(os.environ.get("CL_CHECKPOINTS_DIR") or Path(__file__).resolve().parent.parent / "checkpoints").expanduser()
