"""Shared helpers for the app tests (AppTest and browser); holds no tests itself."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.runtime.pages_manager import PagesManager

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"  # where the browser tests leave their screenshots
APP = ROOT / "app.py"

_LOCK = threading.Lock()
_CHECKPOINT_DIR: Path | None = None


def shared_data_dir() -> Path | None:
    """The shared real data when present (CI sets CL_DATA_DIR); the app also works without it."""
    for candidate in (os.environ.get("CL_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


def data_dir() -> str | None:
    """:func:`shared_data_dir` as the string an environment variable takes."""
    path = shared_data_dir()
    return None if path is None else str(path)


def shipped_dir() -> Path:
    """A folder standing in for checkpoints/: one digits model (paper recipe, fer, triplet, one
    epoch), trained once per test process in a few seconds."""
    global _CHECKPOINT_DIR
    with _LOCK:
        if _CHECKPOINT_DIR is None:
            from cl.training import TrainConfig
            from cl.workflow import make_model

            folder = Path(tempfile.mkdtemp(prefix="cl-app-shipped-"))
            config = TrainConfig(dataset="digits", recipe="paper", augmentation="fer", loss="triplet", epochs=1, seed=0)
            make_model(config, folder / "digits-fer-triplet.safetensors")
            _CHECKPOINT_DIR = folder
        return _CHECKPOINT_DIR


def digit_png(dark_on_light: bool = True, size: int = 96, mode: str = "L") -> bytes:
    """A drawn '1'-like stroke as PNG bytes (dark strokes on white by default)."""
    arr = np.zeros((size, size), dtype=np.uint8)
    arr[size // 6: size - size // 6, size // 2 - size // 14: size // 2 + size // 14] = 255
    if dark_on_light:
        arr = 255 - arr
    img = Image.fromarray(arr, "L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 50_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def hostile_files() -> list[tuple[str, bytes, str]]:
    """(name, bytes, mime) for uploads that must be refused with a message."""
    good = digit_png()
    return [
        ("empty.png", b"", "image/png"),
        ("random.png", np.random.default_rng(0).bytes(4096), "image/png"),
        ("truncated.png", good[: len(good) // 2], "image/png"),
        ("drawing.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                        b'<rect width="10" height="10"/></svg>', "image/svg+xml"),
        ("notes.jpg", b"this is a text file with an image name\n" * 20, "image/jpeg"),
        ("bomb.png", bomb_png(), "image/png"),
        ("script.gif", b"GIF89a<script>alert(1)</script>", "image/gif"),
    ]


def odd_valid_files() -> list[tuple[str, bytes, str]]:
    """(name, bytes, mime) for unusual but valid images that must give neighbours."""
    out = []
    base = Image.open(io.BytesIO(digit_png(size=64)))

    def save(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray((255 - np.asarray(base)).astype(np.uint8)))
    out.append(("rgba.png", save(rgba, "PNG"), "image/png"))
    out.append(("cmyk.jpg", save(base.convert("CMYK"), "JPEG"), "image/jpeg"))
    out.append(("deep16.png", save(Image.fromarray(np.asarray(base).astype(np.uint16) * 257), "PNG"), "image/png"))
    out.append(("palette.gif", save(base.convert("P"), "GIF"), "image/gif"))
    frames = [base, Image.fromarray(255 - np.asarray(base))]
    out.append(("animated.gif", save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
                "image/gif"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    out.append(("rotated.jpg", save(base.convert("RGB"), "JPEG", exif=exif), "image/jpeg"))
    out.append(("tiny.png", save(Image.new("L", (1, 1), 255), "PNG"), "image/png"))
    out.append(("light-on-dark.png", digit_png(dark_on_light=False), "image/png"))
    out.append(("photo.jpg", save(Image.fromarray(np.random.default_rng(1).integers(0, 255, (1200, 1600, 3),
                                                                                      dtype=np.uint8)), "JPEG",
                                  quality=70), "image/jpeg"))
    return out


def wait_for(predicate, timeout: float, interval: float = 0.5):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


class _ServerPagesManager(PagesManager):
    """AppTest resets Streamlit's "v1 pages/ folder" flag before every run, which a real server
    clears for good on the first ``st.navigation`` call; behave like that server."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False
