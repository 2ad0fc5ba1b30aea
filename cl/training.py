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
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .augmentations import AUGMENTATIONS, augment_uint8, get_augmentation
from .data import ImageSet, to_float
from .encoder import ENCODERS, build_encoder, count_parameters
from .errors import ConfigError
from .losses import LOSSES, build_loss
from .samplers import MINERS, NEGATIVES, draw_negatives, mine_triplets, paper_anchors

RECIPES = ("default", "paper")
PAIR_LOSSES = ("pairwise", "contrastive")
VIEW_LOSSES = ("ntxent", "supcon")

# Our recipe's per-data-set choices, tuned on this 2-core CPU (see README "Results").
DEFAULT_RECIPE = {
    "digits": dict(augmentation="affine", epochs=20, batch_size=256, lr=3e-3, encoder_width=16),
    "mnist": dict(augmentation="affine", epochs=8, batch_size=256, lr=3e-3, encoder_width=16),
    "fashion-mnist": dict(augmentation="affine", epochs=6, batch_size=256, lr=3e-3, encoder_width=24),
    "cifar10": dict(augmentation="crop", epochs=60, batch_size=256, lr=3e-3, encoder_width=32),
}
DEFAULT_RECIPE_OTHER = dict(augmentation="crop", epochs=30, batch_size=256, lr=3e-3, encoder_width=32)


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
    max_per_class: int = 5000
    seed: int = 0
    time_budget: float | None = None  # seconds of training; stop cleanly when spent
    device: str = "auto"
    threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` from the recipe and validate; the result is fully concrete."""
    c = config
    if c.recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {c.recipe!r}; choose one of {', '.join(RECIPES)}")
    if c.recipe == "paper":
        loss = c.loss or "triplet"
        pair_like = loss in PAIR_LOSSES
        base = dict(augmentation="none", loss=loss, encoder="paper", encoder_width=0,
                    epochs=5 if pair_like else 10, batch_size=1024, lr=0.05 if pair_like else 0.15,
                    optimizer="sgd", weight_decay=0.0, augment_once=True, augment_anchor=False)
    else:
        per_set = DEFAULT_RECIPE.get(c.dataset, DEFAULT_RECIPE_OTHER)
        base = dict(loss="supcon", encoder="convnet", optimizer="adamw", weight_decay=5e-4,
                    augment_once=False, augment_anchor=True, **per_set)
    base.update(temperature=0.5 if (c.loss or base["loss"]) == "ntxent" else 0.1, margin=None)
    filled = {k: (getattr(c, k) if getattr(c, k) is not None else v) for k, v in base.items()}
    if filled["encoder"] == "paper":
        filled["encoder_width"] = 0
    elif not filled["encoder_width"]:
        filled["encoder_width"] = 32
    out = replace(c, **filled)
    _validate(out)
    return out


def _validate(c: TrainConfig) -> None:
    checks = [
        (c.augmentation in AUGMENTATIONS, f"unknown augmentation {c.augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}"),
        (c.loss in LOSSES, f"unknown loss {c.loss!r}; choose one of {', '.join(LOSSES)}"),
        (c.encoder in ENCODERS, f"unknown encoder {c.encoder!r}; choose one of {', '.join(ENCODERS)}"),
        (c.negatives in NEGATIVES, f"unknown negatives {c.negatives!r}; choose one of {', '.join(NEGATIVES)}"),
        (c.mining in MINERS, f"unknown mining {c.mining!r}; choose one of {', '.join(MINERS)}"),
        (c.optimizer in ("sgd", "adamw"), f"unknown optimizer {c.optimizer!r}; use sgd or adamw"),
        (isinstance(c.epochs, int) and c.epochs >= 1, f"epochs must be a positive integer, got {c.epochs}"),
        (isinstance(c.batch_size, int) and c.batch_size >= 2, f"batch size must be at least 2, got {c.batch_size}"),
        (c.lr is not None and math.isfinite(c.lr) and c.lr > 0, f"learning rate must be positive, got {c.lr}"),
        (c.max_per_class >= 1, f"max per class must be positive, got {c.max_per_class}"),
        (c.time_budget is None or c.time_budget > 0, f"time budget must be positive, got {c.time_budget}"),
        (c.threads is None or c.threads >= 1, f"threads must be positive, got {c.threads}"),
        (c.mining == "none" or c.loss == "triplet", "online mining applies to the triplet loss only"),
        (c.temperature is None or c.temperature > 0, f"temperature must be positive, got {c.temperature}"),
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
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    n_train: int = 0
    images_seen: int = 0
    stopped: str = "completed"  # or "cancelled", "time_budget"
    n_parameters: int = 0


class Cancelled(Exception):
    pass


class PlainSGD:
    """SGD without momentum: ``p <- p - lr * (grad + weight_decay * p)``, as ``torch.optim.SGD``.

    The study's optimiser, written out because constructing any ``torch.optim`` optimiser
    imports ``torch._dynamo`` (2 s on this 2-core machine, a tenth of a whole 1-epoch
    paper-recipe run). Same arithmetic as torch's: tests compare the two step by step.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.param_groups = [{"params": [p for p in params if p.requires_grad], "lr": lr,
                              "weight_decay": weight_decay}]

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                p.add_(grad, alpha=-group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()


def _prepare_batch(images: torch.Tensor, aug, gen, device, augment: bool) -> torch.Tensor:
    x = augment_uint8(images, aug, gen) if augment else to_float(images)
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _lr_at(step: int, total: int, base_lr: float, warmup: int) -> float:
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(config: TrainConfig, train_set: ImageSet,
          progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_epoch_end: Callable[[torch.nn.Module, int], dict | None] | None = None) -> TrainResult:
    """Train an encoder on ``train_set``; returns the model in eval mode and a history.

    ``progress(event)`` is called after every step with ``epoch``, ``epochs``, ``step``,
    ``steps``, ``loss``, ``images_per_s`` and ``elapsed``. ``should_stop()`` is polled every step:
    when it returns True training stops cleanly (``result.stopped == "cancelled"``).
    ``on_epoch_end(model, epoch)`` may return a dict of extra figures (for example kNN
    accuracy) recorded in the history; its time is not counted as training time.
    """
    c = resolve_config(config)
    if len(train_set) < 2 or len(torch.unique(train_set.labels)) < 2:
        raise ConfigError(f"{train_set.describe()}: need at least two images of two classes to train")
    device = pick_device(c.device)
    if c.threads:
        torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    gen = torch.Generator().manual_seed(c.seed)

    model = build_encoder(c.encoder, train_set.channels, train_set.size, width=c.encoder_width)
    model = model.to(device).to(memory_format=torch.channels_last)
    loss_fn = build_loss(c.loss, margin=c.margin, temperature=c.temperature)
    if c.optimizer == "sgd":
        opt = PlainSGD(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    aug = get_augmentation(c.augmentation)
    images, labels = train_set.images, train_set.labels
    labels_np = labels.numpy()
    scheduled = c.recipe != "paper"  # the study used a constant learning rate

    # The study's "augment once": positives drawn a single time and reused every epoch.
    fixed_anchors = fixed_negatives = fixed_positive_images = None
    uses_pairs = c.loss in PAIR_LOSSES or (c.loss == "triplet" and c.mining == "none")
    if uses_pairs and c.augment_once:
        fixed_anchors = paper_anchors(labels_np, c.max_per_class, rng)
        fixed_negatives = draw_negatives(labels_np, fixed_anchors, rng, c.negatives)
        fixed_positive_images = _augment_to_uint8(images[torch.from_numpy(fixed_anchors)], aug, gen)

    def epoch_plan():
        """Index arrays for one epoch: (anchor, other, y, positive_row) per item."""
        if uses_pairs:
            if fixed_anchors is not None:
                anchors, negatives = fixed_anchors, fixed_negatives
            else:
                anchors = paper_anchors(labels_np, c.max_per_class, rng)
                negatives = draw_negatives(labels_np, anchors, rng, c.negatives)
            return anchors, negatives
        return rng.permutation(len(labels_np)), None

    same_positive = c.augmentation == "none"  # the positive image is the anchor image itself
    steps_per_epoch = _steps_per_epoch(c, labels_np, uses_pairs)
    total_steps = steps_per_epoch * c.epochs
    warmup = max(1, min(total_steps // 10, 3 * steps_per_epoch))
    result = TrainResult(model, c, n_train=len(train_set), n_parameters=count_parameters(model))
    train_seconds = 0.0
    step = 0
    stop_reason = None
    for epoch in range(1, c.epochs + 1):
        model.train()
        t_epoch = time.perf_counter()
        epoch_loss, epoch_items, epoch_images = 0.0, 0, 0
        anchors, negatives = epoch_plan()
        if c.loss in PAIR_LOSSES:
            # items: (anchor, positive, +1) for every anchor, then (anchor, negative, -1)
            n_a = len(anchors)
            order = rng.permutation(2 * n_a)
        else:
            order = np.arange(len(anchors))
        for start in range(0, len(order), c.batch_size):
            if should_stop is not None and should_stop():
                stop_reason = "cancelled"
                break
            if c.time_budget is not None and train_seconds + (time.perf_counter() - t_epoch) >= c.time_budget:
                stop_reason = "time_budget"
                break
            t_step = time.perf_counter()
            items = order[start:start + c.batch_size]
            if len(items) < 2:
                continue
            if scheduled:
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total_steps, c.lr, warmup)
            if c.loss in PAIR_LOSSES:
                is_pos = items < n_a
                slot = np.where(is_pos, items, items - n_a)
                a_idx = torch.from_numpy(anchors[slot])
                x_a = _prepare_batch(images[a_idx], aug, gen, device, c.augment_anchor)
                pos_rows, neg_rows = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
                other = torch.empty_like(x_a)
                if len(pos_rows):
                    if fixed_positive_images is not None:
                        other[pos_rows] = _prepare_batch(fixed_positive_images[slot[pos_rows]], aug, gen, device, False)
                    else:
                        other[pos_rows] = _prepare_batch(images[a_idx[pos_rows]], aug, gen, device, True)
                if len(neg_rows):
                    n_idx = torch.from_numpy(negatives[slot[neg_rows]])
                    other[neg_rows] = _prepare_batch(images[n_idx], aug, gen, device, c.augment_anchor)
                # Two forward passes, as the study ran them: each batch gets its own BatchNorm
                # statistics (one concatenated pass would mix anchors and others).
                z_a, z_o = model(x_a), model(other)
                y = torch.from_numpy(np.where(is_pos, 1.0, -1.0)).float().to(device)
                loss = loss_fn(z_a, z_o, y)
                n_images = 2 * len(items)
            elif uses_pairs:  # triplet, the study's way
                a_idx = torch.from_numpy(anchors[items])
                x_a = _prepare_batch(images[a_idx], aug, gen, device, c.augment_anchor)
                x_n = _prepare_batch(images[torch.from_numpy(negatives[items])], aug, gen, device, c.augment_anchor)
                # One forward pass per role, as the study ran them (each with its own BatchNorm
                # statistics). Without augmentation the positive batch *is* the anchor batch, so
                # its pass would repeat the anchor's exactly (same inputs, same statistics): reuse
                # it. Autograd then sums both roles' gradients through one graph, as two identical
                # graphs would; a third of the compute saved, the study's result unchanged.
                x_p = None
                if not same_positive:
                    if fixed_positive_images is not None:
                        x_p = _prepare_batch(fixed_positive_images[torch.from_numpy(items)], aug, gen, device, False)
                    else:
                        x_p = _prepare_batch(images[a_idx], aug, gen, device, True)
                z_a, z_p, z_n = forward_triplet(model, x_a, x_p, x_n)
                k = len(items)
                loss = loss_fn(z_a, z_p, z_n)
                n_images = 3 * k  # counted as the study counts them (anchor, positive, negative)
            else:  # two views per image: NT-Xent, SupCon, mined triplets
                idx = torch.from_numpy(anchors[items])
                batch_imgs = images[idx]
                v1 = _prepare_batch(batch_imgs, aug, gen, device, c.augment_anchor)
                v2 = _prepare_batch(batch_imgs, aug, gen, device, True)
                z = model(torch.cat([v1, v2]))
                k = len(items)
                batch_labels = labels[idx].to(device)
                if c.loss == "ntxent":
                    loss = loss_fn(z[:k], z[k:])
                elif c.loss == "supcon":
                    loss = loss_fn(z, torch.cat([batch_labels, batch_labels]))
                else:
                    both = torch.cat([batch_labels, batch_labels])
                    a, p, n = mine_triplets(z.detach(), both, c.mining, loss_fn.margin)
                    loss = loss_fn(z[a], z[p], z[n]) if len(a) else z.sum() * 0.0
                n_images = 2 * k
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise ConfigError(f"training diverged (loss {loss_value}) at epoch {epoch}; lower the learning rate")
            epoch_loss += loss_value * len(items)
            epoch_items += len(items)
            epoch_images += n_images
            result.images_seen += n_images
            if progress is not None:
                elapsed_step = time.perf_counter() - t_step
                progress({"epoch": epoch, "epochs": c.epochs, "step": start // c.batch_size + 1,
                          "steps": steps_per_epoch, "global_step": step, "loss": loss_value,
                          "images_per_s": n_images / max(elapsed_step, 1e-9),
                          "elapsed": train_seconds + time.perf_counter() - t_epoch})
        epoch_seconds = time.perf_counter() - t_epoch
        train_seconds += epoch_seconds
        if epoch_items:
            row = {"epoch": epoch, "loss": epoch_loss / epoch_items, "seconds": epoch_seconds,
                   "train_seconds": train_seconds, "images_per_s": epoch_images / max(epoch_seconds, 1e-9)}
            if on_epoch_end is not None and stop_reason is None:
                model.eval()
                extra = on_epoch_end(model, epoch)
                if extra:
                    row.update(extra)
            result.history.append(row)
        if stop_reason:
            break
    model.eval()
    result.seconds = train_seconds
    result.stopped = stop_reason or "completed"
    return result


def forward_triplet(model: torch.nn.Module, x_a: torch.Tensor, x_p: torch.Tensor | None,
                    x_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``model(x_a), model(x_p), model(x_n)`` as three passes, as the study ran them.

    ``x_p=None`` means the positive batch equals the anchor batch (no augmentation): its pass
    would give the anchor's output exactly, so the anchor's output is reused. The only other
    effect of a pass in training mode is a BatchNorm running-statistics update; two identical
    updates with momentum m equal one with momentum 1 - (1 - m)^2, so the anchor pass uses
    that and the running statistics end as the study's three passes leave them.
    """
    if x_p is not None:
        return model(x_a), model(x_p), model(x_n)
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.momentum is not None]
    saved = [m.momentum for m in norms]
    try:
        for m, momentum in zip(norms, saved):
            m.momentum = 1.0 - (1.0 - momentum) ** 2
        z_a = model(x_a)
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    return z_a, z_a, model(x_n)


def _augment_to_uint8(images: torch.Tensor, aug, gen, chunk: int = 4096) -> torch.Tensor:
    """Augment once and keep the result as uint8, as the study's PIL pipeline produced."""
    out = torch.empty_like(images)
    for s in range(0, len(images), chunk):
        x = aug(images[s:s + chunk].float().div_(255.0), gen)
        out[s:s + chunk] = x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out


def _steps_per_epoch(c: TrainConfig, labels_np: np.ndarray, uses_pairs: bool) -> int:
    if uses_pairs:
        n_anchors = sum(min(c.max_per_class, int((labels_np == k).sum())) for k in np.unique(labels_np))
        items = 2 * n_anchors if c.loss in PAIR_LOSSES else n_anchors
    else:
        items = len(labels_np)
    return max(1, math.ceil(items / c.batch_size))
