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
    percentile: float | None = None  # its match (:class:`SimilarityScale`), when rated


BLANK_INK_SHARE = 0.01  # below this share of pixels off the background an image shows (almost) nothing
INK_LEVEL = 24  # grey levels (of 255) a pixel must differ from the background to count as drawn


def ink_share(image_uint8) -> float:
    """The share of an image's pixels (uint8, (C, H, W) or (H, W)) that differ from its background
    (the median of each channel) by more than :data:`INK_LEVEL` grey levels in some channel."""
    a = np.asarray(image_uint8, dtype=np.int16)
    if a.ndim == 2:
        a = a[None]
    if a.size == 0:
        return 0.0
    background = np.median(a.reshape(a.shape[0], -1), axis=1)[:, None, None]
    return float((np.abs(a - background) > INK_LEVEL).any(axis=0).mean())


def is_blank(image_uint8) -> bool:
    """Whether the image, as the model sees it, is blank or near-blank (fewer than 1 % of its
    pixels drawn): its embedding is the model's answer to nothing, and so are its neighbours."""
    return ink_share(image_uint8) < BLANK_INK_SHARE


class SimilarityScale:
    """What a cosine similarity means for one model: how it compares with the similarity each test
    image has to its own nearest other test image (for a seeded sample of at most ``limit`` test
    images, their nearest neighbour searched among all of them).

    A raw cosine does not separate good matches from bad: the study's encoder ends in a sigmoid,
    so every output is positive and every pair of images has a cosine near 1, and a blank query's
    neighbours sit at 0.997 on mnist-best where a real digit's sit at 0.999. The *match* of a
    neighbour is the percentile of its similarity among those nearest-neighbour similarities
    (ties count half): 50 = as close as a typical test image is to its nearest neighbour; near 0 =
    farther than almost every test image is from its nearest neighbour, a poor match."""

    def __init__(self, embeddings: np.ndarray, limit: int = 2000, seed: int = 0):
        z = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)), dim=1)
        n = len(z)
        rows = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).permutation(n)[:limit])
        best = []
        with one_thread():
            for s in range(0, len(rows), 512):
                r = torch.from_numpy(rows[s:s + 512])
                sim = z[r] @ z.T
                sim[torch.arange(len(r)), r] = float("-inf")  # not itself
                best.append(sim.max(dim=1).values)
        values = torch.cat(best).numpy().astype(np.float64) if best and n >= 2 else np.zeros(0)
        self.sorted = np.sort(values)
        self.n_images = len(self.sorted)
        self.n_gallery = n

    def percentile(self, similarity: float) -> float:
        """100 x the share of the reference similarities below ``similarity`` (ties count half)."""
        if self.n_images == 0:
            return float("nan")
        lo = np.searchsorted(self.sorted, similarity, side="left")
        hi = np.searchsorted(self.sorted, similarity, side="right")
        return 100.0 * (lo + hi) / 2.0 / self.n_images

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.sorted, q)) if self.n_images else float("nan")

    def rate(self, hits: list[Neighbor]) -> list[Neighbor]:
        """The same neighbours with their match percentiles filled in."""
        return [Neighbor(h.index, h.label, h.similarity, self.percentile(h.similarity)) for h in hits]

    def spread(self) -> float:
        """The width of the middle 90 % of the reference similarities."""
        return self.quantile(0.95) - self.quantile(0.05)

    def describe(self) -> str:
        return (f"the similarity of each of {self.n_images:,} test images to its nearest other test image: median "
                f"{self.quantile(0.5):.3f}, 5th-95th percentile {self.quantile(0.05):.3f}-{self.quantile(0.95):.3f}")


def fmt_match(p: float | None) -> str:
    """``"match 73 %"``: a neighbour's percentile among the test images' nearest-neighbour similarities."""
    if p is None or not np.isfinite(p):
        return "match -"
    return f"match {p:.0f} %"


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
                for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


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


def most_changed(agreement: np.ndarray, n: int = 10, seed: int = 0) -> tuple[np.ndarray, int]:
    """``(indices, tied)``: the ``n`` images with the lowest :func:`neighbour_agreement`, and how many
    images share the lowest value. Ties are broken by a seeded random order, not by index (which
    listed the first ten of hundreds of images at 0 as if they were the ten most changed)."""
    a = np.asarray(agreement, dtype=np.float64)
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64), 0
    shuffle = np.random.default_rng(seed).permutation(len(a))
    order = shuffle[np.argsort(a[shuffle], kind="stable")]
    tied = int(np.isclose(a, a.min()).sum())
    return order[:n], tied
