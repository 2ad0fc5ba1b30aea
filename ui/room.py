"""The live room's Streamlit side: the shared store, a room's model and map, turning a phone's
image into a stored submission, the QR code and the presenter's live map.

The store (:mod:`ui.room_store`) is shared by every replica; everything here is per process:
the model, its test gallery and the fitted map of the room (loaded once per process for every
room that uses that model), so a phone's replica embeds, places and classifies its image once,
at submit time, and the presenter's replica only reads the stored rows.
"""

from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import streamlit as st

from cl.errors import UserError

from . import cache
from . import room_store as rs

if TYPE_CHECKING:  # torch and the library's heavy modules load when a room is used
    import torch

    from cl.data import ImageSet
    from cl.placement import Placer
    from cl.retrieval import NeighborIndex

NEIGHBOURS = 10  # the model's reading of an image: the majority class of its 10 nearest images on the map


@st.cache_resource(show_spinner=False)
def store() -> rs.RoomStore:
    """The server's room store: ``$CL_ROOM_STORE`` (Redis), else SQLite in the app's cache folder."""
    from cl.archive import cache_dir

    return rs.store_from_env(cache_dir())


@dataclass
class RoomModel:
    """What a room's submissions are measured against: the model and the map of its test gallery
    (the model's shipped t-SNE, else the same t-SNE computed here) fitted for placing. Neighbours
    and the model's reading are searched among the map's own images: what a phone is shown as
    its nearest images are points on the presenter's map, and a replica that serves its first
    phone of a room embeds 2,000 images, not a whole 10,000-image test split."""

    net: torch.nn.Module
    test: ImageSet  # the test split the map's images come from
    images: torch.Tensor  # (len(rows), C, H, W) uint8: the map's images
    index: NeighborIndex  # over the map's images
    rows: np.ndarray  # which test images the map's points are
    coords: np.ndarray  # (len(rows), 2) the map
    placer: Placer
    source: str  # "shipped" or "computed"

    @property
    def classes(self) -> list[str]:
        return list(self.test.classes)

    def describe(self) -> str:
        return f"the {len(self.rows):,} {self.test.name} test images on the map"


@st.cache_resource(max_entries=4, show_spinner=False)
def room_model(path: str, cid: str, dataset: str) -> RoomModel:
    import torch

    from cl.evaluation import embed
    from cl.placement import fit_placer
    from cl.projection import ProjectionParams
    from cl.retrieval import NeighborIndex

    test = cache.load_data(dataset, "test")
    net, _card = cache.model(path, cid)
    shipped = cache.shipped_layouts(path, dataset, len(test))
    params = ProjectionParams("tsne", n=min(len(test), 2000))
    if shipped is not None and "tsne" in shipped:
        rows, coords, source = np.asarray(shipped["rows"]), np.asarray(shipped["tsne"]), "shipped"
    else:
        rows, coords = cache.projection(path, cid, dataset, params)
        source = "computed"
    rows = np.asarray(rows)
    images = test.images[torch.from_numpy(rows.astype(np.int64))]
    emb = embed(net, images)
    placer = fit_placer(emb, coords, params)
    return RoomModel(net, test, images, NeighborIndex(emb, test.labels.numpy()[rows]), rows,
                     np.asarray(coords, dtype=np.float32), placer, source)


def model_for(room: rs.Room) -> RoomModel:
    return room_model(room.model_path, room.model_cid, room.dataset)


@dataclass
class Result:
    submission: rs.Submission
    neighbours: list  # cl.retrieval.Neighbor
    preview: bytes  # what the model saw, enlarged, as PNG


def read_image(model: RoomModel, data: bytes, name: str, dataset: str):
    """Image bytes -> the model-sized uint8 tensor, or :class:`UserError` with one line for the
    person (not an image, over the size limit, a decompression bomb, a blank drawing)."""
    from cl.images import MAX_BYTES
    from cl.retrieval import is_blank, prepare_query

    if not data:
        raise UserError("nothing was sent: draw, take a photo or choose a file first")
    if len(data) > MAX_BYTES:
        raise UserError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_BYTES // 2**20} MB limit for an image")
    try:
        prepared = prepare_query(data, model.test.channels, model.test.size, dataset, invert="auto")
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a hostile file must never surface as a traceback
        raise UserError(f"{name} could not be read as an image") from None
    if is_blank(prepared.tensor):
        raise UserError("the picture is blank as the model sees it: draw bigger, with thicker strokes, "
                        "or take the photo closer")
    return prepared.tensor


def submit_image(room: rs.Room, session: str, data: bytes, name: str = "image", meant: int | None = None,
                 room_store: rs.RoomStore | None = None) -> Result:
    """Read, embed, place and classify one image and store it in ``room`` (raises
    :class:`UserError` or :class:`ui.room_store.RoomError`; nothing is stored then)."""
    from cl.retrieval import embed_one

    from .images import png_bytes

    t0 = time.perf_counter()
    room_store = room_store or store()
    fresh = room_store.room(room.code)  # closed or paused since the page was drawn?
    if fresh is None or fresh.closed:
        raise rs.RoomGone(f"room {room.code} has closed")
    if fresh.paused:
        raise rs.RoomError("the presenter has paused the room: wait until it goes on")
    model = model_for(room)
    tensor = read_image(model, data, name, room.dataset)
    z = embed_one(model.net, tensor)
    xy = model.placer.place(z[None])[0]
    hits = model.index.query(z, k=NEIGHBOURS)
    votes = np.bincount([h.label for h in hits], minlength=len(model.classes))
    # a tie goes to the class of the nearest neighbour among the tied ones
    best = [h.label for h in hits if votes[h.label] == votes.max()][0]
    image = tensor.numpy()
    sub = room_store.submit(room.code, session, png_bytes(image), float(xy[0]), float(xy[1]), int(best), meant,
                            extra={"seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid()})
    return Result(sub, hits, png_bytes(image, scale=4))


# ------------------------------------------------------------------------------------ the link
def public_base_url() -> str:
    """The address phones open: ``$CL_PUBLIC_URL``, else the one this browser used."""
    env = os.environ.get("CL_PUBLIC_URL", "").strip().rstrip("/")
    if env:
        return env
    try:
        url = st.context.url or ""
    except Exception:  # noqa: BLE001 - no browser request (a bare run)
        url = ""
    parts = urlsplit(url)
    if not parts.scheme:
        return "http://localhost:8501"
    path = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return f"{parts.scheme}://{parts.netloc}{path}".rstrip("/")


def join_url(code: str, base: str | None = None) -> str:
    return f"{base or public_base_url()}/join?room={code}"


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def qr_png(url: str, scale: int = 12) -> bytes:
    import segno

    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ the live map
_MAP_JS = Path(__file__).with_name("room_map.js")


@st.cache_resource(show_spinner=False)
def _map_component():
    return st.components.v2.component("contrastive_explorer_room_map", html='<canvas class="room-map"></canvas>',
                                      css=".room-map{width:100%;display:block;background:#fff;border-radius:6px}",
                                      js=_MAP_JS.read_text())


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def background(model: RoomModel) -> dict:
    """The map's grey test-gallery points (coordinates rounded to the map's 1/500)."""
    xy = model.coords
    lo, hi = xy.min(0), xy.max(0)
    step = float(max(hi - lo)) / 500 or 1.0
    q = np.round((xy - lo) / step).astype(int)
    return {"x": q[:, 0].tolist(), "y": q[:, 1].tolist(), "lo": [float(lo[0]), float(lo[1])], "step": step,
            "span": [float(hi[0] - lo[0]), float(hi[1] - lo[1])]}


@st.cache_resource(max_entries=4, show_spinner=False)
def _map_picture(path: str, cid: str, dataset: str, side: int):
    """The room's map as a picture, grey dots on white, and the function from map coordinates to
    its pixels: drawn once per model, so a phone's result costs one marker and one PNG."""
    from PIL import Image, ImageDraw

    coords = room_model(path, cid, dataset).coords
    lo, hi = coords.min(0), coords.max(0)
    pad = side * 0.04
    scale = (side - 2 * pad) / float(max(hi - lo) or 1.0)
    height = int(round(float(hi[1] - lo[1]) * scale + 2 * pad))

    def to_px(x: float, y: float) -> tuple[float, float]:
        return pad + (x - lo[0]) * scale, height - (pad + (y - lo[1]) * scale)

    img = Image.new("RGB", (side, height), "white")
    draw = ImageDraw.Draw(img)
    for x, y in coords:
        px, py = to_px(float(x), float(y))
        draw.ellipse((px - 1.6, py - 1.6, px + 1.6, py + 1.6), fill=(190, 190, 190))
    return img, to_px


def landed_png(room: rs.Room, x: float, y: float, side: int = 600) -> bytes:
    """The room's map with a red marker where a submission landed, as PNG."""
    from PIL import ImageDraw

    base, to_px = _map_picture(room.model_path, room.model_cid, room.dataset, side)
    img = base.copy()
    px, py = to_px(x, y)
    r = side / 40
    ImageDraw.Draw(img).polygon([(px, py - r), (px + r, py), (px, py + r), (px - r, py)], fill=(224, 49, 43),
                                outline=(120, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def map_payload(room_code: str, model: RoomModel | None, start_id: int, rows: list[rs.Submission],
                hidden: set[int], classes: list[str], height: int = 640) -> dict:
    """What one refresh sends to the presenter's map: the rows after ``start_id`` (each a ~1-3 kB
    thumbnail), the hidden ids, and the grey background only with ``model`` (the first time)."""
    payload = {"room": room_code, "from": int(start_id), "hidden": sorted(hidden), "height": height,
               "rows": [{"id": r.id, "x": round(r.x, 3), "y": round(r.y, 3), "png": data_url(r.png),
                         "label": classes[r.predicted] if 0 <= r.predicted < len(classes) else "?"} for r in rows]}
    if model is not None:
        payload["bg"] = background(model)
    return payload


def live_map(room_code: str, model: RoomModel | None, start_id: int, rows: list[rs.Submission], hidden: set[int],
             classes: list[str], key: str, height: int = 640, on_resync=None):
    """The presenter's map, drawn in the browser (ui/room_map.js) from :func:`map_payload`; the
    browser keeps what earlier refreshes brought. When it lacks them (a remount), it asks for
    everything again: ``on_resync``."""
    return _map_component()(data=map_payload(room_code, model, start_id, rows, hidden, classes, height), key=key,
                            on_resync_change=on_resync or (lambda: None))
