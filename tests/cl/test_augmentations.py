"""Batched augmentations against their documented parameters and torchvision references."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from cl.augmentations import (
    AUGMENTATIONS,
    Augmentation,
    _hsv_to_rgb,
    _rgb_to_hsv,
    augment_to_uint8,
    augment_uint8,
    color_jitter,
    gaussian_blur3,
    get_augmentation,
    random_grayscale,
    random_resized_crop_theta,
)
from cl.errors import ConfigError

torch.set_num_threads(1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _smooth_image(size=28):
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return (torch.exp(-((xx - 9) ** 2 + (yy - 12) ** 2) / 18)
            + 0.7 * torch.exp(-((xx - 19) ** 2) / 8 - ((yy - 18) ** 2) / 30)).clamp(0, 1)


def _disc(size=28, radius=8.0):
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    c = (size - 1) / 2
    return ((xx - c) ** 2 + (yy - c) ** 2 <= radius ** 2).float()


def _orientation_deg(img: torch.Tensor) -> float:
    """Principal-axis angle of a grey image's mass (image coordinates, y down)."""
    h, w = img.shape
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    m = img.sum()
    cx, cy = (img * xx).sum() / m, (img * yy).sum() / m
    mu20 = (img * (xx - cx) ** 2).sum() / m
    mu02 = (img * (yy - cy) ** 2).sum() / m
    mu11 = (img * (xx - cx) * (yy - cy)).sum() / m
    return math.degrees(0.5 * math.atan2(2 * float(mu11), float(mu20 - mu02)))


# ----------------------------------------------------------------------------- FER
def _fer_reference(img: torch.Tensor, angle: float) -> torch.Tensor:
    """The study's PIL-style pipeline with torchvision: resize 2s, pad 18, rotate, crop 2s*1.125, resize s."""
    s = img.shape[-1]
    r = TF.resize(img[None], [2 * s], antialias=True)
    r = TF.pad(r, 18)
    r = TF.rotate(r, angle, interpolation=InterpolationMode.BILINEAR)
    r = TF.center_crop(r, [round(2 * s * 1.125)])
    return TF.resize(r, [s], antialias=True)[0]


def test_fer_matches_the_studys_pipeline():
    img = _smooth_image()
    out = Augmentation("fer")(img[None, None].repeat(3, 1, 1, 1), _gen(5))
    grid = np.arange(-20.0, 20.01, 0.5)
    for i in range(3):
        errors = [float((_fer_reference(img, a) - out[i, 0]).abs().mean()) for a in grid]
        best = int(np.argmin(errors))
        assert errors[best] < 0.02, f"no rotation of the reference pipeline matches (best error {errors[best]:.3f})"
        assert abs(grid[best]) <= 15.5
        # the zoom matters: without the 1.125 crop the match is much worse
        wrong_zoom = TF.rotate(img[None], grid[best], interpolation=InterpolationMode.BILINEAR)[0]
        assert float((wrong_zoom - out[i, 0]).abs().mean()) > 2 * errors[best]


def test_fer_shrinks_by_1125_and_rotates_within_15_degrees():
    n = 64
    disc = _disc(56, radius=16.0)
    out = Augmentation("fer")(disc[None, None].repeat(n, 1, 1, 1), _gen(0))
    area_ratio = out.sum(dim=(1, 2, 3)) / disc.sum()
    # a disc is rotation invariant: only the zoom changes its area, by 1/1.125^2
    torch.testing.assert_close(area_ratio, torch.full((n,), 1 / 1.125 ** 2), atol=0.03, rtol=0)

    bar = torch.zeros(56, 56)
    bar[26:30, 8:48] = 1.0  # horizontal bar through the centre
    out = Augmentation("fer")(bar[None, None].repeat(n, 1, 1, 1), _gen(1))
    angles = np.array([_orientation_deg(out[i, 0]) for i in range(n)])
    assert np.abs(angles).max() <= 15.5
    assert np.abs(angles).max() > 10  # the range is actually used
    assert angles.min() < -5 and angles.max() > 5  # both directions
    assert len(np.unique(np.round(angles, 3))) > n // 2  # per-image angles
    lengths = (out[:, 0] > 0.5).sum(dim=(1, 2)).float()
    assert float(lengths.mean()) < float((bar > 0.5).sum()) / 1.125 ** 2 * 1.15


# ----------------------------------------------------------------------------- general behaviour
@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_shape_range_and_channels(name, channels, size):
    x = torch.rand(6, channels, size, size, generator=_gen(2))
    y = Augmentation(name)(x, _gen(3))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", [a for a in AUGMENTATIONS if a != "none"])
def test_determinism_per_seed(name):
    x = torch.rand(5, 3, 32, 32, generator=_gen(4))
    a = Augmentation(name)(x.clone(), _gen(10))
    b = Augmentation(name)(x.clone(), _gen(10))
    c = Augmentation(name)(x.clone(), _gen(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_none_is_identity():
    x = torch.rand(4, 3, 32, 32, generator=_gen(6))
    assert torch.equal(Augmentation("none")(x, _gen(0)), x)
    u8 = (torch.rand(4, 1, 28, 28, generator=_gen(7)) * 255).to(torch.uint8)
    out = augment_uint8(u8, get_augmentation("none"))
    torch.testing.assert_close(out, u8.float() / 255 * 2 - 1)


def test_augment_uint8_range():
    u8 = (torch.rand(8, 3, 32, 32, generator=_gen(8)) * 255).to(torch.uint8)
    out = augment_uint8(u8, get_augmentation("simclr"), _gen(1))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= -1 - 1e-6 and float(out.max()) <= 1 + 1e-6


def test_empty_batch_and_unknown_name():
    x = torch.zeros(0, 1, 28, 28)
    for name in AUGMENTATIONS:
        assert Augmentation(name)(x, _gen(0)).shape == x.shape
    with pytest.raises(ConfigError):
        get_augmentation("mixup")


def test_grey_images_stay_grey_through_colour_ops():
    x = torch.rand(16, 1, 28, 28, generator=_gen(9))
    for name in ("simclr", "crop", "affine"):
        assert Augmentation(name)(x, _gen(1)).shape[1] == 1
    assert torch.equal(random_grayscale(x, 1.0, _gen(0)), x)
    # saturation/hue are no-ops on one channel; with all adjustments off it is the identity
    assert torch.equal(color_jitter(x, 0.0, 0.0, 0.8, 0.2, p=1.0, gen=_gen(0)), x)


# ----------------------------------------------------------------------------- colour pieces
def test_hsv_matches_colorsys():
    x = torch.rand(2, 3, 9, 11, generator=_gen(12), dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)  # grey: hue 0, sat 0
    x[0, :, 0, 1] = 0.0  # black
    x[0, :, 0, 2] = torch.tensor([1.0, 1.0, 0.2], dtype=torch.float64)  # r == g tie
    hsv = _rgb_to_hsv(x)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).tolist()
    ref = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels], dtype=torch.float64)
    torch.testing.assert_close(hsv.permute(0, 2, 3, 1).reshape(-1, 3), ref, rtol=1e-9, atol=1e-9)
    # and back
    back = _hsv_to_rgb(hsv)
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    hsv_pixels = ref.tolist()
    ref_rgb = torch.tensor([colorsys.hsv_to_rgb(*p) for p in hsv_pixels], dtype=torch.float64)
    torch.testing.assert_close(_hsv_to_rgb(ref.view(2, 9, 11, 3).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(-1, 3),
                               ref_rgb, rtol=1e-9, atol=1e-9)


def test_hue_shift_matches_torchvision():
    x = torch.rand(1, 3, 8, 8, generator=_gen(13))
    for shift in (0.1, -0.15, 0.2):
        hsv = _rgb_to_hsv(x)
        ours = _hsv_to_rgb(torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1))
        torch.testing.assert_close(ours, TF.adjust_hue(x, shift), atol=1e-5, rtol=0)


def test_direct_hue_shift_matches_torchvision_per_image():
    from cl.augmentations import _shift_hue

    x = torch.rand(6, 3, 9, 7, generator=_gen(15))
    x[0] = 0.4  # grey: no hue to rotate
    x[1, :, 0, 0] = torch.tensor([0.9, 0.9, 0.2])  # ties between the largest channels
    x[2, :, 0, 0] = torch.tensor([0.0, 0.0, 0.0])  # black
    shifts = torch.tensor([0.1, -0.5, 0.5, 0.0, 0.37, -0.2])
    ours = _shift_hue(x, shifts.view(6, 1, 1))
    ref = torch.stack([TF.adjust_hue(x[i:i + 1], float(shifts[i]))[0] for i in range(6)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_colour_jitter_probability_zero_and_one():
    x = torch.rand(32, 3, 8, 8, generator=_gen(14))
    assert torch.equal(color_jitter(x, 0.8, 0.8, 0.8, 0.2, p=0.0, gen=_gen(0)), x)
    y = color_jitter(x, 0.8, 0.8, 0.8, 0.2, p=1.0, gen=_gen(0))
    changed = (y - x).abs().flatten(1).amax(1) > 1e-4
    assert bool(changed.all())


def test_random_grayscale_probability():
    x = torch.rand(400, 3, 2, 2, generator=_gen(15))
    y = random_grayscale(x, 0.2, _gen(1))
    grey = (y[:, 0] == y[:, 1]).all(dim=(1, 2)) & (y[:, 1] == y[:, 2]).all(dim=(1, 2))
    assert 0.12 < float(grey.float().mean()) < 0.28
    ref = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(y[grey][:, 0], ref[grey])
    assert torch.equal(y[~grey], x[~grey])


@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_gaussian_blur3_matches_torchvision(sigma):
    x = torch.rand(2, 3, 13, 10, generator=_gen(16))
    ours = gaussian_blur3(x, sigma, sigma, _gen(0))
    for i in range(2):
        ref = TF.gaussian_blur(x[i], kernel_size=[3, 3], sigma=[sigma, sigma])
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=1e-5)


def test_gaussian_blur3_sigma_is_per_image():
    x = torch.rand(1, 1, 9, 9, generator=_gen(17)).repeat(8, 1, 1, 1)
    y = gaussian_blur3(x, 0.1, 2.0, _gen(3))
    # (sigmas below ~0.3 all give an almost-identity kernel, so not every value differs)
    assert len({round(float(v), 6) for v in y.flatten(1).std(1)}) >= 4


# ----------------------------------------------------------------------------- crops
def test_random_resized_crop_theta_areas_ratios_and_bounds():
    n = 2000
    theta = random_resized_crop_theta(n, (0.08, 1.0), (3 / 4, 4 / 3), _gen(18), flip_p=0.5)
    w, h = theta[:, 0, 0].abs(), theta[:, 1, 1]
    area = w * h  # fraction of the image
    assert float(area.min()) >= 0.08 - 1e-6 and float(area.max()) <= 1 + 1e-6
    ratio = w / h
    assert float(ratio.min()) >= 3 / 4 - 1e-5 and float(ratio.max()) <= 4 / 3 + 1e-5
    # crop lies inside the image (normalised coords [-1, 1])
    assert bool(((theta[:, 0, 2].abs() + w) <= 1 + 1e-5).all())
    assert bool(((theta[:, 1, 2].abs() + h) <= 1 + 1e-5).all())
    assert bool((theta[:, 0, 1] == 0).all() and (theta[:, 1, 0] == 0).all())
    flipped = float((theta[:, 0, 0] < 0).float().mean())
    assert 0.44 < flipped < 0.56
    # torchvision samples the area uniformly in scale (before rejection): the spread is wide
    assert float(area.min()) < 0.12 and float(area.max()) > 0.9
    none = random_resized_crop_theta(200, (0.2, 1.0), (3 / 4, 4 / 3), _gen(19), flip_p=0.0)
    assert bool((none[:, 0, 0] > 0).all())
    assert float((none[:, 0, 0] * none[:, 1, 1]).min()) >= 0.2 - 1e-6


def test_full_crop_theta_is_identity_warp():
    from cl.augmentations import _affine

    x = torch.rand(2, 3, 16, 16, generator=_gen(20))
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(2, 1, 1)
    torch.testing.assert_close(_affine(x, theta), x, atol=1e-5, rtol=0)
    flip = theta.clone()
    flip[:, 0, 0] = -1
    torch.testing.assert_close(_affine(x, flip), x.flip(-1), atol=1e-5, rtol=0)


def _ls_factor(target: torch.Tensor, base: torch.Tensor, mask: torch.Tensor) -> float:
    """Least-squares f in target = f * base over the masked (unclamped) entries."""
    t, b = target[mask].double(), base[mask].double()
    return float((t * b).sum() / (b * b).sum())


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation"])
def test_jitter_adjustments_are_torchvisions(op):
    """Each adjustment alone equals torchvision's adjust_* for some factor within the range."""
    x = torch.rand(6, 3, 8, 8, generator=_gen(30)) * 0.5 + 0.25  # away from the clamps
    strength = 0.8
    kwargs = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}
    kwargs[op] = strength
    y = color_jitter(x, **kwargs, p=1.0, gen=_gen(31))
    factors = []
    for i in range(len(x)):
        xi, yi = x[i], y[i]
        inside = (yi > 1e-4) & (yi < 1 - 1e-4)
        if op == "brightness":
            f = _ls_factor(yi, xi, inside)
            ref = TF.adjust_brightness(xi, f)
        elif op == "contrast":
            m = TF.rgb_to_grayscale(xi).mean()
            f = _ls_factor(yi - m, xi - m, inside)
            ref = TF.adjust_contrast(xi, f)
        else:
            g = TF.rgb_to_grayscale(xi).expand_as(xi)
            f = _ls_factor(yi - g, xi - g, inside)
            ref = TF.adjust_saturation(xi, f)
        # (torchvision weighs red 0.2989 in its greyscale, we use 0.299: differences ~4e-5)
        torch.testing.assert_close(yi, ref, atol=2e-4, rtol=0)
        assert 1 - strength - 1e-4 <= f <= 1 + strength + 1e-4
        factors.append(f)
    assert max(factors) - min(factors) > 0.2  # per-image factors


def test_augment_to_uint8_matches_a_direct_round_trip_in_any_chunking():
    gen_images = torch.Generator().manual_seed(3)
    u8 = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8, generator=gen_images)
    aug = get_augmentation("affine")
    whole = augment_to_uint8(u8, aug, torch.Generator().manual_seed(5), chunk=4096)
    # written out: float in [0, 1], augment with the same generator, back to rounded uint8
    x = aug(u8.float() / 255.0, torch.Generator().manual_seed(5))
    expected = torch.clamp(torch.round(x * 255.0), 0, 255).to(torch.uint8)
    assert whole.dtype == torch.uint8 and torch.equal(whole, expected)
    assert not torch.equal(whole, u8)  # it did augment
    none = augment_to_uint8(u8, get_augmentation("none"), torch.Generator().manual_seed(5), chunk=10)
    assert torch.equal(none, u8)  # the identity survives the round trip exactly
