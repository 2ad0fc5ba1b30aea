"""The encoder as an ONNX model, to run without this code (ONNX Runtime, OpenCV's DNN, a browser).

:func:`export_onnx` writes ``NAME.onnx`` (opset 18 or later, PyTorch's ``torch.export``-based
exporter, weights inside the file) with one input ``images`` of shape ``(batch, C, H, W)`` float32
and one output ``embeddings`` of shape ``(batch, D)``; ``batch`` is a dynamic axis. How an image
becomes the input is stated in the model's own ``metadata_props`` and in ``export.json`` beside it:

    x = (pixel / 255 - mean) / std        mean = std = 0.5 per channel, so x = pixel * 2/255 - 1 in [-1, 1]

with pixels as ``uint8`` in ``[0, 255]``, channels first (1 grey channel, or RGB), the image resized
to ``H x W`` beforehand. ``metadata_props`` keys: ``preprocessing`` (the whole description as JSON),
``channels``, ``height``, ``width``, ``mean``, ``std``, ``layout``, ``colour``, ``output``,
``card`` (the checkpoint's card as JSON) and ``source``.

When ONNX Runtime is installed the export checks itself: the largest absolute difference between
ONNX Runtime's and PyTorch's embeddings of up to :data:`VERIFY_IMAGES` images (the first of the
model's test split) is recorded in ``export.json`` as ``verification``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .checkpoints import as_card, write_atomically
from .errors import ConfigError

INSTALL_HINT = "pip install onnx onnxscript (or the package's extra: pip install 'contrastive-explorer[onnx]')"
INPUT, OUTPUT = "images", "embeddings"
MEAN = STD = 0.5  # cl.data.to_float: uint8 -> [-1, 1]
VERIFY_IMAGES = 256
TOLERANCE = 1e-4  # what a verified export promises: |ONNX Runtime - PyTorch| at most this


def require_exporter() -> None:
    """Raise a one-line :class:`ConfigError` unless PyTorch's ONNX exporter can run here."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)}, not installed here: {INSTALL_HINT}")


def preprocessing(channels: int, height: int, width: int, dataset: str | None = None) -> dict:
    """What a consumer must do to an image before the model sees it (stored with the model)."""
    from .data import SPECS

    spec = SPECS.get(dataset or "")
    colour = "grayscale" if channels == 1 else "RGB" if channels == 3 else f"{channels} channels"
    out = {
        "input": INPUT, "layout": "NCHW", "dtype": "float32", "channels": channels, "colour": colour,
        "height": height, "width": width, "pixel_range": [0, 255],
        "mean": [MEAN] * channels, "std": [STD] * channels,
        "formula": "x = (pixel / 255 - mean) / std = pixel * 2/255 - 1, in [-1, 1]",
        "resize": f"to {height}x{width} before normalising (the model takes no other size)",
        "trained_on": dataset,
    }
    if spec is not None and spec.channels == 1:
        out["background"] = ("light strokes on a dark background, as in the training images: invert dark-on-light "
                             "pictures first" if spec.dark_background else "as in the training images")
    return out


def output_description(encoder: str | None, dim: int) -> dict:
    kind = {"convnet": "L2-normalised (unit length): compare with the dot product (cosine similarity)",
            "paper": "the study's sigmoid outputs in (0, 1): compare with cosine similarity"}
    return {"output": OUTPUT, "dim": dim, "values": kind.get(encoder or "", "compare with cosine similarity")}


def _check_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {out}: {err.strerror or err}") from None
    try:  # a real write: permission bits say nothing for root, nor for a read-only file system
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"cannot write to {out}: {err.strerror or err}") from None


def _to_onnx(model, channels: int, size: int):
    """PyTorch's exporter (``torch.export``-based; the TorchScript one is deprecated) -> ModelProto."""
    import copy

    import torch

    # a copy: Module.to works in place, and the caller's model stays as it was (device, layout)
    model = copy.deepcopy(model).float().to("cpu", memory_format=torch.contiguous_format).eval()
    sample = torch.zeros(2, channels, size, size)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals mean nothing to a user
        program = torch.onnx.export(model, (sample,), dynamo=True, verbose=False, optimize=True,
                                    input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({0: batch},))
    if program is None:  # only the legacy TorchScript exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    return program.model_proto


def export_onnx(model, card: dict, out: str | os.PathLike, name: str, verify_images=None,
                no_images_why: str = "no images given") -> dict:
    """Write ``model`` as ``out/NAME.onnx`` with its preprocessing in its metadata, and ``export.json``.

    ``verify_images``: uint8 ``(N, C, H, W)`` images to compare ONNX Runtime with PyTorch on
    (the first :data:`VERIFY_IMAGES`), or None (``no_images_why`` says why in ``export.json``). Files are written
    whole or not at all (a temporary file, then a rename). Returns what ``export.json`` holds, plus ``out``."""
    import onnx

    require_exporter()
    out = Path(out)
    _check_folder(out)
    typed = as_card(card)
    channels, size = int(model.in_channels), int(model.image_size)
    dataset = typed.data.dataset
    pre = preprocessing(channels, size, size, dataset)
    post = output_description(typed.encoder_spec.name, int(model.embedding_dim))
    t0 = time.perf_counter()
    proto = _to_onnx(model, channels, size)
    seconds = time.perf_counter() - t0
    props = {"preprocessing": json.dumps(pre), "channels": str(channels), "height": str(size), "width": str(size),
             "mean": json.dumps(pre["mean"]), "std": json.dumps(pre["std"]), "layout": "NCHW",
             "colour": pre["colour"], "output": json.dumps(post), "card": json.dumps(card, default=str),
             "source": "contrastive-explorer (python -m cl export --format onnx)"}
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"{name}: image encoder, input {INPUT} (batch, {channels}, {size}, {size}) float32 = "
                        f"pixel * 2/255 - 1; output {OUTPUT} (batch, {post['dim']})")
    onnx.checker.check_model(proto)
    target = out / f"{name}.onnx"
    try:
        write_atomically(target, proto.SerializeToString())
    except OSError as err:
        raise ConfigError(f"cannot write {target}: {err.strerror or err}") from None
    verification = verify(target, model, verify_images) if verify_images is not None else {"skipped": no_images_why}
    summary = {
        "format": "onnx", "checkpoint": name, "files": {target.name: "the encoder (ONNX, weights inside)"},
        "opset": max(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "input": {"name": INPUT, "shape": ["batch", channels, size, size], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", post["dim"]], "dtype": "float32"},
        "preprocessing": pre, "embedding": post, "verification": verification, "export_seconds": round(seconds, 2),
        "card": card, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        write_atomically(out / "export.json", json.dumps(summary, indent=2, sort_keys=True, default=str).encode())
    except OSError as err:
        raise ConfigError(f"cannot write {out / 'export.json'}: {err.strerror or err}") from None
    return {**summary, "out": str(out), "files": sorted([target.name, "export.json"])}


def verify(onnx_path: str | os.PathLike, model, images) -> dict:
    """ONNX Runtime against PyTorch on the first :data:`VERIFY_IMAGES` of ``images``:
    ``{"n_images", "max_abs_diff", "tolerance", "passed"}``, or ``{"skipped": why}``."""
    if importlib.util.find_spec("onnxruntime") is None:
        return {"skipped": "onnxruntime is not installed"}
    import onnxruntime as ort

    from .data import to_float
    from .evaluation import embed

    images = images[:VERIFY_IMAGES]
    if len(images) == 0:
        return {"skipped": "no images to compare on"}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: to_float(images).numpy()})[0]
    want = embed(model, images)
    diff = float(np.max(np.abs(got - want)))
    return {"n_images": int(len(images)), "max_abs_diff": diff, "tolerance": TOLERANCE, "passed": diff <= TOLERANCE}


def onnx_zip(checkpoint: str | os.PathLike, work_dir: str | os.PathLike) -> bytes:
    """A checkpoint as ``NAME.onnx`` and ``export.json`` in one zip (the app's download button),
    checked against PyTorch on its test gallery where one is here. Staged under ``work_dir``."""
    import shutil

    from .checkpoints import load_checkpoint
    from .export import zip_folder
    from .workflow import data_for_card

    model, card = load_checkpoint(checkpoint)
    name = as_card(card).name or Path(checkpoint).stem
    try:
        images = data_for_card(card, download=False, source=name)[1].images
    except Exception:  # noqa: BLE001 - no test images here: export unverified rather than not at all
        images = None
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".onnx.", dir=work_dir)
    try:
        export_onnx(model, card, tmp, name, verify_images=images)
        return zip_folder(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
