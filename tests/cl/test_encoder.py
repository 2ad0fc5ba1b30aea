"""The study's encoder, layer by layer, and our ConvNet's shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cl.encoder import ConvNetEncoder, PaperEncoder, build_encoder, count_parameters
from cl.errors import ConfigError

torch.set_num_threads(1)

PAPER_LAYER_PARAMS_MNIST = [128, 8192, 128, 32768, 256, 131072, 512, 8192]  # from PAPER.md


def _independent_count(in_channels: int) -> int:
    """The study's architecture written out (conv weights k*k*cin*cout, BN 2*c)."""
    convs = [(in_channels, 32), (32, 64), (64, 128), (128, 256), (256, 8)]
    bn = [64, 128, 256]
    return sum(2 * 2 * ci * co for ci, co in convs) + sum(2 * c for c in bn)


@pytest.mark.parametrize("channels,size,expected", [(1, 28, 181_248), (3, 32, 181_504)])
def test_paper_encoder_parameter_count(channels, size, expected):
    model = PaperEncoder(channels, size)
    assert count_parameters(model) == expected
    assert sum(p.numel() for p in model.parameters()) == expected
    assert _independent_count(channels) == expected
    assert all(p.requires_grad for p in model.parameters())


def test_paper_encoder_per_layer_parameters():
    model = PaperEncoder(1, 28)
    # one figure per module with parameters (a BatchNorm's weight and bias together)
    per_layer = [sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()]
    per_layer = [n for n in per_layer if n]
    assert per_layer == PAPER_LAYER_PARAMS_MNIST
    assert sum(PAPER_LAYER_PARAMS_MNIST) == 181_248
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)
    assert [c.kernel_size for c in convs] == [(2, 2)] * 5
    assert [c.stride for c in convs] == [(2, 2)] * 4 + [(1, 1)]
    assert [c.padding for c in convs] == [(1, 1)] * 4 + [(0, 0)]
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 4 and all(m.negative_slope == 0.2 for m in leaky)
    assert len([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]) == 3


def test_paper_encoder_layer_output_shapes_mnist():
    model = PaperEncoder(1, 28).eval()
    shapes = []
    x = torch.randn(2, 1, 28, 28)
    for layer in model.net:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(32, 15, 15), (64, 8, 8), (128, 5, 5), (256, 3, 3), (8, 2, 2)]
    assert tuple(x.shape) == (2, 32)


def test_paper_encoder_output_range_and_dim():
    torch.manual_seed(0)
    for channels, size in ((1, 28), (3, 32)):
        model = PaperEncoder(channels, size).eval()
        assert model.embedding_dim == 32
        with torch.no_grad():
            z = model(torch.randn(5, channels, size, size) * 3)
            e = model.embed(torch.randn(5, channels, size, size))
        assert z.shape == (5, 32) and e.shape == (5, 32)
        assert (z > 0).all() and (z < 1).all()
        assert (e > 0).all() and (e < 1).all()


def test_paper_encoder_embed_equals_forward():
    model = PaperEncoder(1, 28).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.embed(x))


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 8)])
@pytest.mark.parametrize("width", [8, 16])
def test_convnet_shapes_and_normalised_forward(channels, size, width):
    torch.manual_seed(1)
    model = ConvNetEncoder(channels, size, width=width).eval()
    x = torch.randn(4, channels, size, size)
    with torch.no_grad():
        features = model.backbone(x)
        e = model.embed(x)
        z = model(x)
    assert features.shape == (4, 128)  # pooled features
    assert z.shape == (4, 64) and model.embedding_dim == 64
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    # forward = L2-normalised MLP(pooled features), computed here by hand
    with torch.no_grad():
        h = model.head[2](torch.relu(model.head[0](features)))
    torch.testing.assert_close(z, h / h.norm(dim=1, keepdim=True))
    # embed (what we evaluate and search) is that same normalised embedding
    assert e.shape == (4, model.embedding_dim)
    torch.testing.assert_close(e, z)
    # the first conv has `width` filters, no bias
    assert model.backbone[0].out_channels == width and model.backbone[0].bias is None


def test_convnet_accepts_channels_last():
    model = ConvNetEncoder(1, 28, width=8).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        a = model.embed(x)
        b = model.to(memory_format=torch.channels_last).embed(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == (3, model.embedding_dim)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_build_encoder():
    assert isinstance(build_encoder("paper", 1, 28), PaperEncoder)
    enc = build_encoder("convnet", 3, 32, width=8)
    assert isinstance(enc, ConvNetEncoder) and enc.in_channels == 3 and enc.image_size == 32
    assert count_parameters(build_encoder("convnet", 1, 28, width=16)) < count_parameters(
        build_encoder("convnet", 1, 28, width=32))
    with pytest.raises(ConfigError):
        build_encoder("resnet", 1, 28)
