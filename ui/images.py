"""Thumbnails: data URLs for Vega tooltips, upscaled arrays and grids for ``st.image``."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from cl.images import to_pil


def to_array(image: torch.Tensor, scale: int = 1) -> np.ndarray:
    """uint8 ``(C, H, W)`` -> ``(H*scale, W*scale[, 3])`` uint8, nearest-neighbour upscaled."""
    arr = image.detach().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))
    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    return arr


def data_url(image: torch.Tensor, scale: int = 2) -> str:
    """A PNG data URL (small: a 28x28 digit is about 400 bytes)."""
    pil = to_pil(image)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def data_urls(images: torch.Tensor, scale: int = 2) -> list[str]:
    return [data_url(img, scale) for img in images]


def grid(images: torch.Tensor, ncol: int, scale: int = 2, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """Tile uint8 ``(N, C, H, W)`` into one ``(rows*H, ncol*W[, 3])`` array with grey gutters."""
    n, c, h, w = images.shape
    ncol = max(1, min(ncol, n))
    nrow = max(1, -(-n // ncol))
    canvas = np.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=np.uint8)
    arr = images.detach().cpu().numpy()
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, y:y + h, x:x + w] = arr[i]
    return to_array(torch.from_numpy(canvas), scale)


def bytes_preview(data: bytes, max_side: int = 256) -> np.ndarray | None:
    """A small RGB preview of an already validated upload (``None`` if it cannot be shown)."""
    from cl.images import decode_image_bytes

    try:
        pil = decode_image_bytes(data, name="upload")
        pil = pil.convert("RGBA") if pil.mode in ("P", "LA") else pil
        if pil.mode == "RGBA":
            bg = Image.new("RGBA", pil.size, (255, 255, 255, 255))
            pil = Image.alpha_composite(bg, pil)
        pil = pil.convert("RGB")
        pil.thumbnail((max_side, max_side))
        return np.asarray(pil)
    except Exception:  # noqa: BLE001 - a preview is optional
        return None


def canvas_png(image_data: np.ndarray | None) -> bytes | None:
    """A drawing canvas's RGBA pixels as PNG bytes, or ``None`` when nothing is drawn.

    The canvas returns its strokes on a transparent layer; :mod:`cl.images` flattens
    transparency onto white paper, so a dark stroke becomes a dark-on-light drawing, exactly like
    a scanned sketch, and the same preparation (inverting for digit sets) applies."""
    if image_data is None:
        return None
    arr = np.asarray(image_data)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        return None
    arr = arr.astype(np.uint8, copy=False)
    if arr.shape[2] == 4:
        ink = arr[..., 3] > 0
        if arr[..., 3].min() == 255:  # an opaque background colour: ink is whatever is not paper
            ink = (arr[..., :3] != arr[0, 0, :3]).any(-1)
    else:
        ink = (arr != arr[0, 0]).any(-1)
    if not ink.any():
        return None
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB").save(buf, format="PNG")
    return buf.getvalue()
