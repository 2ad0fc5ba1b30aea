"""Batched, vectorised image augmentations on tensors.

The study applied torchvision transforms to one PIL image at a time; that costs more than the
encoder on a small CPU. Here every augmentation takes a float batch ``(B, C, H, W)`` in
``[0, 1]`` and draws *per-image* random parameters from a ``torch.Generator``, so one call
augments a whole batch with a handful of tensor ops (geometry is one ``affine_grid`` +
``grid_sample``). Results are reproducible for a given generator state.

Names and the study's parameters:

- ``none``: identity (the study then only normalises).
- ``fer`` ("pad, rotate and scale", Guo et al. 2016): resize to 2*size, pad 18, rotate by a
  uniform angle in [-15, 15] degrees, centre-crop 2*size*1.125, resize back to size. As one
  affine map: a random rotation and a fixed zoom-out by 1.125 with black fill.
- ``simclr`` (Chen et al. 2020): RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)),
  horizontal flip p=0.5, colour jitter (brightness 0.8, contrast 0.8, saturation 0.8, hue 0.2)
  with p=0.8, greyscale p=0.2, Gaussian blur kernel 3 with sigma in [0.1, 2.0].

Ours, used by the default recipe:

- ``affine``: rotation in [-12, 12] degrees, scale in [0.85, 1.15], shift up to 10 % of the
  side, brightness/contrast jitter 0.3 with p=0.8. Keeps digits readable (no flips).
- ``crop``: the supervised-contrastive CIFAR recipe: RandomResizedCrop scale (0.2, 1), flip,
  jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, greyscale p=0.2.

Colour-jitter order: torchvision shuffles the four adjustments per image; we shuffle them per
batch (one permutation per call), which keeps the work vectorised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .catalog import AUGMENTATIONS, PAPER_AUGMENTATIONS  # noqa: F401  (re-exported)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its own 2x3 matrix (output coords -> input coords), black fill."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _hue(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(hue in [0, 1), max, max - min)`` of an RGB batch, each ``(n, 1, H, W)``; hue 0 for grey."""
    maxc = x.amax(1, keepdim=True)
    delta = maxc - x.amin(1, keepdim=True)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    safe = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    return torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h)), maxc, delta


# Back to RGB without the six-sector case analysis: channel n (R: 5, G: 3, B: 1) is
# top - span*clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, where top is the value and span
# is value*saturation = max - min. The same function as the sector table (colorsys,
# torchvision), in three tensor ops instead of six where()s: 5.6x faster.
_HSV_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)


def _rgb_from_hue(h: torch.Tensor, top: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    offsets = torch.tensor(_HSV_CHANNEL_OFFSETS, dtype=h.dtype).view(1, 3, 1, 1)
    k = (offsets + h * 6.0) % 6.0
    return top - span * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    h, maxc, delta = _hue(x)
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    return torch.cat([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _rgb_from_hue(h, v, v * s)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shift`` (turns, shape ``(n, 1, 1)``), as RGB -> HSV -> RGB
    would, without building the HSV image: value and saturation do not change. About 3x faster
    than the round trip on a CIFAR-10 batch, the same up to float rounding."""
    h, maxc, delta = _hue(x)
    return _rgb_from_hue((h + shift.unsqueeze(1)) % 1.0, maxc, delta)


def color_jitter(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Per-image random brightness/contrast/saturation/hue, each image jittered with prob. ``p``."""
    n = x.shape[0]
    apply = (torch.rand(n, generator=gen) < p).view(n, 1, 1, 1)
    b = _uniform(n, max(0.0, 1 - brightness), 1 + brightness, gen).view(n, 1, 1, 1)
    c = _uniform(n, max(0.0, 1 - contrast), 1 + contrast, gen).view(n, 1, 1, 1)
    s = _uniform(n, max(0.0, 1 - saturation), 1 + saturation, gen).view(n, 1, 1, 1)
    h = _uniform(n, -hue, hue, gen).view(n, 1, 1)
    order = torch.randperm(4, generator=gen).tolist()
    y = x
    for op in order:
        if op == 0 and brightness > 0:
            y = (y * b).clamp(0, 1)
        elif op == 1 and contrast > 0:
            mean = _grey(y).mean(dim=(1, 2, 3), keepdim=True)
            y = (c * y + (1 - c) * mean).clamp(0, 1)
        elif op == 2 and saturation > 0 and y.shape[1] == 3:
            y = (s * y + (1 - s) * _grey(y)).clamp(0, 1)
        elif op == 3 and hue > 0 and y.shape[1] == 3:
            y = _shift_hue(y, h)
    return torch.where(apply, y, x)


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator | None) -> torch.Tensor:
    if x.shape[1] == 1 or p <= 0:
        return x
    n = x.shape[0]
    apply = (torch.rand(n, generator=gen) < p).view(n, 1, 1, 1)
    return torch.where(apply, _grey(x).expand_as(x), x)


def gaussian_blur3(x: torch.Tensor, sigma_lo: float, sigma_hi: float, gen: torch.Generator | None) -> torch.Tensor:
    """3x3 Gaussian blur with a per-image sigma (separable, reflect padding like torchvision)."""
    n, c, hgt, wid = x.shape
    sigma = _uniform(n, sigma_lo, sigma_hi, gen)
    taps = torch.tensor([-1.0, 0.0, 1.0])
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).to(x.dtype)  # (n, 3)
    k = k.repeat_interleave(c, 0)  # one kernel per (image, channel)
    y = F.pad(x.reshape(1, n * c, hgt, wid), (1, 1, 1, 1), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, 3), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, 3, 1), groups=n * c)
    return y.view(n, c, hgt, wid)


def random_resized_crop_theta(n: int, scale: tuple[float, float], ratio: tuple[float, float],
                              gen: torch.Generator | None, flip_p: float = 0.0) -> torch.Tensor:
    """Affine matrices for torchvision's RandomResizedCrop (10 tries, then the whole image)."""
    tries = 10
    area = _uniform(n * tries, *scale, gen).view(n, tries)
    log_r = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), gen).view(n, tries)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r)  # as fractions of the side
    h = torch.sqrt(area / r)
    ok = (w <= 1) & (h <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    w_sel = torch.where(first >= 0, w[rows, first.clamp_min(0)], torch.ones(n))
    h_sel = torch.where(first >= 0, h[rows, first.clamp_min(0)], torch.ones(n))
    # crop centre, uniform over valid positions
    cx = (torch.rand(n, generator=gen) * (1 - w_sel) + w_sel / 2) * 2 - 1
    cy = (torch.rand(n, generator=gen) * (1 - h_sel) + h_sel / 2) * 2 - 1
    flip = torch.where(torch.rand(n, generator=gen) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w_sel * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h_sel
    theta[:, 1, 2] = cy
    return theta


@dataclass(frozen=True)
class Augmentation:
    """A named, parameterised batched augmentation. Call with a float batch in [0, 1]."""

    name: str

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        n = x.shape[0]
        if self.name == "none" or n == 0:
            return x
        if self.name == "fer":
            angle = _uniform(n, -15.0, 15.0, gen) * (math.pi / 180)
            zoom = 1.125  # centre crop of 2*size*1.125 from the padded 2*size image
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = torch.cos(angle) * zoom
            theta[:, 0, 1] = -torch.sin(angle) * zoom
            theta[:, 1, 0] = torch.sin(angle) * zoom
            theta[:, 1, 1] = torch.cos(angle) * zoom
            return _affine(x, theta)
        if self.name == "simclr":
            x = _affine(x, random_resized_crop_theta(n, (0.08, 1.0), (3 / 4, 4 / 3), gen, flip_p=0.5))
            x = color_jitter(x, 0.8, 0.8, 0.8, 0.2, p=0.8, gen=gen)
            x = random_grayscale(x, 0.2, gen)
            return gaussian_blur3(x, 0.1, 2.0, gen)
        if self.name == "crop":
            x = _affine(x, random_resized_crop_theta(n, (0.2, 1.0), (3 / 4, 4 / 3), gen, flip_p=0.5))
            x = color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, gen=gen)
            return random_grayscale(x, 0.2, gen)
        if self.name == "affine":
            angle = _uniform(n, -12.0, 12.0, gen) * (math.pi / 180)
            scale = _uniform(n, 0.85, 1.15, gen)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = torch.cos(angle) / scale
            theta[:, 0, 1] = -torch.sin(angle) / scale
            theta[:, 1, 0] = torch.sin(angle) / scale
            theta[:, 1, 1] = torch.cos(angle) / scale
            theta[:, :, 2] = _uniform(2 * n, -0.2, 0.2, gen).view(n, 2)  # 10 % of the side
            x = _affine(x, theta)
            return color_jitter(x, 0.3, 0.3, 0.0, 0.0, p=0.8, gen=gen)
        raise ValueError(f"unknown augmentation {self.name!r}")


def get_augmentation(name: str) -> Augmentation:
    from .errors import ConfigError

    if name not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    return Augmentation(name)


def augment_uint8(images: torch.Tensor, augmentation: Augmentation, gen: torch.Generator | None = None) -> torch.Tensor:
    """uint8 batch -> augmented float batch normalised to [-1, 1] (ready for the encoder)."""
    x = images.float().div_(255.0)
    x = augmentation(x, gen)
    return x.mul_(2.0).sub_(1.0)


def augment_to_uint8(images: torch.Tensor, augmentation: Augmentation, gen: torch.Generator | None = None,
                     chunk: int = 4096) -> torch.Tensor:
    """uint8 batch -> augmented uint8 batch (rounded), as the study's PIL pipeline stored a positive
    it augmented once; also what the app shows. Works in chunks to bound the float copy's memory."""
    out = torch.empty_like(images)
    for s in range(0, len(images), chunk):
        x = augmentation(images[s:s + chunk].float().div_(255.0), gen)
        out[s:s + chunk] = x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out
