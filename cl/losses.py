"""Contrastive losses, one class each. Every docstring gives the formula; tests compare each
with an independent reference (torch built-ins or explicit loops).

Conventions: ``a``, ``b`` are ``(N, D)`` embeddings; ``y`` is ``+1`` for a similar pair and
``-1`` (or ``0``) for a dissimilar one; ``labels`` are class ids ``(N,)``. All losses return the
mean over their terms.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

from .catalog import LOSSES  # noqa: F401  (re-exported)


class PairwiseCosineLoss(nn.Module):
    r"""Cosine embedding loss (the study's pairwise loss).

    .. math::
        \ell(a, b, y) = \begin{cases} 1 - \cos(a, b) & y = 1 \\
                                     \max(0, \cos(a, b) - m) & y = -1 \end{cases}

    with margin :math:`m` (0 in the study). Same as ``torch.nn.CosineEmbeddingLoss``.
    """

    def __init__(self, margin: float = 0.0):
        super().__init__()
        self.margin = margin

    def forward(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(a, b, dim=1, eps=1e-8)
        positive = y > 0
        loss = torch.where(positive, 1 - cos, (cos - self.margin).clamp_min(0))
        return loss.mean()


class TripletLoss(nn.Module):
    r"""Triplet margin loss (the study's triplet loss).

    .. math:: \ell(a, p, n) = \max(0,\; \|a - p\|_2 - \|a - n\|_2 + m)

    with margin :math:`m = 1` in the study. Same as ``torch.nn.TripletMarginLoss(p=2)``
    (which adds ``eps = 1e-6`` inside the norm; so do we).
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d_ap = F.pairwise_distance(a, p, p=2, eps=1e-6)
        d_an = F.pairwise_distance(a, n, p=2, eps=1e-6)
        return (d_ap - d_an + self.margin).clamp_min(0).mean()


class ContrastiveMarginLoss(nn.Module):
    r"""Margin contrastive loss of Hadsell, Chopra and LeCun (2006).

    .. math::
        \ell(a, b, y) = \tfrac12\,[y{=}1]\, d^2 + \tfrac12\,[y{\ne}1]\, \max(0, m - d)^2,
        \qquad d = \|a - b\|_2

    Similar pairs are pulled together; dissimilar ones pushed beyond margin :math:`m`.
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = F.pairwise_distance(a, b, p=2, eps=1e-6)
        similar = y > 0
        loss = torch.where(similar, 0.5 * d.pow(2), 0.5 * (self.margin - d).clamp_min(0).pow(2))
        return loss.mean()


class NTXentLoss(nn.Module):
    r"""NT-Xent, SimCLR's normalised temperature-scaled cross entropy.

    For :math:`2N` views where :math:`z_i` and :math:`z_{j(i)}` are the two views of one image,
    with :math:`s_{ik} = \cos(z_i, z_k)/\tau`:

    .. math:: L = \frac{1}{2N} \sum_i -\log \frac{\exp(s_{i\,j(i)})}{\sum_{k \ne i} \exp(s_{ik})}

    ``forward(z1, z2)`` takes the two views as ``(N, D)`` each. Uses no labels.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(sim, target)


class SupConLoss(nn.Module):
    r"""Supervised contrastive loss (Khosla et al. 2020, the "L_out" form).

    For embeddings :math:`z` (L2-normalised here) with labels, :math:`P(i)` the other samples
    sharing :math:`i`'s label and :math:`A(i)` all samples but :math:`i`:

    .. math::
        L = \frac{1}{|I|} \sum_{i \in I} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{\exp(z_i \cdot z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i \cdot z_a / \tau)}

    where :math:`I` are the anchors with at least one positive. With every image's two views
    sharing a unique label this equals :class:`NTXentLoss`.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z, dim=1)
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
LOSS_CLASSES: dict[str, type[nn.Module]] = {
    "pairwise": PairwiseCosineLoss,
    "triplet": TripletLoss,
    "contrastive": ContrastiveMarginLoss,
    "ntxent": NTXentLoss,
    "supcon": SupConLoss,
}
assert tuple(LOSS_CLASSES) == LOSSES, "cl.catalog.LOSSES and the registry must list the same names"


def build_loss(name: str, margin: float | None = None, temperature: float | None = None) -> nn.Module:
    """The loss called ``name``; ``margin``/``temperature`` override the class's default when given
    (each is passed only to the losses that take it)."""
    from .errors import ConfigError

    try:
        cls = LOSS_CLASSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
    given = {"margin": margin, "temperature": temperature}
    params = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in given.items() if v is not None and k in params})
