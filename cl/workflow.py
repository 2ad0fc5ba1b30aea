"""The two workflows every front end shares: make a model, and open a model on data.

:func:`make_model` is train -> evaluate -> card -> save, used by ``python -m cl train`` (and so by
``grid`` and the scripts that build the shipped checkpoints) and by the app's Train page. The card's
``command`` comes from :func:`train_command`, which writes every resolved setting as a flag, so a
card replays to the same configuration even after a recipe's defaults change.

:func:`open_model` is load checkpoint -> load data -> check that they fit, used by the commands
that read a model (evaluate, neighbors, project, export) and by the app's export.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoints import Card

if TYPE_CHECKING:  # torch is imported where a model is made: the pages that only read cards stay light
    import torch

    from .data import ImageSet
from .errors import ConfigError

# TrainConfig fields that describe this machine, not the model: a replay picks its own.
MACHINE_FIELDS = ("device", "threads")

# TrainConfig field -> command-line flag, for the fields that take a value.
VALUE_FLAGS = {
    "dataset": "--dataset", "recipe": "--recipe", "augmentation": "--augmentation", "loss": "--loss",
    "encoder": "--encoder", "encoder_width": "--encoder-width", "views": "--views", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "optimizer": "--optimizer", "weight_decay": "--weight-decay",
    "temperature": "--temperature", "margin": "--margin", "negatives": "--negatives", "mining": "--mining",
    "max_per_class": "--max-per-class", "seed": "--seed", "precision": "--precision",
    "time_budget": "--time-budget", "device": "--device", "threads": "--threads",
}
# Boolean fields: (flag when True, flag when False).
SWITCH_FLAGS = {
    "augment_once": ("--augment-once", "--fresh-augment"),
    "augment_anchor": ("--augment-anchor", "--no-augment-anchor"),
}


def _value_text(value) -> str:
    # repr keeps every digit of a float (3e-3 stays 0.003, never a rounded "%g")
    return repr(value) if isinstance(value, float) else str(value)


def train_command(config, out: str | None = None) -> str:
    """The ``python -m cl train`` line that reproduces ``config`` (resolved first unless it is).

    Every setting is written out, not only those that differ from the recipe, so the line means the
    same thing whatever later versions choose as defaults. The machine's own choices (device,
    threads) are left to whoever replays it.
    """
    from .training import ResolvedConfig, resolve_config

    c = config if isinstance(config, ResolvedConfig) else resolve_config(config)
    words = ["python", "-m", "cl", "train"]
    for f in fields(c):
        name, value = f.name, getattr(c, f.name)
        if name in MACHINE_FIELDS or value is None:
            continue
        if name == "encoder_width" and c.encoder == "paper":
            continue  # the study's encoder has no width to choose
        if name in SWITCH_FLAGS:
            words.append(SWITCH_FLAGS[name][0 if value else 1])
        else:
            words += [VALUE_FLAGS[name], _value_text(value)]
    if out is not None:
        words += ["--out", str(out)]
    return " ".join(shlex.quote(w) for w in words)


def config_from_args(args):
    """A :class:`~cl.training.TrainConfig` from ``python -m cl train``'s parsed arguments."""
    from .training import TrainConfig

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{k: v for k, v in given.items() if v is not None})


def load_training_data(dataset: str, data_dir=None, evaluate: bool = True, download: bool = True):
    """``(train_set, test_set)`` for training on ``dataset``; ``test_set`` is None without evaluation.
    The train split never falls back to the shipped gallery (that is test images)."""
    from .data import load_dataset

    train_set = load_dataset(dataset, "train", data_dir, download=download, allow_gallery=False)
    test_set = load_dataset(dataset, "test", data_dir, download=download) if evaluate else None
    return train_set, test_set


def evaluate_for_card(model, train_set, test_set) -> dict:
    """Both protocols' summaries, as a card stores them (probe seed 0)."""
    from .evaluation import embed, evaluate_embeddings, summary

    test_emb = embed(model, test_set.images)
    train_emb = embed(model, train_set.images)
    return {p: summary(evaluate_embeddings(test_emb, test_set, p, train_emb, train_set, seed=0))
            for p in ("paper", "standard")}


@dataclass
class MadeModel:
    card: Card  # as saved (read back from the file) when ``saved``, else as it would have been
    saved: bool
    result: object  # cl.training.TrainResult
    stopped: str  # "completed", "time_budget", "cancelled" (during training) or "cancelled_before_save"


def make_model(config, out: str | Path, *, train_set=None, test_set=None, data_dir=None, evaluate: bool = True,
               made_by: str = "cli", progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
               on_epoch_end: Callable | None = None, on_stage: Callable[[str, str], None] | None = None,
               tensorboard: str | Path | None = None) -> MadeModel:
    """Train ``config``, evaluate it under both protocols, build its card and save it atomically.

    Pass ``train_set``/``test_set`` when already loaded (the app shows them before training starts);
    ``on_stage(stage, message)`` hears "training", "evaluating" and "saving". A cancel (``should_stop``)
    during training or before the save writes nothing, so earlier files are never touched.

    ``tensorboard``: a new or empty folder for a TensorBoard run (:mod:`cl.tensorboard_log`): every
    epoch's history row as it ends and, once saved, the final figures and the test embeddings for
    the projector. Without an ``on_epoch_end`` of the caller's, each epoch then also gets kNN-30
    accuracy, alignment, uniformity and RankMe (:func:`cl.tensorboard_log.epoch_figures`).
    """
    from . import distributed
    from .checkpoints import save_checkpoint
    from .data import portable_provenance
    from .training import ResolvedConfig, resolve_config, train

    def stage(name: str, message: str) -> None:
        if on_stage is not None:
            on_stage(name, message)

    resolved = config if isinstance(config, ResolvedConfig) else resolve_config(config)
    if tensorboard is not None:
        from .tensorboard_log import check_run_dir

        if distributed.current() is not None or distributed.launched_rank() is not None:
            raise ConfigError("--tensorboard logs a training in one process; run it without torchrun")
        check_run_dir(tensorboard)  # before any work: an earlier run is never overwritten
    needs_test = evaluate or tensorboard is not None
    if train_set is None:  # under torchrun one node may lack the data: agree() tells every rank
        train_set, test_set = distributed.agree(
            lambda: load_training_data(resolved.dataset, data_dir, needs_test and distributed.is_main()))
    elif needs_test and test_set is None:
        raise ConfigError("make_model: evaluating (or a TensorBoard log) needs the test set")
    out = Path(out)
    log = None
    if tensorboard is not None:
        from .tensorboard_log import TensorBoardLog, epoch_figures

        log = TensorBoardLog(tensorboard, about=f"`{train_command(resolved, out=out.name)}`\n\nTrained on "
                                                f"{train_set.describe()}; tested on {test_set.describe()}.")
        if on_epoch_end is None:
            on_epoch_end = epoch_figures(test_set, resolved.augmentation)
    if evaluate:
        from .evaluation import preload_probe_modules

        preload_probe_modules()  # scikit-learn's import overlaps the training, not the evaluation
    stage("training", f"training on {train_set.describe()}")
    try:
        result = train(resolved, train_set, progress=progress, should_stop=should_stop, on_epoch_end=on_epoch_end,
                       on_history=log.epoch if log is not None else None)
    except BaseException:
        if log is not None:
            log.close()  # the epochs so far stay readable
        raise
    if not distributed.is_main():  # under torchrun rank 0 alone evaluates, builds the card and saves
        return MadeModel(Card.from_dict({}), False, result, result.stopped)
    metrics, measures = {}, None
    if evaluate and result.stopped != "cancelled":
        stage("evaluating", f"evaluating on {test_set.describe()}")
        metrics = evaluate_for_card(result.model, train_set, test_set)
        from .measures import CARD_LIMIT, measures_for_card

        stage("evaluating", f"alignment, uniformity and RankMe on {min(CARD_LIMIT, len(test_set)):,} "
                            f"{test_set.name} test images")
        measures = measures_for_card(result.model, test_set, resolved.augmentation)
    card = {
        "name": out.stem,
        "command": train_command(resolved, out=out.name),
        "config": resolved.to_dict(),
        "data": portable_provenance(train_set.provenance(), data_dir),
        "test_data": portable_provenance(test_set.provenance(), data_dir) if test_set is not None else None,
        "training": {"seconds": round(result.seconds, 2), "epochs_completed": len(result.history),
                     "images_seen": result.images_seen, "stopped": result.stopped, "history": result.history,
                     # processes that trained it together; batch_size is the global batch, split over them
                     "world_size": result.world_size, "backend": result.backend,
                     "global_batch": resolved.batch_size},
        "metrics": metrics,
        "measures": measures,  # cl.measures on a sample of the test split; it names its data
        "n_parameters": result.n_parameters,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "made_by": made_by,
    }
    if result.stopped == "cancelled" or (should_stop is not None and should_stop()):
        if log is not None:
            log.close()
        stopped = "cancelled" if result.stopped == "cancelled" else "cancelled_before_save"
        return MadeModel(Card.from_dict(card), False, result, stopped)
    stage("saving", f"saving {out.name}")
    save_checkpoint(out, result.model, card)  # atomic: temp file + rename
    saved = Card.read(out)
    if log is not None:
        stage("saving", f"writing the TensorBoard run {log.run_dir}")
        log.finish(saved, result.model, test_set, out.stem, provenance=portable_provenance(test_set.provenance(), data_dir))
    return MadeModel(saved, True, result, result.stopped)


@dataclass
class OpenedModel:
    model: torch.nn.Module  # in eval mode
    card: Card
    dataset: str
    data: ImageSet


def data_for_card(card: Card | dict, dataset: str | None = None, split: str = "test", data_dir=None,
                  download: bool = True, source: str = "") -> tuple[str, ImageSet]:
    """``(name, images)``: one split of the card's data set (or ``dataset``), checked to fit the model.
    A missing test split falls back to the shipped gallery."""
    from .checkpoints import as_card, check_compatible
    from .data import load_dataset

    card = as_card(card)
    source = source or card.name or "checkpoint"
    name = dataset or card.data.dataset
    if not name:
        raise ConfigError(f"{source}: the card names no data set; pass --dataset")
    data = load_dataset(name, split, data_dir, download=download, allow_gallery=(split == "test"))
    check_compatible(card, data.channels, data.size, name, source)
    return name, data


def open_model(checkpoint: str | os.PathLike, dataset: str | None = None, split: str = "test", data_dir=None,
               download: bool = True) -> OpenedModel:
    """Load a checkpoint (no unpickling) and the data it is to run on, and check that they fit."""
    from .checkpoints import load_checkpoint

    model, raw_card = load_checkpoint(checkpoint)
    card = Card.from_dict(raw_card)
    name, data = data_for_card(card, dataset, split, data_dir, download, source=Path(checkpoint).name)
    return OpenedModel(model, card, name, data)


def export_zip(checkpoint: str | os.PathLike, dataset: str, split: str, fmt: str, work_dir: str | os.PathLike,
               data_dir=None) -> bytes:
    """Embed ``split`` of ``dataset`` with ``checkpoint`` and return the export as one zip (what the
    app's download button serves). Files are staged in a temporary folder under ``work_dir``."""
    import shutil
    import tempfile

    from .data import portable_provenance
    from .evaluation import embed
    from .export import export_embeddings, zip_folder

    opened = open_model(checkpoint, dataset, split, data_dir, download=False)
    model, card, data = opened.model, opened.card, opened.data
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export.", dir=work_dir)
    try:
        export_embeddings(embed(model, data.images), data, fmt, tmp, card=card.to_dict(), checkpoint=card.name or str(checkpoint),
                          provenance=portable_provenance(data.provenance(), data_dir))
        return zip_folder(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
