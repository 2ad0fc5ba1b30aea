"""Encoders: the study's CNN, exactly, and the small ConvNet our default recipe uses.

``PaperEncoder`` (181,248 parameters for 1x28x28 input, 181,504 for 3x32x32; 32-d output in
(0, 1) because of the final sigmoid)::

    Conv(k2, s2, p1, no bias) C->32, LeakyReLU(0.2)        -> 32x15x15 (MNIST)
    Conv(k2, s2, p1, no bias) 32->64, BN, LeakyReLU(0.2)   -> 64x8x8
    Conv(k2, s2, p1, no bias) 64->128, BN, LeakyReLU(0.2)  -> 128x5x5
    Conv(k2, s2, p1, no bias) 128->256, BN, LeakyReLU(0.2) -> 256x3x3
    Conv(k2, s1, p0, no bias) 256->8, Sigmoid, Flatten     -> 8x2x2 = 32

``ConvNetEncoder`` (ours): four 3x3 convs + BN + ReLU with stride-2 downsampling,
global average pooling to 128 features, then a 2-layer MLP to a 64-d L2-normalised embedding.
We evaluate and search that normalised output, not the pooled features: measured on digits
(paper protocol, 3 seeds) it gave linear 0.98-0.99 and precision@10 0.95-0.97 against
0.96-0.98 and 0.77-0.83 for the pooled features, because small probes and cosine search both
favour the compact, normalised clusters the loss shapes directly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODERS = ("paper", "convnet")


class PaperEncoder(nn.Module):
    """The study's encoder. ``forward`` returns the 32-d sigmoid embedding."""

    def __init__(self, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size

        def block(cin, cout, bn=True):
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=2, stride=2, padding=1, bias=False)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.net = nn.Sequential(
            *block(in_channels, 32, bn=False),
            *block(32, 64),
            *block(64, 128),
            *block(128, 256),
            nn.Conv2d(256, 8, kernel_size=2, stride=1, padding=0, bias=False),
            nn.Sigmoid(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.embedding_dim = int(self.net(torch.zeros(1, in_channels, image_size, image_size)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation we evaluate and search (same as ``forward`` for this encoder)."""
        return self.net(x)


class ConvNetEncoder(nn.Module):
    """Small CNN + MLP; ``forward`` and ``embed`` both give the L2-normalised embedding."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 32,
                 feature_dim: int = 128, projection_dim: int = 64):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        w = width

        def conv(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.backbone = nn.Sequential(
            *conv(in_channels, w, 1),
            *conv(w, 2 * w, 2),
            *conv(2 * w, 4 * w, 2),
            *conv(4 * w, feature_dim, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True),
                                  nn.Linear(feature_dim, projection_dim))
        self.embedding_dim = projection_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)


def build_encoder(name: str, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    from .errors import ConfigError

    if name == "paper":
        return PaperEncoder(in_channels, image_size)
    if name == "convnet":
        return ConvNetEncoder(in_channels, image_size, width=width or 32)
    raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
