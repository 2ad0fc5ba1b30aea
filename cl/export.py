"""Embeddings out: the TensorBoard Embedding Projector's files, ``.npz`` or ``.csv``.

Every export writes ``export.json`` beside the data: the checkpoint's card, the provenance of the
images embedded (set, split, count, completeness) and what each file holds, so an exported table
never loses where it came from.

- ``projector``: ``tensors.tsv`` (one embedding per row, tab-separated, no header),
  ``metadata.tsv`` (header row ``index  label  class  origin``, then one row per embedding),
  ``sprite.png`` (every image in row-major order on a square grid) and
  ``projector_config.pbtxt`` (the ``ProjectorConfig`` TensorBoard's projector plugin reads from a
  log folder). ``projector_config.json`` describes the same files in the JSON the standalone
  projector (projector.tensorflow.org) loads.
- ``npz``: arrays ``embeddings`` (float32, N x D), ``labels`` (int64), ``indices`` (int64,
  the image's index in its split), ``origins`` (str: where each image came from, its path in
  the folder or archive or ``<set>/<split>/<index>``) and ``classes`` (str); no pickled objects.
  :mod:`cl.own_embeddings` reads this file back.
- ``csv``: header ``index,label,class,origin,e0,...,e{D-1}``, then one row per image.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import ConfigError

FORMATS = ("projector", "npz", "csv")
SPRITE_MAX_SIDE = 8192  # the projector refuses larger sprites


def _tsv_cell(text: str) -> str:
    """Tabs and line breaks would shift the projector's columns and rows."""
    return " ".join(str(text).split()) or "-"


def sprite(images: np.ndarray) -> tuple[np.ndarray, int]:
    """Tile uint8 ``(N, C, H, W)`` images on a ``ceil(sqrt(N))`` square grid (row-major, black
    padding) as TensorBoard expects; ``(sprite HxW[x3], single image side)``. Thumbnails are
    shrunk (bilinear, antialiased) when the grid would pass :data:`SPRITE_MAX_SIDE`."""
    import torch
    from torchvision.utils import make_grid

    n, c, h, w = images.shape
    grid = max(1, math.ceil(math.sqrt(n)))
    side = min(h, SPRITE_MAX_SIDE // grid)
    if side < 1:
        raise ConfigError(f"{n:,} images are too many for one projector sprite")
    tiles = torch.from_numpy(np.ascontiguousarray(images))
    if side != h:
        tiles = torch.nn.functional.interpolate(tiles.float(), size=(side, side), mode="bilinear", antialias=True)
        tiles = tiles.round_().clamp_(0, 255).to(torch.uint8)
    # black tiles fill the last row, so that the sprite is the square the projector expects
    tiles = torch.cat([tiles, torch.zeros((grid * grid - n, c, side, side), dtype=torch.uint8)])
    out = make_grid(tiles, nrow=grid, padding=0).permute(1, 2, 0).numpy()  # grey comes back as 3 equal channels
    return (np.ascontiguousarray(out[..., 0]) if c == 1 else out), side


def export_embeddings(embeddings: np.ndarray, image_set, fmt: str, out: str | os.PathLike, card: dict | None = None,
                      checkpoint: str | None = None, indices: np.ndarray | None = None,
                      provenance: dict | None = None) -> dict:
    """Write ``embeddings`` of ``image_set`` (rows in the set's order) in ``fmt`` into folder
    ``out``; return what was written (also saved as ``export.json``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    labels = image_set.labels.numpy().astype(np.int64)
    idx = np.arange(len(labels), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    origins = [str(o) for o in (image_set.origins or [f"#{int(i)}" for i in idx])]
    if emb.ndim != 2 or len(emb) != len(labels) or len(idx) != len(labels):
        raise ConfigError(f"{len(emb)} embeddings for {len(labels)} images: they must match one to one")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {out}: {err.strerror or err}") from None
    classes = [str(c) for c in image_set.classes]
    name = Path(checkpoint).stem if checkpoint else (card or {}).get("name", "embeddings")
    files: dict[str, str] = {}
    try:
        if fmt == "projector":
            files.update(_write_projector(out, emb, labels, idx, classes, origins, image_set, name))
        elif fmt == "npz":
            np.savez(out / "embeddings.npz", embeddings=emb, labels=labels, indices=idx,
                     origins=np.array(origins, dtype=str), classes=np.array(classes, dtype=str))
            files["embeddings.npz"] = ("arrays embeddings (N x D float32), labels, indices (int64), origins "
                                       "(where each image came from), classes")
        else:
            with open(out / "embeddings.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["index", "label", "class", "origin"] + [f"e{j}" for j in range(emb.shape[1])])
                for i in range(len(emb)):
                    w.writerow([int(idx[i]), int(labels[i]), classes[labels[i]], origins[i]]
                               + [f"{v:.7g}" for v in emb[i]])
            files["embeddings.csv"] = "index, label, class, origin (where the image came from), then the embedding"
        summary = {
            "format": fmt,
            "checkpoint": name,
            "n_images": int(len(emb)),
            "dim": int(emb.shape[1]),
            "classes": classes,
            "data": provenance if provenance is not None else image_set.provenance(),
            "files": files,
            "card": card,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=_plain))
    except OSError as err:
        raise ConfigError(f"cannot write to {out}: {err.strerror or err}") from None
    return {**summary, "out": str(out), "files": sorted([*files, "export.json"])}


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _write_projector(out: Path, emb, labels, idx, classes, origins, image_set, name) -> dict[str, str]:
    from PIL import Image

    np.savetxt(out / "tensors.tsv", emb, fmt="%.7g", delimiter="\t", encoding="utf-8")  # no header: the projector's format
    with open(out / "metadata.tsv", "w", encoding="utf-8") as fh:
        # With more than one column the projector takes the first row as the header.
        fh.write("index\tlabel\tclass\torigin\n")
        for i in range(len(labels)):
            fh.write(f"{int(idx[i])}\t{int(labels[i])}\t{_tsv_cell(classes[labels[i]])}\t{_tsv_cell(origins[i])}\n")
    grid, side = sprite(image_set.images.numpy())
    Image.fromarray(grid).save(out / "sprite.png")
    tensor = _tsv_cell(name).replace('"', "'")
    (out / "projector_config.pbtxt").write_text(
        "embeddings {\n"
        f'  tensor_name: "{tensor}"\n'
        '  tensor_path: "tensors.tsv"\n'
        '  metadata_path: "metadata.tsv"\n'
        "  sprite {\n"
        '    image_path: "sprite.png"\n'
        f"    single_image_dim: {side}\n"
        f"    single_image_dim: {side}\n"
        "  }\n"
        "}\n")
    (out / "projector_config.json").write_text(json.dumps({"embeddings": [{
        "tensorName": tensor, "tensorShape": [int(emb.shape[0]), int(emb.shape[1])],
        "tensorPath": "tensors.tsv", "metadataPath": "metadata.tsv",
        "sprite": {"imagePath": "sprite.png", "singleImageDim": [side, side]}}]}, indent=2))
    return {"tensors.tsv": "one embedding per row, tab-separated",
            "metadata.tsv": "header index, label, class, origin; one row per embedding",
            "sprite.png": f"{len(labels)} images of {side}x{side} on a square grid, row-major",
            "projector_config.pbtxt": "TensorBoard projector plugin configuration",
            "projector_config.json": "the standalone projector's configuration"}


def zip_folder(folder: str | os.PathLike) -> bytes:
    """The files of an export folder as one zip (for a download button)."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                zf.write(path, path.name)
    return buf.getvalue()
