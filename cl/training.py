"""Training: a config object, two recipes, and one loop for every loss.

``TrainConfig`` holds what a user may set; :func:`resolve_config` fills what they left out from
the recipe:

- ``paper`` reproduces the study: its encoder, SGD, batch 1,024, pairwise lr 0.05 for 5 epochs,
  triplet lr 0.15 for 10 epochs, up to 5,000 anchors per class, label-aware negatives, the
  positive augmented *once* when the pair lists are built, the anchor only normalised.
- ``default`` is ours: a small ConvNet with a projection head, SupCon loss on two fresh
  augmented views per image every epoch, AdamW with warm-up and cosine decay.

The loop draws everything as index tensors into uint8 images held in memory, augments whole
batches with :mod:`cl.augmentations`, runs the encoder in channels-last layout, and calls a
progress callback and a cancel check every step.

Under ``torchrun`` (:mod:`cl.distributed`) the same loop runs on every rank: each draws the same
epoch order (same seed), takes its contiguous share of every global batch of ``batch_size``
items, augments it with its own random stream, and DDP averages the gradients so that the
optimiser steps once per global batch. NT-Xent, SupCon and the miners gather every rank's
embeddings (with gradients) and compute the loss over the whole global batch; the per-item
losses (pairwise, contrastive, the study's triplets) weight each rank's mean by its share, so
the averaged gradient is the global batch's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import distributed
from .augmentations import AUGMENTATIONS, Augmentation, augment_to_uint8, augment_uint8, get_augmentation
from .data import ImageSet, to_float
from .encoder import ENCODERS, build_encoder, count_parameters
from .errors import ConfigError
from .losses import LABELS, LOSS_CLASSES, PAIRS, TRIPLETS, VIEWS, ContrastiveLoss, build_loss, loss_class, loss_default
from .optim import PlainAdamW, PlainSGD, build_optimizer, warmup_cosine
from .samplers import MINERS, NEGATIVES, draw_negatives, mine_triplets, paper_anchors

RECIPES = ("default", "paper")
PRECISIONS = ("auto", "fp32", "bf16")  # "auto" is resolved to one of the other two

# Our recipe's per-data-set choices, made for live training on 2 cores; the trials behind each
# are in docs/recipes.md. SupCon throughout; "views" 1 takes an image's positives from its class.
DEFAULT_RECIPE = {
    # two views: one view's accuracy depended on the thread count (0.98 vs 0.95 on 108 test images)
    "digits": dict(augmentation="affine", epochs=18, batch_size=128, lr=3e-3, encoder_width=16, views=2),
    # one view: 8 epochs reach 0.991-0.992 over three seeds in under 30 s
    "mnist": dict(augmentation="affine", epochs=8, batch_size=64, lr=5e-3, encoder_width=16, views=1),
    # no augmentation: within a few epochs it only slowed learning (0.874 with affine, 0.922 without)
    "fashion-mnist": dict(augmentation="none", epochs=5, batch_size=128, lr=5e-3, encoder_width=24, views=1),
    # two views: with one, SupCon did not learn in 8 epochs (loss stayed near chance)
    "cifar10": dict(augmentation="crop", epochs=75, batch_size=256, lr=3e-3, encoder_width=32, views=2),
}
# an unknown image set: the CIFAR-10 choice with fewer epochs
DEFAULT_RECIPE_OTHER = dict(augmentation="crop", epochs=30, batch_size=256, lr=3e-3, encoder_width=32, views=2)


@dataclass
class TrainConfig:
    """What a user may choose. ``None`` means "the recipe decides"."""

    dataset: str = "digits"
    recipe: str = "default"
    augmentation: str | None = None
    loss: str | None = None
    encoder: str | None = None
    encoder_width: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    temperature: float | None = None
    margin: float | None = None
    negatives: str = "label-aware"
    mining: str = "none"
    augment_once: bool | None = None
    augment_anchor: bool | None = None
    views: int | None = None  # augmented views per image for SupCon / NT-Xent / mined triplets
    max_per_class: int = 5000
    seed: int = 0
    time_budget: float | None = None  # seconds of training; stop cleanly when spent
    device: str = "auto"
    threads: int | None = None
    # "bf16": the encoder's training passes under bfloat16 autocast (weights, optimiser and loss
    # stay float32); "auto" picks it where the hardware computes bf16 natively.
    precision: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ResolvedConfig:
    """A :class:`TrainConfig` with every choice made and checked; only :func:`resolve_config` makes one.

    Same fields in the same order (a card's ``config`` and the replay command list them so)."""

    dataset: str
    recipe: str
    augmentation: str
    loss: str
    encoder: str
    encoder_width: int
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    temperature: float
    margin: float | None  # None: the loss class's own default
    negatives: str
    mining: str
    augment_once: bool
    augment_anchor: bool
    views: int
    max_per_class: int
    seed: int
    time_budget: float | None
    device: str
    threads: int | None
    precision: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_config(config: TrainConfig) -> ResolvedConfig:
    """Fill every ``None`` from the recipe and validate; the one place a :class:`ResolvedConfig` is made."""
    c = config
    if c.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {c.recipe!r}; choose one of {', '.join(RECIPES)}")
    if c.recipe == "paper":
        loss = c.loss or "triplet"
        pair_like = loss_class(loss).needs == PAIRS
        base = dict(augmentation="none", loss=loss, encoder="paper", encoder_width=0,
                    epochs=5 if pair_like else 10, batch_size=1024, lr=0.05 if pair_like else 0.15,
                    optimizer="sgd", weight_decay=0.0, augment_once=True, augment_anchor=False, views=2)
    else:
        per_set = DEFAULT_RECIPE.get(c.dataset, DEFAULT_RECIPE_OTHER)
        base = dict(loss="supcon", encoder="convnet", optimizer="adamw", weight_decay=5e-4,
                    augment_once=False, augment_anchor=True, **per_set)
        if c.loss is not None and loss_class(c.loss).needs != LABELS:
            base["views"] = 2  # one view takes its positives from the labels; other losses keep two
    # The study's recipe stays in float32 so that it reproduces the study's numbers.
    base["precision"] = "fp32" if c.recipe == "paper" else "auto"
    # the loss's own default temperature; 0.1 recorded for the losses without one
    base.update(temperature=loss_default(c.loss or str(base["loss"]), "temperature") or 0.1, margin=None)
    filled = {k: (getattr(c, k) if getattr(c, k) is not None else v) for k, v in base.items()}
    if filled["encoder"] == "paper":
        filled["encoder_width"] = 0
    elif not filled["encoder_width"]:
        filled["encoder_width"] = 32
    if filled["precision"] == "auto":
        filled["precision"] = auto_precision(c.device)
    out = ResolvedConfig(**{**asdict(c), **filled})
    _validate(out)
    return out


def auto_precision(device: str = "auto") -> str:
    """"bf16" where the device computes bfloat16 natively, else "fp32".

    On a CPU that means AVX-512 BF16 or AMX (oneDNN's check): measured on a 2-core AMD EPYC
    (Zen 4) our ConvNet's training step runs 2.3x faster on CIFAR-10 (width 32, batch 256) and
    1.8x on Fashion-MNIST (width 24); without native support bf16 is emulated and slower."""
    try:
        dev = pick_device(device)
        if dev.type == "cpu":
            return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
        if dev.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    except (ConfigError, RuntimeError, AttributeError):
        pass
    return "fp32"


def _validate(c: ResolvedConfig) -> None:
    needs = LOSS_CLASSES[c.loss].needs if c.loss in LOSS_CLASSES else None
    checks = [
        (c.augmentation in AUGMENTATIONS, f"unknown augmentation {c.augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}"),
        (c.loss in LOSS_CLASSES, f"unknown loss {c.loss!r}; choose one of {', '.join(LOSS_CLASSES)}"),
        (c.encoder in ENCODERS, f"unknown encoder {c.encoder!r}; choose one of {', '.join(ENCODERS)}"),
        (c.negatives in NEGATIVES, f"unknown negatives {c.negatives!r}; choose one of {', '.join(NEGATIVES)}"),
        (c.mining in MINERS, f"unknown mining {c.mining!r}; choose one of {', '.join(MINERS)}"),
        (c.optimizer in ("sgd", "adamw"), f"unknown optimizer {c.optimizer!r}; use sgd or adamw"),
        (isinstance(c.epochs, int) and c.epochs >= 1, f"epochs must be a positive integer, got {c.epochs}"),
        (isinstance(c.batch_size, int) and c.batch_size >= 2, f"batch size must be at least 2, got {c.batch_size}"),
        (c.lr is not None and math.isfinite(c.lr) and c.lr > 0, f"learning rate must be positive, got {c.lr}"),
        (c.weight_decay is not None and math.isfinite(c.weight_decay) and c.weight_decay >= 0,
         f"weight decay must be 0 or more, got {c.weight_decay}"),
        (c.max_per_class >= 1, f"max per class must be positive, got {c.max_per_class}"),
        (c.time_budget is None or c.time_budget > 0, f"time budget must be positive, got {c.time_budget}"),
        (c.threads is None or c.threads >= 1, f"threads must be positive, got {c.threads}"),
        (c.mining == "none" or needs == TRIPLETS, "online mining applies to a triplet loss only"),
        (c.temperature is None or c.temperature > 0, f"temperature must be positive, got {c.temperature}"),
        (c.views in (1, 2), f"views must be 1 or 2, got {c.views}"),
        (c.precision in ("fp32", "bf16"), f"unknown precision {c.precision!r}; choose one of {', '.join(PRECISIONS)}"),
        (c.views == 2 or needs == LABELS or (needs == TRIPLETS and c.mining != "none"),
         "one view per image needs class positives from the batch: SupCon or a mined triplet loss"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA GPU is available")
    return dev


@dataclass
class TrainResult:
    model: torch.nn.Module
    config: ResolvedConfig
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    n_train: int = 0
    images_seen: int = 0
    stopped: str = "completed"  # or "cancelled", "time_budget"
    n_parameters: int = 0
    world_size: int = 1  # processes that trained it together (torchrun), each on its share
    backend: str | None = None  # torch.distributed backend (gloo, nccl) when world_size > 1


class Cancelled(Exception):
    pass


def _encode(run: Run, x: torch.Tensor) -> torch.Tensor:
    """The encoder's training pass, under bf16 autocast when the config asks; float32 out, so
    that every loss is computed in float32 (SupCon's logits are similarities / 0.1, where bf16's
    8-bit mantissa would err by ~0.04)."""
    if run.c.precision != "bf16":
        return run.model(x)
    with torch.autocast(run.device.type, dtype=torch.bfloat16):
        z = run.model(x)
    return z.float()


def _prepare_batch(images: torch.Tensor, aug, gen, device, augment: bool) -> torch.Tensor:
    x = augment_uint8(images, aug, gen) if augment else to_float(images)
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def batch_kind(c: ResolvedConfig) -> str:
    """How the loop builds ``c``'s batches, from what its loss needs (:data:`cl.losses.NEEDS`):
    ``pairs`` and ``triplets`` from the study's sampler, or ``views`` (augmented views of images
    with their labels; for a triplet loss with online mining the miner picks the triplets)."""
    needs = loss_class(c.loss).needs
    if needs == PAIRS or (needs == TRIPLETS and c.mining == "none"):
        return needs
    return VIEWS


@dataclass
class Run:
    """Everything one training needs, built once by :func:`setup`."""

    c: ResolvedConfig
    device: torch.device
    model: torch.nn.Module  # what the steps call: the encoder, or DDP around it
    opt: PlainSGD | PlainAdamW
    loss_fn: ContrastiveLoss
    aug: Augmentation
    rng: np.random.Generator
    gen: torch.Generator
    images: torch.Tensor
    labels: torch.Tensor
    labels_np: np.ndarray
    kind: str  # batch_kind(c)
    steps_per_epoch: int
    total_steps: int
    warmup: int
    module: torch.nn.Module  # the plain encoder (evaluated and saved)
    fixed: tuple | None = None  # (anchors, negatives, positive images): the study's "augment once"


def setup(c: ResolvedConfig, train_set: ImageSet) -> Run:
    """Seed, build the model, loss, optimiser and augmentation; draw the study's fixed pairs."""
    device = distributed.device_for(pick_device(c.device))
    if c.threads:
        torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    gen = torch.Generator().manual_seed(c.seed)
    model = build_encoder(c.encoder, train_set.channels, train_set.size, width=c.encoder_width)
    model = model.to(device).to(memory_format=torch.channels_last)
    module, model = model, distributed.wrap_model(model, device)
    labels_np = train_set.labels.numpy()
    kind = batch_kind(c)
    steps = _steps_per_epoch(c, labels_np, kind)
    total = steps * c.epochs
    run = Run(c=c, device=device, model=model,
               opt=build_optimizer(c.optimizer, model.parameters(), c.lr, c.weight_decay),
               loss_fn=build_loss(c.loss, margin=c.margin, temperature=c.temperature),
               aug=get_augmentation(c.augmentation), rng=rng, gen=gen, images=train_set.images,
               labels=train_set.labels, labels_np=labels_np, kind=kind, steps_per_epoch=steps,
               total_steps=total, warmup=max(1, min(total // 10, 3 * steps)), module=module)
    if kind != VIEWS and c.augment_once:
        # The study's "augment once": positives drawn a single time and reused every epoch.
        anchors = paper_anchors(labels_np, c.max_per_class, rng)
        negatives = draw_negatives(labels_np, anchors, rng, c.negatives)
        chosen = train_set.images[torch.from_numpy(anchors)]
        # "none" leaves every image as it is (uint8 -> [0, 1] -> uint8 is exact): skip the round trip
        positives = chosen if c.augmentation == "none" else augment_to_uint8(chosen, run.aug, gen)
        run.fixed = (anchors, negatives, positives)
    ctx = distributed.current()
    if ctx is not None and ctx.rank > 0:
        # Every rank drew the same fixed positives above; from here each augments its own share,
        # so each needs its own stream (rank 0 keeps the single-process one).
        gen.manual_seed(int(np.random.SeedSequence([c.seed, ctx.rank]).generate_state(1)[0]))
    return run


def epoch_order(run: Run) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One epoch's ``(anchors, negatives, order)``: ``order`` indexes the items to batch."""
    c, rng = run.c, run.rng
    if run.kind == VIEWS:
        return rng.permutation(len(run.labels_np)), None, np.arange(len(run.labels_np))
    if run.fixed is not None:
        anchors, negatives = run.fixed[0], run.fixed[1]
    else:
        anchors = paper_anchors(run.labels_np, c.max_per_class, rng)
        negatives = draw_negatives(run.labels_np, anchors, rng, c.negatives)
    if run.kind == PAIRS:
        # items: (anchor, positive, +1) for every anchor, then (anchor, negative, -1)
        return anchors, negatives, rng.permutation(2 * len(anchors))
    return anchors, negatives, np.arange(len(anchors))


def _pairs_loss(run: Run, items: np.ndarray, anchors: np.ndarray, negatives: np.ndarray):
    """Pairwise / contrastive: one batch of (anchor, other, +-1) items. Returns (loss, images)."""
    c, aug, gen, dev = run.c, run.aug, run.gen, run.device
    n_a = len(anchors)
    is_pos = items < n_a
    slot = np.where(is_pos, items, items - n_a)
    a_idx = torch.from_numpy(anchors[slot])
    x_a = _prepare_batch(run.images[a_idx], aug, gen, dev, c.augment_anchor)
    pos_rows, neg_rows = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    other = torch.empty_like(x_a)
    if len(pos_rows):
        if run.fixed is not None:
            other[pos_rows] = _prepare_batch(run.fixed[2][slot[pos_rows]], aug, gen, dev, False)
        else:
            other[pos_rows] = _prepare_batch(run.images[a_idx[pos_rows]], aug, gen, dev, True)
    if len(neg_rows):
        n_idx = torch.from_numpy(negatives[slot[neg_rows]])
        other[neg_rows] = _prepare_batch(run.images[n_idx], aug, gen, dev, c.augment_anchor)
    # Two forward passes, as the study ran them: each batch gets its own BatchNorm statistics
    # (one concatenated pass would mix anchors and others).
    z_a, z_o = _encode(run, x_a), _encode(run, other)
    y = torch.from_numpy(np.where(is_pos, 1.0, -1.0)).float().to(dev)
    k = len(items)
    rows = torch.arange(k, device=dev)
    return run.loss_fn(torch.cat([z_a, z_o]), None, (rows, rows + k, y)), 2 * k


def _triplets_loss(run: Run, items: np.ndarray, anchors: np.ndarray, negatives: np.ndarray):
    """The study's triplets: (anchor, positive, negative) per item. Returns (loss, images)."""
    c, aug, gen, dev = run.c, run.aug, run.gen, run.device
    a_idx = torch.from_numpy(anchors[items])
    x_a = _prepare_batch(run.images[a_idx], aug, gen, dev, c.augment_anchor)
    x_n = _prepare_batch(run.images[torch.from_numpy(negatives[items])], aug, gen, dev, c.augment_anchor)
    # One forward pass per role, as the study ran them (each with its own BatchNorm statistics).
    # Without augmentation the positive batch *is* the anchor batch, so its pass would repeat the
    # anchor's exactly (same inputs, same statistics): reuse it. Autograd then sums both roles'
    # gradients through one graph, as two identical graphs would; a third of the compute saved,
    # the study's result unchanged.
    x_p = None
    if c.augmentation != "none":
        if run.fixed is not None:
            x_p = _prepare_batch(run.fixed[2][torch.from_numpy(items)], aug, gen, dev, False)
        else:
            x_p = _prepare_batch(run.images[a_idx], aug, gen, dev, True)
    z_a, z_p, z_n = forward_triplet(run.model, x_a, x_p, x_n, encode=lambda x: _encode(run, x))
    k = len(items)
    rows = torch.arange(k, device=dev)
    # counted as the study counts them (anchor, positive, negative)
    return run.loss_fn(torch.cat([z_a, z_p, z_n]), None, (rows, rows + k, rows + 2 * k)), 3 * k


def _views_loss(run: Run, items: np.ndarray, anchors: np.ndarray):
    """The ``views`` batches (NT-Xent, SupCon, mined triplets): ``views`` augmented views of each image.

    One view (a loss that needs labels, mined triplets): the positives of an image are the other images of its
    class in the batch. Two views: each image's second view is a positive too (a ``views`` loss needs it).
    ``items`` is the global batch: this rank encodes its share, and the loss (and the mining) sees
    every rank's embeddings in the one-process order, ``[view 1 of items; view 2 of items]``.
    Returns (loss, images of the global batch)."""
    c, aug, gen, dev = run.c, run.aug, run.gen, run.device
    share = distributed.my_share(items)
    ctx = distributed.current()
    sizes = distributed.share_sizes(len(items), ctx.world_size) if ctx is not None else [len(items)]
    batch_imgs = run.images[torch.from_numpy(anchors[share])]
    batch_labels = run.labels[torch.from_numpy(anchors[items])].to(dev)  # every rank knows all labels
    k, n = len(share), len(items)
    if c.views == 1:
        z = distributed.gather_rows(_encode(run, _prepare_batch(batch_imgs, aug, gen, dev, True)), sizes)
        both = batch_labels
    else:
        v1 = _prepare_batch(batch_imgs, aug, gen, dev, c.augment_anchor)
        v2 = _prepare_batch(batch_imgs, aug, gen, dev, True)
        z_local = _encode(run, torch.cat([v1, v2]))
        z = torch.cat([distributed.gather_rows(z_local[:k], sizes), distributed.gather_rows(z_local[k:], sizes)])
        both = torch.cat([batch_labels, batch_labels])
    if run.loss_fn.needs != TRIPLETS:
        return run.loss_fn(z, both, None), c.views * n
    triplets = mine_triplets(z.detach(), both, c.mining, run.loss_fn.margin)
    # no triplet picked: a zero loss that still reaches every parameter (DDP expects gradients)
    loss = run.loss_fn(z, both, triplets) if len(triplets[0]) else z.sum() * 0.0
    return loss, c.views * n


def batch_loss(run: Run, items: np.ndarray, anchors: np.ndarray, negatives: np.ndarray | None):
    """One global batch's ``(loss to back-propagate, images, loss value shared by every rank or None)``.

    The per-item losses see only this rank's share ``S_r`` of the ``N`` items. DDP averages the
    ``W`` ranks' gradients, so back-propagating ``mean_r * W * |S_r| / N`` makes that average the
    gradient of the global mean ``sum_r |S_r| mean_r / N`` (shares may differ by one item)."""
    if run.kind == VIEWS:
        loss, n_images = _views_loss(run, items, anchors)
        return loss, n_images, None  # the same on every rank: computed on the gathered batch
    share = distributed.my_share(items)
    per_item = _pairs_loss if run.kind == PAIRS else _triplets_loss
    if negatives is None:  # epoch_order draws them for every pair and triplet epoch
        raise ValueError("pair and triplet batches need the epoch's negatives")
    loss, n_images = per_item(run, share, anchors, negatives)
    n_images = n_images // len(share) * len(items)
    ctx = distributed.current()
    if ctx is None:
        return loss, n_images, None
    value = distributed.sum_over_ranks([float(loss.detach()) * len(share)])[0] / len(items)
    return loss * (ctx.world_size * len(share) / len(items)), n_images, value


def _optimise(run: Run, loss: torch.Tensor, step: int) -> float:
    """One optimiser step at the scheduled learning rate; returns the loss value."""
    if run.c.recipe != "paper":  # the study used a constant learning rate
        for group in run.opt.param_groups:
            group["lr"] = warmup_cosine(step, run.total_steps, run.c.lr, run.warmup)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    return float(loss.detach())


def train(config: TrainConfig | ResolvedConfig, train_set: ImageSet,
          progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_epoch_end: Callable[[torch.nn.Module, int], dict | None] | None = None,
          on_history: Callable[[dict], None] | None = None) -> TrainResult:
    """Train an encoder on ``train_set``; returns the model in eval mode and a history.
    ``config`` is resolved here unless it already is (a caller that resolved it passes that).

    ``progress(event)`` is called after every step with ``epoch``, ``epochs``, ``step``,
    ``steps``, ``loss``, ``images_per_s`` and ``elapsed``. ``should_stop()`` is polled every step:
    when it returns True training stops cleanly (``result.stopped == "cancelled"``).
    ``on_epoch_end(model, epoch)`` may return a dict of extra figures (for example kNN
    accuracy) recorded in the history; its time is not counted as training time.
    ``on_history(row)`` hears each epoch's finished history row (a training log writes it).
    """
    c = config if isinstance(config, ResolvedConfig) else resolve_config(config)
    if len(train_set) < 2 or len(torch.unique(train_set.labels)) < 2:
        raise ConfigError(f"{train_set.describe()}: need at least two images of two classes to train")
    run = setup(c, train_set)
    ctx = distributed.current()
    result = TrainResult(run.module, c, n_train=len(train_set), n_parameters=count_parameters(run.module),
                         world_size=ctx.world_size if ctx else 1, backend=ctx.backend if ctx else None)
    clock = {"train_seconds": 0.0, "step": 0}
    stop_reason = None
    for epoch in range(1, c.epochs + 1):
        row, stop_reason = _train_epoch(run, epoch, result, clock, progress, should_stop)
        if row is not None:
            if on_epoch_end is not None and stop_reason is None:
                run.module.eval()
                row.update(on_epoch_end(run.module, epoch) or {})
            result.history.append(row)
            if on_history is not None:
                on_history(row)
        if stop_reason:
            break
    run.module.eval()
    result.seconds = clock["train_seconds"]
    result.stopped = stop_reason or "completed"
    return result


def _train_epoch(run: Run, epoch: int, result: TrainResult, clock: dict, progress, should_stop):
    """One epoch; returns (history row or None, stop reason or None)."""
    c = run.c
    run.model.train()
    t_epoch = time.perf_counter()
    epoch_loss, epoch_items, epoch_images = 0.0, 0, 0
    stop_reason = None
    anchors, negatives, order = epoch_order(run)
    ctx = distributed.current()
    world = ctx.world_size if ctx is not None else 1
    for start in range(0, len(order), c.batch_size):
        cancel = should_stop is not None and should_stop()
        spent = c.time_budget is not None and clock["train_seconds"] + (time.perf_counter() - t_epoch) >= c.time_budget
        if ctx is not None:  # every rank must stop at the same step, or the others wait forever
            cancel, spent = (v > 0 for v in distributed.sum_over_ranks([float(cancel), float(spent)]))
        if cancel or spent:
            stop_reason = "cancelled" if cancel else "time_budget"
            break
        t_step = time.perf_counter()
        items = order[start:start + c.batch_size]
        if len(items) < 2 * world:  # each rank needs two items (BatchNorm, a loss with a positive)
            continue
        loss, n_images, shared_value = batch_loss(run, items, anchors, negatives)
        loss_value = _optimise(run, loss, clock["step"])
        if shared_value is not None:
            loss_value = shared_value
        if not math.isfinite(loss_value):
            raise distributed.on_every_rank(
                ConfigError(f"training diverged (loss {loss_value}) at epoch {epoch}; lower the learning rate"))
        clock["step"] += 1
        epoch_loss += loss_value * len(items)
        epoch_items += len(items)
        epoch_images += n_images
        result.images_seen += n_images
        if progress is not None:
            elapsed_step = time.perf_counter() - t_step
            progress({"epoch": epoch, "epochs": c.epochs, "step": start // c.batch_size + 1,
                      "steps": run.steps_per_epoch, "global_step": clock["step"], "loss": loss_value,
                      "images_per_s": n_images / max(elapsed_step, 1e-9),
                      "elapsed": clock["train_seconds"] + time.perf_counter() - t_epoch})
    epoch_seconds = time.perf_counter() - t_epoch
    clock["train_seconds"] += epoch_seconds
    if not epoch_items:
        return None, stop_reason
    return ({"epoch": epoch, "loss": epoch_loss / epoch_items, "seconds": epoch_seconds,
             "train_seconds": clock["train_seconds"], "images_per_s": epoch_images / max(epoch_seconds, 1e-9)},
            stop_reason)


def forward_triplet(model: torch.nn.Module, x_a: torch.Tensor, x_p: torch.Tensor | None, x_n: torch.Tensor,
                    encode: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``model(x_a), model(x_p), model(x_n)`` as three passes, as the study ran them
    (``encode(x)`` instead of ``model(x)`` when given: the same model under autocast).

    ``x_p=None`` means the positive batch equals the anchor batch (no augmentation): its pass
    would give the anchor's output exactly, so the anchor's output is reused. The only other
    effect of a pass in training mode is a BatchNorm running-statistics update; two identical
    updates with momentum m equal one with momentum 1 - (1 - m)^2, so the anchor pass uses
    that and the running statistics end as the study's three passes leave them.
    """
    encode = encode or model
    if x_p is not None:
        return encode(x_a), encode(x_p), encode(x_n)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.momentum is not None]
    saved = [float(m.momentum) for m in norms if m.momentum is not None]  # every one: filtered above
    try:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = 1.0 - (1.0 - momentum) ** 2
        z_a = encode(x_a)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
    return z_a, z_a, encode(x_n)


def _steps_per_epoch(c: ResolvedConfig, labels_np: np.ndarray, kind: str) -> int:
    if kind != VIEWS:
        n_anchors = sum(min(c.max_per_class, int((labels_np == k).sum())) for k in np.unique(labels_np))
        items = 2 * n_anchors if kind == PAIRS else n_anchors
    else:
        items = len(labels_np)
    return max(1, math.ceil(items / c.batch_size))
