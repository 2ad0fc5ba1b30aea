"""Turning arbitrary image files into a data set's format, safely.

Uploads and command-line image arguments can be anything: empty files, SVG, random bytes,
decompression bombs, CMYK, 16-bit, palette, EXIF-rotated photos, animated GIFs. We bound bytes
before decoding and pixels before loading the raster, then convert to the data set's channels
and size. Digit-style data sets (light strokes on black) get MNIST's own preprocessing: invert
when the background is light, crop to the ink, fit into 20x20 and centre by mass in 28x28.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageInputError

# PIL logs some refusals (e.g. a TIFF's absurd samples-per-pixel) before raising; without a
# handler Python prints them to stderr, which would add lines to our one-line error messages.
logging.getLogger("PIL").addHandler(logging.NullHandler())

MAX_BYTES = 20 * 1024 * 1024  # 20 MiB: more than any phone photo
MAX_PIXELS = 40_000_000  # 40 MP: larger headers are refused before the raster is decoded
MAX_SIDE = 12_000


@dataclass
class PreparedImage:
    """An image in a data set's format plus a record of what was done to it."""

    tensor: torch.Tensor  # uint8 (C, H, W)
    steps: list[str] = field(default_factory=list)
    inverted: bool = False
    original_size: tuple[int, int] = (0, 0)
    original_mode: str = ""


def decode_image_bytes(data: bytes, name: str = "image", max_bytes: int = MAX_BYTES,
                       max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes into a PIL image (first frame, EXIF orientation applied), or raise
    :class:`ImageInputError` with a specific reason."""
    if not data:
        raise ImageInputError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise ImageInputError(f"{name}: {len(data) / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit")
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml") or head.startswith(b"<svg") or b"<svg" in head:
        raise ImageInputError(f"{name}: SVG (vector) images are not supported; export a PNG or JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PIL's notes on corrupt metadata
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size  # header only: nothing decoded yet
            if width < 1 or height < 1:
                raise ImageInputError(f"{name}: the image has no pixels")
            if width * height > max_pixels or max(width, height) > MAX_SIDE:
                raise ImageInputError(
                    f"{name}: {width}x{height} pixels is too large (limit {max_pixels // 1_000_000} MP, "
                    f"{MAX_SIDE} px a side); this looks like a decompression bomb or a huge photo")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF/WebP/APNG: first frame
            img.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"{name}: the image is too large: it declares more pixels than the limit "
                              f"({max_pixels // 1_000_000} MP); this looks like a decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not an image file this app can read (PNG, JPEG, GIF, BMP, TIFF or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise ImageInputError(f"{name}: the image is truncated or corrupt ({err})") from None
    except Exception as err:  # noqa: BLE001 - PIL raises others on hostile files (TypeError, KeyError, ...)
        raise ImageInputError(f"{name}: the image is corrupt ({type(err).__name__}: {err})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not reject a good raster
        pass
    return img


def decode_image_file(path: str | Path, max_bytes: int = MAX_BYTES) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path}: no such file")
    if not path.is_file():
        raise ImageInputError(f"{path}: not a file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageInputError(f"{path}: {size / 2**20:.1f} MiB is over the {max_bytes / 2**20:.0f} MiB limit")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageInputError(f"{path}: cannot read ({err.strerror})") from None
    return decode_image_bytes(data, name=str(path), max_bytes=max_bytes)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL mode -> ``L``, ``RGB`` or ``RGBA``, scaling 16-bit and float rasters to 0..255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), "L")
    if img.mode == "P":
        return img.convert("RGBA")
    if img.mode in ("L", "RGB", "RGBA"):
        return img
    if img.mode == "LA":
        return img.convert("RGBA")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1, RGBX...


# What a mode change means, in words (the app shows these steps to visitors).
_MODE_STEP = {
    ("RGBA", "RGB"): "put the transparent parts on white",
    ("LA", "RGB"): "put the transparent parts on white",
    ("P", "RGB"): "turned the palette image into colours, transparent parts on white",
    ("CMYK", "RGB"): "turned the print colours (CMYK) into screen colours",
    ("1", "RGB"): "turned the black-and-white image into colours",
    ("I;16", "L"): "scaled the 16-bit grey levels to 0-255",
    ("I", "L"): "scaled the 32-bit grey levels to 0-255",
    ("F", "L"): "scaled the floating-point grey levels to 0-255",
}


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode != "RGBA":
        return img
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparent -> white paper
    return Image.alpha_composite(background, img).convert("RGB")


def fit_to_format(img: Image.Image, channels: int, size: int, mode: str = "resize",
                  invert: str | bool = "auto") -> torch.Tensor:
    """Convenience wrapper of :func:`prepare_image` returning only the tensor."""
    return prepare_image(img, channels, size, mode=mode, invert=invert).tensor


def prepare_image(img: Image.Image, channels: int, size: int, mode: str = "resize",
                  invert: str | bool = "auto") -> PreparedImage:
    """Convert a decoded image to ``uint8 (channels, size, size)``.

    ``mode="digit"`` applies MNIST-style preprocessing (for light-on-dark digit data sets);
    ``mode="resize"`` centre-crops to a square and resizes. ``invert`` is ``"auto"`` (invert
    when the border is brighter than the centre-weighted ink, i.e. dark-on-light), ``True`` or
    ``False``.
    """
    prepared = PreparedImage(torch.empty(0), original_size=img.size, original_mode=img.mode)
    steps = prepared.steps
    img8 = _flatten_alpha(_to_8bit(img))
    if img8.mode != img.mode:
        steps.append(_MODE_STEP.get((img.mode, img8.mode), f"converted the {img.mode} pixels to {img8.mode}"))
    if channels == 1:
        if img8.mode != "L":
            img8 = img8.convert("L")
            steps.append("converted to greyscale")
    elif img8.mode != "RGB":
        img8 = img8.convert("RGB")
        steps.append("turned the grey image into colour (3 equal channels)")

    arr = np.asarray(img8)
    if invert == "auto":
        if mode == "digit":
            border = np.concatenate([arr[0].ravel(), arr[-1].ravel(), arr[:, 0].ravel(), arr[:, -1].ravel()])
            do_invert = float(np.median(border)) > 127
        else:
            do_invert = False
    else:
        do_invert = bool(invert)
    if do_invert:
        arr = 255 - arr
        steps.append("inverted colours (dark strokes on light background -> light on dark)")
    prepared.inverted = do_invert

    if mode == "digit":
        out = _mnist_style(arr, size, steps)
        tensor = torch.from_numpy(out)[None]
    else:
        pil = Image.fromarray(arr)
        w, h = pil.size
        if w != h:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            pil = pil.crop((left, top, left + side, top + side))
            steps.append(f"centre-cropped {w}x{h} to {side}x{side}")
        if pil.size != (size, size):
            steps.append(f"resized {pil.size[0]}x{pil.size[1]} to {size}x{size}")
            pil = pil.resize((size, size), Image.Resampling.LANCZOS if max(pil.size) > size else Image.Resampling.BILINEAR)
        out = np.asarray(pil)
        tensor = torch.from_numpy(out.copy())
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    prepared.tensor = tensor.contiguous()
    return prepared


def _mnist_style(arr: np.ndarray, size: int, steps: list[str]) -> np.ndarray:
    """MNIST's recipe: crop to ink, fit the longer side to 20/28 of the canvas, centre by mass."""
    a = arr.astype(np.float32)
    # Remove a flat background level (photos of paper are grey, not black).
    a = np.clip(a - np.percentile(a, 50), 0, None)
    if a.max() <= 0:
        steps.append("blank image: nothing to centre")
        return np.zeros((size, size), dtype=np.uint8)
    a = a * (255.0 / a.max())
    ys, xs = np.nonzero(a > 0.2 * 255)
    if len(ys) == 0:
        ys, xs = np.nonzero(a > 0)
    crop = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    box = max(1, round(size * 20 / 28))
    h, w = crop.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    pil = Image.fromarray(crop.clip(0, 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS)
    small = np.asarray(pil, dtype=np.float32)
    canvas = np.zeros((size, size), dtype=np.float32)
    total = small.sum()
    if total > 0:
        cy = (small.sum(1) * np.arange(nh)).sum() / total
        cx = (small.sum(0) * np.arange(nw)).sum() / total
    else:
        cy, cx = nh / 2, nw / 2
    top = int(round(size / 2 - cy))
    left = int(round(size / 2 - cx))
    top = min(max(top, 0), size - nh)
    left = min(max(left, 0), size - nw)
    canvas[top:top + nh, left:left + nw] = small
    steps.append(f"cropped to the ink ({w}x{h}), fitted into {box}x{box}, centred by mass in {size}x{size}")
    return canvas.clip(0, 255).round().astype(np.uint8)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """uint8 ``(C, H, W)`` -> PIL image (for thumbnails)."""
    arr = tensor.detach().cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], "L")
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB")
