"""Training logs TensorBoard reads: one run folder per training.

What a run folder holds (``tensorboard --logdir`` on it, or on the folder above several runs):

- per-epoch scalars (``torch.utils.tensorboard.SummaryWriter``; step = epoch), from the training
  history the checkpoint's card keeps, see :data:`SCALARS`;
- at the end, the card's final figures (both evaluation protocols, and alignment, uniformity and
  RankMe on its measured sample) as ``final/...`` scalars at the last epoch;
- at the end, the test split's embeddings for TensorBoard's projector: :func:`cl.export.export_embeddings`
  in its ``projector`` format (``tensors.tsv``, ``metadata.tsv``, ``sprite.png``,
  ``projector_config.pbtxt``, ``export.json``) written into the run folder itself, where the
  projector plugin looks for ``projector_config.pbtxt``;
- a text note saying which data every figure came from.

One run, one folder: a folder that already holds files is refused before training starts, so no
earlier run is overwritten or mixed into this one.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .checkpoints import Card

INSTALL_HINT = "pip install tensorboard (or the package's extra: pip install 'contrastive-explorer[tensorboard]')"
# history key -> (TensorBoard tag, what it is); rows without a key (an epoch not measured) skip it
SCALARS = {
    "loss": ("train/loss", "mean training loss over the epoch's batches"),
    "images_per_s": ("train/images_per_s", "training images per second over the epoch (augmentation, forward, "
                                           "backward, optimiser step)"),
    "seconds": ("train/epoch_seconds", "the epoch's training time"),
    "knn_acc": ("test/knn30_accuracy", "kNN-30 accuracy on the test split, paper protocol (fitted on a seeded "
                                       "80 %, scored on the other 20 %)"),
    "alignment": ("space/alignment", "mean squared distance of two augmented views' normalised embeddings "
                                     "(0 = they coincide)"),
    "uniformity": ("space/uniformity", "log mean Gaussian potential of the normalised test embeddings "
                                       "(0 = collapsed; lower = more spread)"),
    "rankme": ("space/effective_rank", "RankMe: exp(entropy of the normalised singular values)"),
}
FINAL_METRICS = ("linear_acc", "top3_acc", "knn_acc", "precision_at_10")
FINAL_MEASURES = ("alignment", "uniformity", "rankme")
EPOCH_SAMPLE = 1000  # test images the per-epoch alignment, uniformity and RankMe are measured on


def require_tensorboard() -> None:
    """Raise a one-line :class:`ConfigError` unless TensorBoard's writer can run here."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"--tensorboard needs TensorBoard, not installed here: {INSTALL_HINT}")


def check_run_dir(path: str | os.PathLike) -> Path:
    """Refuse (one line, nothing written) a run folder that is a file or already holds anything."""
    require_tensorboard()
    run_dir = Path(path)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"TensorBoard folder {run_dir} is a file; give a folder for this run")
    if run_dir.is_dir():
        names = sorted(p.name for p in run_dir.iterdir())
        if names:
            what = ("another TensorBoard run" if any(n.startswith("events.out.tfevents") or n == "projector_config.pbtxt"
                                                     for n in names) else f"{len(names)} file(s)")
            raise ConfigError(f"TensorBoard folder {run_dir} already holds {what}; give each training a new or empty "
                              f"folder (e.g. {run_dir / 'NAME'}); nothing was written")
    return run_dir


def epoch_figures(test_set, augmentation: str, sample: int = EPOCH_SAMPLE, seed: int = 0) -> Callable:
    """An ``on_epoch_end(model, epoch)`` for :func:`cl.training.train` that adds to each epoch's
    history row: ``knn_acc`` (:func:`cl.evaluation.knn_accuracy` on the whole test split) and
    ``alignment``, ``uniformity``, ``rankme`` (:func:`cl.measures.measures_on_sample` on a fixed
    seeded sample of ``sample`` test images, two views each from ``augmentation``), with
    ``measured_on`` (that sample's size) and ``measure_seconds``."""
    import torch

    from .evaluation import knn_accuracy
    from .measures import measures_on_sample, sample_indices

    idx = sample_indices(len(test_set), sample, seed)
    images, labels = test_set.images[torch.from_numpy(idx)], test_set.labels.numpy()[idx]

    def on_epoch_end(model, epoch: int) -> dict:
        m = measures_on_sample(model, images, labels, augmentation, seed=seed)
        return {"knn_acc": knn_accuracy(model, test_set), "alignment": m["alignment"], "uniformity": m["uniformity"],
                "rankme": m["rankme"], "measured_on": int(len(idx)), "measure_seconds": m["seconds"]}

    return on_epoch_end


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TensorBoardLog:
    """One training's run folder. :meth:`epoch` after every epoch, :meth:`finish` once at the end."""

    def __init__(self, run_dir: str | os.PathLike, about: str = ""):
        self.run_dir = check_run_dir(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", dir=self.run_dir)  # root ignores permission bits
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise ConfigError(f"cannot write to TensorBoard folder {self.run_dir}: {err.strerror or err}") from None
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir), flush_secs=10)
        lines = [f"- `{tag}`: {what}" for tag, what in SCALARS.values()]
        self.writer.add_text("about", (about + "\n\n" if about else "") + "Scalars per epoch (step = epoch):\n\n"
                             + "\n".join(lines), global_step=0)
        self.last_epoch = 0

    def epoch(self, row: dict) -> None:
        """Write one history row's figures (:data:`SCALARS`) at step ``row['epoch']``."""
        step = int(row["epoch"])
        for key, (tag, _) in SCALARS.items():
            if _finite(row.get(key)):
                self.writer.add_scalar(tag, float(row[key]), global_step=step)
        self.last_epoch = step
        self.writer.flush()  # a live `tensorboard` shows the epoch now, not after flush_secs

    def finish(self, card: Card, model, test_set, name: str, provenance: dict | None = None) -> dict:
        """The card's final figures as ``final/...`` scalars, and the test embeddings with their
        sprite for the projector; returns what :func:`cl.export.export_embeddings` wrote."""
        from .evaluation import embed
        from .export import export_embeddings

        step = self.last_epoch
        for protocol, m in card.metrics.items():
            for key in FINAL_METRICS:
                if _finite(getattr(m, key)):
                    self.writer.add_scalar(f"final/{protocol}/{key}", float(getattr(m, key)), global_step=step)
        measures = card.measures or {}
        for key in FINAL_MEASURES:
            if _finite(measures.get(key)):
                self.writer.add_scalar(f"final/measures/{key}", float(measures[key]), global_step=step)
        self.writer.flush()
        try:
            written = export_embeddings(embed(model, test_set.images), test_set, "projector", self.run_dir, card=card.to_dict(),
                                        checkpoint=name, provenance=provenance)
        finally:
            self.writer.close()
        return written

    def close(self) -> None:
        self.writer.close()

