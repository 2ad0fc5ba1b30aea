"""Nearest-neighbour retrieval over a gallery of embeddings, and embedding a user's image.

Similarity is cosine: embeddings are L2-normalised once when the index is built, so a query
is one matrix-vector product and a partial top-k (fast enough for 60,000 images on a CPU).

One query is far too little work to share between threads: :func:`embed_one` and
:meth:`NeighborIndex.query` run on a single intra-op thread (the setting is per calling thread,
so a training running in another thread keeps its threads). On a busy 2-core machine a two-thread
forward pass of one image waited ~100 ms for the second thread; on one thread it takes ~1-2 ms.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .data import SPECS, to_float
from .images import PreparedImage, decode_image_bytes, decode_image_file, prepare_image


@contextmanager
def one_thread():
    """Run the block on one intra-op thread (OpenMP's thread count is per calling thread)."""
    old = torch.get_num_threads()
    if old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class Neighbor:
    index: int
    label: int
    similarity: float


class NeighborIndex:
    """Cosine top-k over a fixed gallery of embeddings."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        self.z = torch.nn.functional.normalize(z, dim=1)
        self.labels = np.asarray(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def query(self, vector: np.ndarray | torch.Tensor, k: int = 10, exclude: int | None = None) -> list[Neighbor]:
        q = torch.as_tensor(np.asarray(vector, dtype=np.float32)).reshape(-1)
        k = max(0, min(k, len(self) - (exclude is not None)))
        with one_thread():
            q = torch.nn.functional.normalize(q, dim=0)
            sim = self.z @ q
            if exclude is not None:
                sim[exclude] = float("-inf")
            top = torch.topk(sim, k)
        return [Neighbor(int(i), int(self.labels[i]), float(s))
                for s, i in zip(top.values.tolist(), top.indices.tolist())]


def input_mode_for(dataset: str) -> str:
    """``digit`` preprocessing for light-on-dark grey digit sets, plain ``resize`` otherwise."""
    return "digit" if dataset in ("digits", "mnist") else "resize"


def prepare_query(source, channels: int, size: int, dataset: str, invert="auto") -> PreparedImage:
    """Decode a path or bytes and convert to the data set's format (recording every step)."""
    if isinstance(source, (bytes, bytearray)):
        pil = decode_image_bytes(bytes(source), name="upload")
    else:
        pil = decode_image_file(source)
    mode = input_mode_for(dataset)
    if mode != "digit" and invert == "auto":
        # Fashion-MNIST items are light on black too: photos of clothes on white need inverting.
        invert = "auto-resize"
    if invert == "auto-resize":
        spec = SPECS.get(dataset)
        invert = False
        if spec is not None and spec.dark_background and channels == 1:
            arr = np.asarray(pil.convert("L"))
            border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
            invert = bool(np.median(border) > 127)
    return prepare_image(pil, channels, size, mode=mode, invert=invert)


@torch.no_grad()
def embed_one(model: torch.nn.Module, image_uint8: torch.Tensor) -> np.ndarray:
    model.eval()
    with one_thread():
        x = to_float(image_uint8[None]).contiguous(memory_format=torch.channels_last)
        fn = getattr(model, "embed", model)
        return fn(x)[0].float().numpy()


def neighbour_agreement(emb_a: np.ndarray, emb_b: np.ndarray, k: int = 10) -> np.ndarray:
    r"""Per image, the share of its ``k`` nearest other images (cosine) that two models agree on:

    .. math:: \mathrm{agree}_i = |N^a_k(i) \cap N^b_k(i)| \,/\, k

    for embeddings of the *same* images in the same order (1 = the same neighbourhood, 0 = none
    in common). Exact neighbours (:func:`cl.projection.exact_knn`)."""
    from .errors import ConfigError
    from .projection import exact_knn

    if len(emb_a) != len(emb_b):
        raise ConfigError(f"neighbour agreement needs the same images: {len(emb_a)} and {len(emb_b)} embeddings")
    na, _ = exact_knn(emb_a, k, metric="cosine")
    nb, _ = exact_knn(emb_b, k, metric="cosine")
    k = na.shape[1]
    # sort both rows, then count common members with a broadcast comparison (k is small)
    common = (np.sort(na, axis=1)[:, :, None] == np.sort(nb, axis=1)[:, None, :]).any(axis=2).sum(axis=1)
    return common.astype(np.float32) / max(k, 1)
