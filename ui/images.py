"""Thumbnails: PNG files served by URL (or data URLs) for Vega tooltips and image marks,
upscaled arrays and grids for ``st.image``.

Scatter tooltips name each image by URL instead of inlining it: the chart spec carries ~40 bytes
per point instead of ~500, and the browser fetches only the images it shows and caches them.
Streamlit serves ``./static/`` next to ``app.py`` at ``app/static/`` when
``server.enableStaticServing`` is on, and only that folder (it resolves links and refuses any
path outside it), so a set of thumbnails is written to ``static/thumbs/<key>/<i>.png``, ``key``
being a digest of the images and the scale: the same images give the same URLs, in every
session, replica and restart. The folder is bounded (:data:`MAX_BYTES`, least recently used sets
removed first). Without static serving, or where that folder cannot be written, the same
functions return data URLs.

This module imports PyTorch only inside the functions that take tensors, so a cold server can
draw a shipped scatter before torch is imported.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import shared

if TYPE_CHECKING:
    import torch

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
THUMBS_DIR = STATIC_DIR / "thumbs"
THUMBS_URL = "app/static/thumbs"  # relative to the page, so a server under a base path works too
MAX_BYTES = int(float(os.environ.get("CL_THUMBS_MAX_MB", "256")) * 2**20)
_LOCK = threading.Lock()


def _hwc(img: np.ndarray) -> np.ndarray:
    """uint8 ``(C, H, W)`` -> ``(H, W)`` or ``(H, W, 3)``."""
    return img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))


def png_bytes(img: np.ndarray, scale: int = 1) -> bytes:
    """One uint8 ``(C, H, W)`` image as PNG bytes, nearest-neighbour upscaled by ``scale``."""
    pil = Image.fromarray(_hwc(np.asarray(img)))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _memo_png(key: bytes, encode) -> bytes:
    """The PNG ``encode()`` makes, kept for every session (:data:`ui.shared.PNGS`) under a digest
    of ``key`` (the pixels and their shape)."""
    digest = hashlib.blake2b(key, digest_size=16).hexdigest()
    png = shared.PNGS.get(digest)
    if png is None:
        png = encode()
        shared.PNGS.put(digest, png)
    return png


def gallery_pngs(images: np.ndarray, scale: int = 1) -> list[bytes]:
    """uint8 ``(N, C, H, W)`` images as PNG bytes (:func:`png_bytes`), each encoded once for every
    session: the same gallery (a confusion cell, the images that moved most) is shown to every
    visitor, and PNG encoding was its main cost."""
    return [_memo_png(img.tobytes() + repr((img.shape, scale)).encode(), lambda img=img: png_bytes(img, scale))
            for img in np.asarray(images)]


def static_serving() -> bool:
    """Whether this Streamlit server serves ``./static/`` (``server.enableStaticServing``)."""
    try:
        from streamlit import config

        return bool(config.get_option("server.enableStaticServing"))
    except Exception:  # noqa: BLE001 - outside a Streamlit server: inline images
        return False


def thumbnail_key(images: np.ndarray, scale: int) -> str:
    h = hashlib.sha256(f"{images.shape}|{images.dtype}|{scale}|".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:24]


def thumbnail_urls(images, scale: int = 2, inline: bool | None = None) -> list[str]:
    """URLs of PNG thumbnails of uint8 ``(N, C, H, W)`` images (an array or a tensor), in order.

    ``static/thumbs/<key>/<i>.png`` files served at ``app/static/thumbs/<key>/<i>.png``, made
    once per set of images; data URLs when ``inline`` (default: when static serving is off) or
    when the folder cannot be written."""
    arr = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    if inline is None:
        inline = not static_serving()
    if not inline:
        try:
            key = write_thumbnails(arr, scale)
            return [f"{THUMBS_URL}/{key}/{i}.png" for i in range(len(arr))]
        except OSError:
            pass  # a read-only install: inline them as before
    return ["data:image/png;base64," + base64.b64encode(png_bytes(img, scale)).decode("ascii") for img in arr]


def write_thumbnails(images: np.ndarray, scale: int) -> str:
    """Write the PNG files of a set of images (once; atomically, by renaming a finished folder)
    and return its key. Marks the set as just used and keeps the folder under :data:`MAX_BYTES`."""
    key = thumbnail_key(images, scale)
    folder = THUMBS_DIR / key
    if folder.is_dir():
        _touch(folder)
        return key
    THUMBS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = THUMBS_DIR / f".tmp-{key}-{os.getpid()}-{threading.get_native_id()}"
    tmp.mkdir()
    try:
        for i, img in enumerate(images):
            (tmp / f"{i}.png").write_bytes(png_bytes(img, scale))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():  # not a rename lost to another process that wrote the same set
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with _LOCK:
        prune(keep=key)
    return key


def thumbnails_present(urls: list) -> bool:
    """Whether the files behind a list of :func:`thumbnail_urls` are still there (a set can be
    pruned while a cached list still names it); marks the set as used."""
    first = next((u for u in urls if u), None)
    if not first or not first.startswith(THUMBS_URL + "/"):
        return True
    folder = THUMBS_DIR / first[len(THUMBS_URL) + 1:].split("/", 1)[0]
    if not folder.is_dir():
        return False
    _touch(folder)
    return True


def _touch(folder: Path) -> None:
    try:
        if time.time() - folder.stat().st_mtime > 60:
            os.utime(folder)
    except OSError:
        pass


def _disk_bytes(folder: Path) -> int:
    total = 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    total += entry.stat().st_blocks * 512
                except (OSError, AttributeError):
                    total += 4096
    except OSError:  # removed meanwhile by another process
        pass
    return total


def prune(keep: str | None = None, max_bytes: int | None = None) -> list[str]:
    """Remove the least recently used thumbnail sets until the folder holds at most
    ``max_bytes`` on disk (never ``keep``); returns the keys removed."""
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        sets = [(p.stat().st_mtime, p) for p in THUMBS_DIR.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    sizes = {p: _disk_bytes(p) for _m, p in sets}
    total = sum(sizes.values())
    removed = []
    for _mtime, p in sorted(sets):
        if total <= limit:
            break
        if p.name == keep:
            continue
        shutil.rmtree(p, ignore_errors=True)
        total -= sizes[p]
        removed.append(p.name)
    return removed


def to_array(image: torch.Tensor, scale: int = 1) -> np.ndarray:
    """uint8 ``(C, H, W)`` -> ``(H*scale, W*scale[, 3])`` uint8, nearest-neighbour upscaled."""
    arr = image.detach().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))
    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    return arr


POINT_SIDE = 24  # px: images drawn as points are 10-28 px on the map


def point_images(images) -> list[str]:
    """Small inline images for drawing every point as its image (a Vega image mark per point):
    lossy WebP data URLs (quality 55) of uint8 ``(N, C, H, W)`` images, at most
    :data:`POINT_SIDE` px a side: ~0.25 KB of text each for an MNIST digit, ~0.3 KB for a CIFAR-10 image.

    Inline, not by URL, because one request per point costs the Python server ~6 ms of CPU
    each (measured: 2,000 thumbnail requests took 12.9 CPU s), while these add ~0.6 MB to one
    message. Kept for the last sets shown (:data:`ui.shared.POINT_IMAGES`)."""
    arr = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    key = thumbnail_key(arr, 0)
    hit = shared.POINT_IMAGES.get(key)
    if hit is not None:
        return hit
    out = []
    for img in arr:
        pil = Image.fromarray(_hwc(img))
        if max(pil.size) > POINT_SIDE:
            pil.thumbnail((POINT_SIDE, POINT_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        pil.save(buf, format="WEBP", quality=55, method=4)
        out.append("data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    shared.POINT_IMAGES.put(key, out)
    return out


def data_url(image, scale: int = 2) -> str:
    """A PNG data URL (small: a 28x28 digit is about 400 bytes)."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return "data:image/png;base64," + base64.b64encode(png_bytes(arr, scale)).decode("ascii")


def data_urls(images, scale: int = 2) -> list[str]:
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
    import torch

    return to_array(torch.from_numpy(canvas), scale)


def grid_png(images: torch.Tensor, ncol: int, scale: int = 2) -> bytes:
    """:func:`grid` as PNG bytes (lossless: Streamlit would send an array as a JPEG, which blurs
    the pixels of a digit), each distinct grid encoded once for every session."""
    arr = grid(images, ncol, scale)

    def encode() -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
        return buf.getvalue()

    return _memo_png(arr.tobytes() + repr(arr.shape).encode(), encode)


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
