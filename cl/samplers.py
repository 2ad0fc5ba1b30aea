"""Which images meet which: the study's pairs and triplets, random negatives, online miners,
and class-balanced batches. All index arithmetic is vectorised NumPy/torch (the study built
Python lists of tensor tuples, which took 10-23 s per run).
"""

from __future__ import annotations

import numpy as np
import torch

NEGATIVES = ("label-aware", "random")
MINERS = ("none", "batch-hard", "semi-hard")


def paper_anchors(labels: np.ndarray, max_per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_per_class`` anchor indices per class (the study used 5,000), shuffled."""
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen.append(idx[:max_per_class])
    anchors = np.concatenate(chosen)
    return anchors[rng.permutation(len(anchors))]


def draw_negatives(labels: np.ndarray, anchors: np.ndarray, rng: np.random.Generator,
                   mode: str = "label-aware") -> np.ndarray:
    """One negative index per anchor.

    ``label-aware`` (the study): uniformly among images of a *different* class, so a negative
    never shares the anchor's class. ``random``: uniformly among all other images, labels
    unused; same-class negatives then occur (about 1/10 of the time on balanced 10-class data),
    which is the "sample bias" the study's next steps wanted measured.
    """
    n = len(labels)
    if mode == "random":
        neg = rng.integers(0, n - 1, size=len(anchors))
        return neg + (neg >= anchors)  # skip the anchor itself
    if mode != "label-aware":
        raise ValueError(f"unknown negative mode {mode!r}")
    if len(np.unique(labels)) < 2:
        raise ValueError("label-aware negatives need at least two classes")
    neg = rng.integers(0, n, size=len(anchors))
    bad = labels[neg] == labels[anchors]
    while bad.any():  # rejection sampling: expected ~1.1 rounds for 10 balanced classes
        neg[bad] = rng.integers(0, n, size=int(bad.sum()))
        bad = labels[neg] == labels[anchors]
    return neg


def class_balanced_batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator,
                           per_class: int | None = None) -> list[np.ndarray]:
    """One epoch of batches with ``per_class`` images of each of ``batch_size // per_class``
    classes (P x K sampling), so every anchor has positives for SupCon and miners. Every image
    appears about once per epoch."""
    classes = np.unique(labels)
    if per_class is None:
        per_class = max(2, batch_size // len(classes))
    k_classes = max(1, min(len(classes), batch_size // per_class))
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    batches = []
    n_batches = max(1, len(labels) // (k_classes * per_class))
    for _ in range(n_batches):
        live = [c for c in classes if len(pools[c]) >= per_class]
        if len(live) < min(2, len(classes)):
            break
        pick = rng.choice(live, size=min(k_classes, len(live)), replace=False)
        batch = []
        for c in pick:
            batch.extend(pools[c][:per_class])
            del pools[c][:per_class]
        batches.append(np.asarray(batch))
    return batches


def mine_triplets(embeddings: torch.Tensor, labels: torch.Tensor, strategy: str = "batch-hard",
                  margin: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Online triplet mining inside a batch; returns index tensors ``(anchor, positive, negative)``.

    ``batch-hard`` (Hermans et al. 2017): for each anchor the farthest positive and the
    closest negative. ``semi-hard`` (Schroff et al. 2015): for each anchor-positive pair, the
    closest negative that is still farther than the positive, ``d_ap < d_an < d_ap + margin``;
    pairs without one fall back to the hardest negative. Anchors without a positive or a
    negative in the batch are skipped.
    """
    with torch.no_grad():
        d = torch.cdist(embeddings, embeddings)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask = same & ~eye
        neg_mask = ~same
        inf = torch.tensor(float("inf"), device=d.device)
        if strategy == "batch-hard":
            valid = pos_mask.any(1) & neg_mask.any(1)
            pos = torch.where(pos_mask, d, -inf).argmax(1)
            neg = torch.where(neg_mask, d, inf).argmin(1)
            a = torch.nonzero(valid).squeeze(1)
            return a, pos[a], neg[a]
        if strategy == "semi-hard":
            a, p = torch.nonzero(pos_mask, as_tuple=True)  # ordered by anchor, then positive
            keep = neg_mask.any(1)[a]
            a, p = a[keep], p[keep]
            if len(a) == 0:
                return a, p, a.clone()
            # Compared pair by pair with every negative, this is a (pairs x batch) matrix: 100k x
            # 1,024 for a 1,024 batch of 10 classes, GBs and most of a step's time. Instead each
            # anchor's negatives are sorted once; the closest negative farther than d_ap is then
            # the first one after d_ap in that order (a binary search). A stable sort keeps the
            # lowest index among equal distances, as argmin does.
            b = len(labels)
            counts = torch.bincount(a, minlength=b)
            rank = torch.arange(len(a), device=a.device) - (torch.cumsum(counts, 0) - counts)[a]
            d_ap = torch.full((b, int(counts.max())), float("inf"), dtype=d.dtype, device=d.device)
            d_ap[a, rank] = d[a, p]
            sorted_d, order = torch.where(neg_mask, d, inf).sort(dim=1, stable=True)
            first_farther = torch.searchsorted(sorted_d, d_ap, right=True)
            at = first_farther.clamp(max=b - 1)
            semi = (first_farther < b) & (sorted_d.gather(1, at) < d_ap + margin)
            choice = torch.where(semi, order.gather(1, at), order[:, :1].expand_as(at))  # else the hardest
            return a, p, choice[a, rank]
        raise ValueError(f"unknown mining strategy {strategy!r}")
