"""Optimisers and the learning-rate schedule, written out without ``torch.optim``.

Constructing any ``torch.optim`` optimiser imports ``torch._dynamo``: 2 s on this 2-core
machine (py-spy, ``python -m cl train --dataset mnist``: ``AdamW.__init__`` -> ``torch/_dynamo``),
a tenth of a 1-epoch paper-recipe run and 5 % of a live MNIST training. The two classes here do
the same arithmetic as ``torch.optim.SGD`` (no momentum) and ``torch.optim.AdamW``; tests compare
them step by step.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class PlainSGD:
    """SGD without momentum: ``p <- p - lr * (grad + weight_decay * p)``, as ``torch.optim.SGD``.
    The study's optimiser."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        self.param_groups: list[dict[str, Any]] = [{"params": [p for p in params if p.requires_grad], "lr": lr,
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
        _zero_grad(self.param_groups, set_to_none)


class PlainAdamW:
    """AdamW (decoupled weight decay, no AMSGrad), as ``torch.optim.AdamW`` computes it:

    ``p <- p * (1 - lr * wd)``; ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.

    Multi-tensor (``torch._foreach_*``) updates: one kernel per operation for all parameters.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        self.param_groups: list[dict[str, Any]] = [{"params": [p for p in params if p.requires_grad], "lr": lr,
                                                    "betas": betas,
                              "eps": eps, "weight_decay": weight_decay}]
        self.state: dict = {}
        self._t = 0

    @torch.no_grad()
    def step(self) -> None:
        self._t += 1
        t = self._t
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            grads = [p.grad for p in params]
            for p in params:
                if p not in self.state:
                    self.state[p] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                     torch.zeros_like(p, memory_format=torch.preserve_format))
            m = [self.state[p][0] for p in params]
            v = [self.state[p][1] for p in params]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, 1 - b2)
            step_size = lr / (1 - b1 ** t)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, math.sqrt(1 - b2 ** t))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, -step_size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _zero_grad(self.param_groups, set_to_none)


def _zero_grad(groups, set_to_none: bool) -> None:
    for group in groups:
        for p in group["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()


def build_optimizer(name: str, params, lr: float, weight_decay: float) -> PlainSGD | PlainAdamW:
    if name == "sgd":
        return PlainSGD(params, lr=lr, weight_decay=weight_decay)
    return PlainAdamW(params, lr=lr, weight_decay=weight_decay)


def warmup_cosine(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
