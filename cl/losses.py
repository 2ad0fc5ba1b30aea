"""Contrastive losses, one class each, all called the same way. Every docstring gives the
formula; tests compare each with an independent reference (torch built-ins or explicit loops).

The call shape (as in pytorch-metric-learning): ``loss(embeddings, labels, tuples)``, where
``embeddings`` are the ``(M, D)`` rows the encoder produced for one batch, ``labels`` the rows'
class ids ``(M,)`` (or None), and ``tuples`` the rows the loss compares (or None):

- ``pairs``: ``(a, b, y)``: row indices ``a``, ``b`` and ``y`` ``+1`` for a similar pair,
  ``-1`` (or ``0``) for a dissimilar one;
- ``triplets``: ``(a, p, n)``: row indices of anchor, positive, negative.

Each class says what its batch needs in ``needs``, and the training loop builds the batch from
that alone (it never asks which loss it holds):

- ``PAIRS``: pairs drawn by the study's sampler (anchor with its augmented positive, or with a
  negative);
- ``TRIPLETS``: triplets from the study's sampler, or picked by an online miner among augmented
  views with labels;
- ``VIEWS``: two augmented views of every image, rows ``[view 1 of each image; view 2 of each]``;
  an image's other view is its positive (no labels);
- ``LABELS``: one or two augmented views of every image with its class label; the positives
  are the rows sharing a label.

All losses return the mean over their terms. A new loss is one class here plus one line in
:data:`LOSS_CLASSES`.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .catalog import LOSSES

PAIRS, TRIPLETS, VIEWS, LABELS = "pairs", "triplets", "views", "labels"
NEEDS = (PAIRS, TRIPLETS, VIEWS, LABELS)

Tuples = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ContrastiveLoss(nn.Module):
    """The interface every loss shares: ``forward(embeddings, labels=None, tuples=None)`` and
    ``needs``, one of :data:`NEEDS`."""

    needs: ClassVar[str]
    margin: float = 0.0  # the triplet miners read it; a loss without a margin keeps 0

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None,
                tuples: Tuples | None = None) -> torch.Tensor:
        raise NotImplementedError


def _rows(tuples: Tuples | None, name: str) -> Tuples:
    if tuples is None:
        raise ValueError(f"{name} needs row tuples")
    return tuples


class PairwiseCosineLoss(ContrastiveLoss):
    r"""Cosine embedding loss (the study's pairwise loss).

    .. math::
        \ell(a, b, y) = \begin{cases} 1 - \cos(a, b) & y = 1 \\
                                     \max(0, \cos(a, b) - m) & y = -1 \end{cases}

    with margin :math:`m` (0 in the study). Same as ``torch.nn.CosineEmbeddingLoss``.
    """

    needs = PAIRS

    def __init__(self, margin: float = 0.0):
        super().__init__()
        self.margin = margin

    def pair_terms(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Each pair's term, and the measure it is computed from (``{"cosine": ...}``)."""
        cos = F.cosine_similarity(a, b, dim=1, eps=1e-8)
        positive = y > 0
        return torch.where(positive, 1 - cos, (cos - self.margin).clamp_min(0)), {"cosine": cos}

    def forward(self, embeddings, labels=None, tuples=None):
        i, j, y = _rows(tuples, "the pairwise loss")
        return self.pair_terms(embeddings[i], embeddings[j], y)[0].mean()


class TripletLoss(ContrastiveLoss):
    r"""Triplet margin loss (the study's triplet loss).

    .. math:: \ell(a, p, n) = \max(0,\; \|a - p\|_2 - \|a - n\|_2 + m)

    with margin :math:`m = 1` in the study. Same as ``torch.nn.TripletMarginLoss(p=2)``
    (which adds ``eps = 1e-6`` inside the norm; so do we).
    """

    needs = TRIPLETS

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, embeddings, labels=None, tuples=None):
        i, j, k = _rows(tuples, "the triplet loss")
        a, p, n = embeddings[i], embeddings[j], embeddings[k]
        d_ap = F.pairwise_distance(a, p, p=2, eps=1e-6)
        d_an = F.pairwise_distance(a, n, p=2, eps=1e-6)
        return (d_ap - d_an + self.margin).clamp_min(0).mean()


class ContrastiveMarginLoss(ContrastiveLoss):
    r"""Margin contrastive loss of Hadsell, Chopra and LeCun (2006).

    .. math::
        \ell(a, b, y) = \tfrac12\,[y{=}1]\, d^2 + \tfrac12\,[y{\ne}1]\, \max(0, m - d)^2,
        \qquad d = \|a - b\|_2

    Similar pairs are pulled together; dissimilar ones pushed beyond margin :math:`m`.
    """

    needs = PAIRS

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def pair_terms(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Each pair's term, and the measure it is computed from (``{"distance": ...}``)."""
        d = F.pairwise_distance(a, b, p=2, eps=1e-6)
        similar = y > 0
        return torch.where(similar, 0.5 * d.pow(2), 0.5 * (self.margin - d).clamp_min(0).pow(2)), {"distance": d}

    def forward(self, embeddings, labels=None, tuples=None):
        i, j, y = _rows(tuples, "the contrastive loss")
        return self.pair_terms(embeddings[i], embeddings[j], y)[0].mean()


class NTXentLoss(ContrastiveLoss):
    r"""NT-Xent, SimCLR's normalised temperature-scaled cross entropy.

    For :math:`2N` views where :math:`z_i` and :math:`z_{j(i)}` are the two views of one image,
    with :math:`s_{ik} = \cos(z_i, z_k)/\tau`:

    .. math:: L = \frac{1}{2N} \sum_i -\log \frac{\exp(s_{i\,j(i)})}{\sum_{k \ne i} \exp(s_{ik})}

    ``embeddings`` are ``[view 1 of each image; view 2 of each]`` (``2N`` rows). Uses no labels.
    """

    needs = VIEWS

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings, labels=None, tuples=None):
        n = embeddings.shape[0] // 2
        z = F.normalize(embeddings, dim=1)
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(sim, target)


class SupConLoss(ContrastiveLoss):
    r"""Supervised contrastive loss (Khosla et al. 2020, the "L_out" form).

    For embeddings :math:`z` (L2-normalised here) with labels, :math:`P(i)` the other samples
    sharing :math:`i`'s label and :math:`A(i)` all samples but :math:`i`:

    .. math::
        L = \frac{1}{|I|} \sum_{i \in I} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    where :math:`I` are the anchors with at least one positive. With every image's two views
    sharing a unique label this equals :class:`NTXentLoss`.
    """

    needs = LABELS

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings, labels=None, tuples=None):
        if labels is None:
            raise ValueError("SupCon needs labels")
        z = F.normalize(embeddings, dim=1)
        n = z.shape[0]
        logits = z @ z.T / self.temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positive = (labels[:, None] == labels[None, :]) & ~self_mask
        n_pos = positive.sum(1)
        has_pos = n_pos > 0
        # masked_fill before the sum: -inf * 0 would give NaN on the diagonal
        pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(1)
        return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()


# One entry per loss name; each class holds its own defaults, so the registry only maps names.
LOSS_CLASSES: dict[str, type[ContrastiveLoss]] = {
    "pairwise": PairwiseCosineLoss,
    "triplet": TripletLoss,
    "contrastive": ContrastiveMarginLoss,
    "ntxent": NTXentLoss,
    "supcon": SupConLoss,
}
assert tuple(LOSS_CLASSES) == LOSSES, "cl.catalog.LOSSES and the registry must list the same names"


def loss_class(name: str) -> type[ContrastiveLoss]:
    """The class registered as ``name``; a :class:`~cl.errors.ConfigError` naming the choices if none."""
    from .errors import ConfigError

    try:
        return LOSS_CLASSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_CLASSES)}") from None


def loss_default(name: str, parameter: str) -> float | None:
    """The default of ``parameter`` (margin, temperature) in loss ``name``'s class, None if it has none."""
    param = inspect.signature(loss_class(name)).parameters.get(parameter)
    return None if param is None else param.default


def build_loss(name: str, margin: float | None = None, temperature: float | None = None) -> ContrastiveLoss:
    """The loss called ``name``; ``margin``/``temperature`` override the class's default when given
    (each is passed only to the losses that take it)."""
    cls = loss_class(name)
    given = {"margin": margin, "temperature": temperature}
    params = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in given.items() if v is not None and k in params})
