"""Hostile and odd image inputs, all built inside the tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cl.errors import ImageInputError, UserError
from cl.images import decode_image_bytes, decode_image_file, fit_to_format, prepare_image, to_pil
from cl.retrieval import prepare_query

SHAPES = {"mnist": (1, 28), "digits": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32)}


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR (with a valid CRC) claims ``width`` x ``height`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _digit_canvas(dark_on_light: bool, size=(120, 90)) -> Image.Image:
    """A hand-drawn-looking '7' (two strokes), off-centre."""
    bg, fg = (255, 0) if dark_on_light else (0, 255)
    arr = np.full(size[::-1], bg, dtype=np.uint8)
    arr[20:28, 30:90] = fg  # top bar
    for i in range(0, 50):  # diagonal
        arr[28 + i, 86 - i // 2 - 4: 86 - i // 2 + 4] = fg
    return Image.fromarray(arr, "L")


def _check_valid(tensor: torch.Tensor, dataset: str):
    c, s = SHAPES[dataset]
    assert tensor.dtype == torch.uint8
    assert tuple(tensor.shape) == (c, s, s)


def _assert_refused(data: bytes, name="upload"):
    with pytest.raises(ImageInputError) as excinfo:
        decode_image_bytes(data, name=name)
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and msg.startswith(name)
    # the same bytes through the query path used by the CLI and the app
    for dataset in ("mnist", "cifar10"):
        with pytest.raises(ImageInputError):
            prepare_query(data, *SHAPES[dataset], dataset)
    return msg


# ----------------------------------------------------------------------------- hostile
def test_empty_bytes():
    assert "empty" in _assert_refused(b"")


def test_random_bytes():
    _assert_refused(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def test_svg():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
    assert "SVG" in _assert_refused(svg)
    assert "SVG" in _assert_refused(b'  \n<svg width="10" height="10"></svg>')


def test_truncated_png_and_jpeg():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    png = _encode(img, "PNG")
    _assert_refused(png[: len(png) // 2])
    _assert_refused(png[:40])
    jpeg = _encode(img, "JPEG", quality=90)
    _assert_refused(jpeg[: len(jpeg) // 2])


def test_bad_crc_png():
    png = bytearray(_encode(Image.new("L", (8, 8), 5)))
    png[29] ^= 0xFF  # inside IHDR's CRC
    _assert_refused(bytes(png))


@pytest.mark.parametrize("w,h", [(30000, 30000), (7000, 7000), (12001, 10), (100_000, 1)])
def test_decompression_bomb_header_refused(w, h):
    data = _forged_png(w, h)
    assert len(data) < 200  # cheap to build, huge if decoded
    assert struct.unpack(">II", data[16:24]) == (w, h)  # the forged IHDR
    if w * h < 2 * Image.MAX_IMAGE_PIXELS:  # (larger ones PIL itself refuses on open)
        assert Image.open(io.BytesIO(data)).size == (w, h)  # a well-formed header
    msg = _assert_refused(data)
    assert "too large" in msg or "not an image file" in msg


def test_zero_sized_header_refused():
    _assert_refused(_forged_png(0, 10))


def test_oversized_bytes_refused():
    with pytest.raises(ImageInputError) as excinfo:
        decode_image_bytes(b"\x89PNG" + b"\x00" * 2000, max_bytes=1000)
    assert "limit" in str(excinfo.value)


def test_file_paths(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("this is a text file, not an image\n")
    with pytest.raises(ImageInputError):
        decode_image_file(fake)
    with pytest.raises(ImageInputError):
        decode_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageInputError):
        decode_image_file(tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageInputError):
        decode_image_file(empty)
    assert issubclass(ImageInputError, UserError)


def _tiff(**patch) -> bytes:
    """A small little-endian TIFF, optionally with a patched first IFD or a bogus second page."""
    d = bytearray(_encode(Image.new("RGB", (8, 8), (1, 2, 3)), "TIFF"))
    assert d[:4] == b"II*\x00"
    (off,) = struct.unpack_from("<I", d, 4)
    (n,) = struct.unpack_from("<H", d, off)
    for i in range(n):
        entry = off + 2 + 12 * i
        tag = struct.unpack_from("<H", d, entry)[0]
        if tag in patch.get("values", {}):
            struct.pack_into("<H", d, entry + 8, patch["values"][tag])
        if tag in patch.get("counts", {}):
            struct.pack_into("<I", d, entry + 4, patch["counts"][tag])
    if patch.get("bogus_second_page"):
        struct.pack_into("<I", d, off + 2 + 12 * n, len(d))  # next-IFD pointer -> an IFD without a size
        d += struct.pack("<H", 1) + struct.pack("<HHII", 65000, 3, 1, 0) + struct.pack("<I", 0)
    return bytes(d)


def test_tiff_with_bogus_second_page():
    assert decode_image_bytes(_tiff()).size == (8, 8)  # control: the unpatched file is fine
    msg = _assert_refused(_tiff(bogus_second_page=True))
    assert "corrupt" in msg


def test_tiff_absurd_samples_per_pixel_prints_nothing(capfd, monkeypatch):
    import logging

    # as in a plain `python -m cl` process: no logging handlers configured (pytest adds its own)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    _assert_refused(_tiff(values={277: 2048}))
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # PIL's log line must not leak onto the terminal


def test_corrupt_tiff_metadata_raises_no_warnings():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decode_image_bytes(_tiff(counts={257: 1000, 258: 5000}))
        except ImageInputError:
            pass
    assert [str(w.message) for w in caught] == []  # they would print extra lines on stderr


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP", "ICO", "PPM", "TGA"])
def test_mutated_files_never_escape(fmt, capfd):
    """A small seeded fuzz: flipped bytes and truncations either decode or raise ImageInputError."""
    rng = np.random.default_rng(sum(map(ord, fmt)))
    base = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    data = _encode(base, fmt)
    for _ in range(150):
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            d = d[: int(rng.integers(1, len(d)))]
        try:
            img = decode_image_bytes(bytes(d))
        except ImageInputError as err:
            assert "\n" not in str(err)
            continue
        for channels, size, mode in ((3, 32, "resize"), (1, 28, "digit")):
            t = prepare_image(img, channels, size, mode=mode).tensor
            assert t.dtype == torch.uint8 and tuple(t.shape) == (channels, size, size)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ----------------------------------------------------------------------------- odd but valid
def _valid_everywhere(data: bytes):
    out = {}
    for dataset in SHAPES:
        prepared = prepare_query(data, *SHAPES[dataset], dataset)
        _check_valid(prepared.tensor, dataset)
        out[dataset] = prepared
    return out


def test_rgba_transparent_background_becomes_paper():
    arr = np.zeros((60, 60, 4), dtype=np.uint8)  # fully transparent black
    arr[10:50, 27:33] = (0, 0, 0, 255)  # an opaque black '1'
    out = _valid_everywhere(_encode(Image.fromarray(arr, "RGBA")))
    mnist = out["mnist"]
    assert mnist.inverted  # transparent -> white paper -> dark-on-light -> inverted
    t = mnist.tensor[0].numpy()
    assert t.max() > 200 and t[0].max() == 0 and t[:, 0].max() == 0
    cifar = out["cifar10"].tensor.numpy()
    assert cifar[:, 0, 0].min() > 240  # white paper, not black


def test_cmyk_jpeg():
    img = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    data = _encode(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = _valid_everywhere(data)
    r, g, b = out["cifar10"].tensor.float().mean(dim=(1, 2)).tolist()
    assert r > 200 and g < 50 and b < 50


def test_16_bit_png_uses_full_range():
    ramp = np.tile(np.linspace(1000, 60000, 64).astype(np.uint16), (64, 1))  # left dark -> right bright
    img = Image.fromarray(ramp)
    data = _encode(img)
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I;16B", "I", "I;16L")
    out = _valid_everywhere(data)
    t = fit_to_format(decode_image_bytes(data), 1, 32, mode="resize").float()[0]
    row = t.mean(0).numpy()
    assert row[0] < 10 and row[-1] > 245  # scaled to 0..255, not clipped to white
    assert np.all(np.diff(row) >= -1)
    assert out["cifar10"].tensor.shape == (3, 32, 32)


def test_float_and_la_modes():
    f = Image.fromarray(np.linspace(-3, 5, 30 * 20, dtype=np.float32).reshape(20, 30), "F")
    _valid_everywhere(_encode(f, "TIFF"))
    la = Image.new("LA", (20, 20), (128, 255))
    _valid_everywhere(_encode(la))


def test_palette_png_keeps_colours():
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[:, :16] = (0, 0, 255)
    rgb[:, 16:] = (0, 255, 0)
    img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    data = _encode(img)
    assert Image.open(io.BytesIO(data)).mode == "P"
    t = _valid_everywhere(data)["cifar10"].tensor.numpy()
    assert tuple(t[:, 16, 4]) == (0, 0, 255) and tuple(t[:, 16, 28]) == (0, 255, 0)


def test_palette_with_transparency():
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (4, 4, 12, 12))
    data = _encode(img, transparency=0)
    t = _valid_everywhere(data)["cifar10"].tensor.numpy()
    assert tuple(t[:, 0, 0]) == (255, 255, 255)  # transparent -> white
    assert tuple(t[:, 16, 16]) == (255, 0, 0)


def test_exif_rotated_jpeg():
    arr = np.zeros((20, 40, 3), dtype=np.uint8)  # stored 40 wide, 20 high
    arr[:8, :8] = (255, 0, 0)  # red block top-left as stored
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(img, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image_bytes(data)
    assert decoded.size == (20, 40)  # width and height swapped
    got = np.asarray(decoded.convert("RGB")).astype(int)
    expected = np.rot90(arr, k=-1)  # clockwise, independently of PIL
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 10
    assert got[:6, -6:, 0].mean() > 200  # the block is now top-right
    _valid_everywhere(data)


def test_broken_exif_does_not_reject_good_raster():
    img = Image.new("RGB", (10, 10), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    data = _encode(img, "JPEG", exif=exif.tobytes())
    _valid_everywhere(data)


def test_animated_gif_uses_first_frame():
    frames = []
    for left in (True, False):
        arr = np.zeros((32, 32), dtype=np.uint8)
        if left:
            arr[8:24, 2:12] = 255
        else:
            arr[8:24, 20:30] = 255
        frames.append(Image.fromarray(arr).convert("P"))
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    t = _valid_everywhere(data)["cifar10"].tensor.float()
    assert t[:, :, :16].mean() > 3 * t[:, :, 16:].mean()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "1"])
def test_one_pixel(mode):
    _valid_everywhere(_encode(Image.new(mode, (1, 1))))


def test_large_photo_within_limits():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((4000, 3000), Image.Resampling.NEAREST)
    data = _encode(img, "JPEG", quality=70)
    decoded = decode_image_bytes(data)
    assert decoded.size == (4000, 3000)
    t = prepare_query(data, 3, 32, "cifar10")
    _check_valid(t.tensor, "cifar10")
    assert any("centre-cropped" in s for s in t.steps) and any("resized" in s for s in t.steps)


def test_wide_image_centre_crop():
    arr = np.zeros((10, 30), dtype=np.uint8)
    arr[:, 10:20] = 255  # the centre third is white
    t = fit_to_format(Image.fromarray(arr), 1, 10, mode="resize")
    assert t.shape == (1, 10, 10) and int(t.min()) == 255


# ----------------------------------------------------------------------------- digit preprocessing
def test_dark_on_light_digit_is_inverted():
    p = prepare_query(_encode(_digit_canvas(dark_on_light=True)), 1, 28, "mnist")
    assert p.inverted and any("inverted" in s for s in p.steps)
    _check_mnist_like(p.tensor[0].numpy())


def test_light_on_dark_digit_is_not_inverted():
    p = prepare_query(_encode(_digit_canvas(dark_on_light=False)), 1, 28, "mnist")
    assert not p.inverted
    _check_mnist_like(p.tensor[0].numpy())


def test_invert_override():
    data = _encode(_digit_canvas(dark_on_light=False))
    assert prepare_query(data, 1, 28, "mnist", invert=True).inverted
    assert not prepare_query(_encode(_digit_canvas(True)), 1, 28, "mnist", invert=False).inverted


def test_both_polarities_give_the_same_digit():
    a = prepare_query(_encode(_digit_canvas(True)), 1, 28, "mnist").tensor.float()
    b = prepare_query(_encode(_digit_canvas(False)), 1, 28, "mnist").tensor.float()
    assert (a - b).abs().mean() < 2


def _check_mnist_like(t: np.ndarray):
    assert t.shape == (28, 28) and t.max() > 200
    ys, xs = np.nonzero(t > 20)
    assert ys.max() - ys.min() + 1 <= 21 and xs.max() - xs.min() + 1 <= 21  # fits MNIST's 20x20 box
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= 18
    w = t.astype(float)
    cy = (w.sum(1) * np.arange(28)).sum() / w.sum()
    cx = (w.sum(0) * np.arange(28)).sum() / w.sum()
    assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5  # centred by mass
    # black background (centring by mass may push a top-heavy digit to an edge, as in MNIST)
    assert (t == 0).mean() > 0.6
    assert t[:3].max() == 0 and t[:, :2].max() == 0 and t[:, -3:].max() == 0


def test_fashion_light_background_photo_inverted_in_resize_mode():
    arr = np.full((50, 50), 250, dtype=np.uint8)
    arr[10:40, 15:35] = 30  # a dark garment on white
    p = prepare_query(_encode(Image.fromarray(arr)), 1, 28, "fashion-mnist")
    assert p.inverted
    assert int(p.tensor[0, 0, 0]) < 10 and int(p.tensor[0, 14, 14]) > 200
    c = prepare_query(_encode(Image.fromarray(arr).convert("RGB")), 3, 32, "cifar10")
    assert not c.inverted


def test_real_mnist_digit_survives_preprocessing(data_dir):
    from cl.data import load_dataset

    test = load_dataset("mnist", "test", data_dir)
    corrs = []
    for i in range(20):
        original = test.images[i, 0].numpy()
        data = _encode(to_pil(test.images[i]))
        got = prepare_query(data, 1, 28, "mnist").tensor[0].numpy().astype(float)
        corrs.append(np.corrcoef(original.ravel().astype(float), got.ravel())[0, 1])
        # a photo-style version: dark ink on light paper, upscaled
        paper = Image.fromarray(255 - original).resize((112, 112), Image.Resampling.BILINEAR)
        got2 = prepare_query(_encode(paper, "JPEG", quality=90), 1, 28, "mnist")
        assert got2.inverted
        corrs.append(np.corrcoef(original.ravel().astype(float), got2.tensor[0].numpy().ravel().astype(float))[0, 1])
    assert np.median(corrs) > 0.8, corrs


def test_gallery_pngs_encode_each_image_once_and_decode_to_the_upscaled_image(monkeypatch):
    from ui import images as ui_images
    from ui import shared

    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(3, 3, 8, 8), dtype=np.uint8)
    encoded = []
    real = ui_images.png_bytes
    monkeypatch.setattr(shared, "PNGS", shared.BoundedCache("test", max_entries=2048))
    monkeypatch.setattr(ui_images, "png_bytes", lambda img, scale=1: encoded.append(1) or real(img, scale))
    first = ui_images.gallery_pngs(imgs, 2)
    again = ui_images.gallery_pngs(imgs.copy(), 2)
    assert len(encoded) == 3 and again == first
    ui_images.gallery_pngs(imgs, 3)  # another scale: encoded again
    assert len(encoded) == 6
    for png, img in zip(first, imgs, strict=True):
        back = np.asarray(Image.open(io.BytesIO(png)))
        expected = img.transpose(1, 2, 0).repeat(2, 0).repeat(2, 1)
        assert back.shape == (16, 16, 3) and (back == expected).all()


def test_augmented_grid_is_the_augmented_images_drawn_losslessly():
    """The Augmentations page's cached grid shows exactly the views augment_to_uint8 draws for that seed."""
    from cl.augmentations import augment_to_uint8, get_augmentation
    from ui import cache
    from ui import images as ui_images

    data = cache.load_data("digits", "train")
    idx = (3, 17, 400)
    png = cache.augmented_grid("digits", "train", "simclr", idx, 5, 2)
    views = augment_to_uint8(data.images[torch.tensor(idx)], get_augmentation("simclr"), torch.Generator().manual_seed(5))
    expected = ui_images.grid(views, ncol=3, scale=2)
    assert (np.asarray(Image.open(io.BytesIO(png))) == expected).all()
    other_seed = np.asarray(Image.open(io.BytesIO(cache.augmented_grid("digits", "train", "simclr", idx, 6, 2))))
    assert other_seed.shape == expected.shape and (other_seed != expected).any()
