"""How an embedding space is shaped: alignment, uniformity, effective rank and cosine histograms.

These say *how* a contrastive loss arranged the space, where the probe and kNN figures say only
how well it separates the classes. Notation: ``z_i`` an embedding as the model outputs it,
``u_i = z_i / ||z_i||`` its L2-normalised direction, ``v_i, v_i'`` the normalised embeddings of
two augmented views of image ``i`` (the model's own augmentation, drawn from a seeded generator).

- **Alignment** (Wang & Isola 2020, alpha = 2), lower is better aligned::

      A = (1/N) sum_i ||v_i - v_i'||^2        in [0, 4]; = 2 - 2 cos(v_i, v_i') per image

  A model trained without augmentation sees two identical views, so its alignment is 0 by
  construction.
- **Uniformity** (t = 2), lower is more uniform::

      U = log( (2 / (N (N - 1))) sum_{i<j} exp(-t ||u_i - u_j||^2) )     in [-2t, 0]

  of the un-augmented images. ``U = 0`` exactly when every image lands on one direction
  (collapse). For points spread uniformly on the sphere S^{d-1} and N -> infinity it tends to
  :func:`sphere_uniformity`: ``-2t + log(Gamma(d/2) (2/s)^nu I_nu(s))`` with ``s = 2t``,
  ``nu = d/2 - 1`` (``I`` the modified Bessel function), the lowest value a d-dimensional
  embedding can reach on average. The pairs are visited in row blocks of the upper triangle, so
  10,000 images (50 M pairs) need a few tens of MB.
- **Effective rank** (RankMe, Garrido et al. 2023)::

      p_k = s_k / sum_l s_l + 1e-7,     RankMe = exp(-sum_k p_k log p_k)

  with ``s`` the singular values of the N x d matrix of the embeddings *as output* (not
  normalised, not centred). 1 for a collapsed embedding, d when every direction is used equally;
  the whole spectrum ``s`` is kept as well (dimensional collapse, Jing et al. 2022: a few
  directions carry everything, the rest are near zero).
- **Cosine histograms** over ``[-1, 1]`` (:data:`BINS` bins): ``cos(v_i, v_i')`` of the positive
  pairs (one per image), and ``cos(u_i, u_j)`` of all pairs i < j split into same-class and other
  pairs. A good embedding has its positives near 1 and its other pairs well below its same-class
  pairs.

- **Collapse** (:func:`collapse`, the one definition the app, the command line and the docs use):
  a model has *collapsed* when its uniformity is above :data:`COLLAPSE_UNIFORMITY` (-0.05) **and**
  its effective rank is below :data:`COLLAPSE_RANKME` (3). ``U > -0.05`` means the mean of
  ``exp(-2 ||u_i - u_j||^2)`` is above 0.95, so (Jensen) the pairs' mean squared distance between
  directions is below 0.025: every image inside a cone of about 9 degrees, where two classes put
  at right angles already give ``U = -0.67``. ``RankMe < 3`` means the embedding matrix uses
  fewer than three directions. Both, because either alone misleads: a space on one line through
  the origin (``+c`` and ``-c``) has RankMe 1 but two far-apart points (``U = -0.69``), and
  uniformity says nothing about how many directions carry the spread. Accuracy is not part of
  it: a linear probe or a kNN vote only compares distances, so it can still separate classes
  inside a collapsed space (mnist-simclr-contrastive reads 0.52), as t-SNE still draws a cloud.
- **Spread** (:func:`spread`): the root-mean-square distance between two images' embeddings,
  ``sqrt(mean_{i != j} ||z_i - z_j||^2) = sqrt(2n/(n-1) (mean ||z||^2 - ||mean z||^2))``, exact in
  O(N d), beside the embeddings' root-mean-square length: how small the differences are that a
  map (t-SNE, UMAP) or a kNN vote rescales.

:func:`measure` computes all of them for a model on an :class:`~cl.data.ImageSet` and says which
data they came from; :func:`measures_on_sample` is the cheap form a training loop can call once per
epoch on a fixed sample; :func:`measure_embeddings` is the pure computation on arrays.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

ALPHA = 2.0
T = 2.0
EPS = 1e-7  # RankMe's epsilon
BINS = 100
RANGE = (-1.0, 1.0)
BATCH = 256  # images per forward pass; also the augmentation's chunk, so it is part of the seeding
BLOCK_ELEMENTS = 1 << 22  # pair similarities held at once (4 M floats: 16 MB, ~40 MB with temporaries)
CARD_LIMIT = 2000  # test images measured for a new model's card
SAMPLE_LIMIT = 1000  # the most images measures_on_sample is meant for
COLLAPSE_UNIFORMITY = -0.05  # above it: every image inside a cone of ~9 degrees (see the module docstring)
COLLAPSE_RANKME = 3.0  # below it: fewer than three directions carry the embedding matrix
COLLAPSE_RULE = (f"uniformity above {COLLAPSE_UNIFORMITY} (every image inside a narrow cone of directions) and "
                 f"effective rank (RankMe) below {COLLAPSE_RANKME:g} (fewer than three directions used)")


def _normalise(z: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(z.float(), dim=1)


def alignment(z1, z2, alpha: float = ALPHA) -> float:
    """``(1/N) sum_i ||v_i - v_i'||^alpha`` of the L2-normalised rows of ``z1`` and ``z2``."""
    a, b = _normalise(torch.as_tensor(z1)), _normalise(torch.as_tensor(z2))
    if len(a) == 0:
        return float("nan")
    return float((a - b).norm(dim=1).double().pow(alpha).mean())


def _pair_pass(u: torch.Tensor, labels: torch.Tensor | None, t: float, bins: int, block_elements: int):
    """One pass over the pairs i < j: ``(sum_{i<j} exp(-t ||u_i - u_j||^2)`` as float64, histogram
    counts of the same-class and of the other pairs' cosines, or None without labels).

    The rows are sorted by label first, so a class's pairs are one contiguous band of columns and
    no per-pair label comparison is needed. Blocks of rows stay inside one class; a block of rows
    ``r0:r1`` of the class occupying ``g0:g1`` meets columns ``r0:`` only (the upper triangle):
    ``r0:r1`` (its own square, j > i), ``r1:g1`` (same class) and ``g1:`` (other classes)."""
    n = len(u)
    if labels is not None:
        order = torch.argsort(labels, stable=True)
        u = u[order]
        counts = torch.unique_consecutive(labels[order], return_counts=True)[1].tolist()
    else:
        counts = [n]
    total = torch.zeros((), dtype=torch.float64)
    same = torch.zeros(bins, dtype=torch.float64)
    other = torch.zeros(bins, dtype=torch.float64)
    rows = max(1, block_elements // max(n, 1))
    masks: dict[int, torch.Tensor] = {}
    g0 = 0
    for count in counts:
        g1 = g0 + count
        for r0 in range(g0, g1, rows):
            r1 = min(r0 + rows, g1)
            k = r1 - r0
            if k not in masks:
                masks[k] = torch.ones(k, k, dtype=torch.bool).triu_(1)
            # cos > 1 by rounding would fall outside the histogram's range and make a negative distance
            sim = (u[r0:r1] @ u[r0:].T).clamp_(-1.0, 1.0)
            square = sim[:, :k][masks[k]]
            rest = sim[:, k:]
            if labels is not None:
                same += torch.histc(square, bins, *RANGE).double() + torch.histc(rest[:, :g1 - r1], bins, *RANGE).double()
                other += torch.histc(rest[:, g1 - r1:], bins, *RANGE).double()
            # exp(-t ||u_i - u_j||^2) = exp(-2t) exp(2t cos): the constant factor is applied once, below
            total += square.mul_(2.0 * t).exp_().sum(dtype=torch.float64)
            total += rest.mul_(2.0 * t).exp_().sum(dtype=torch.float64)
        g0 = g1
    total *= math.exp(-2.0 * t)
    if labels is None:
        return total, None, None
    return total, same.round().long(), other.round().long()


def uniformity(z, t: float = T, block_elements: int = BLOCK_ELEMENTS) -> float:
    """``log((2 / (N(N-1))) sum_{i<j} exp(-t ||u_i - u_j||^2))`` of the L2-normalised rows of
    ``z``, in row blocks of about ``block_elements`` pairs; NaN for fewer than two rows."""
    u = _normalise(torch.as_tensor(z))
    n = len(u)
    if n < 2:
        return float("nan")
    total, _, _ = _pair_pass(u, None, t, BINS, block_elements)
    return _log_mean(total, n)


def _log_mean(total: torch.Tensor, n: int) -> float:
    pairs = n * (n - 1) / 2
    return min(0.0, math.log(float(total) / pairs))  # rounding can put a collapsed space at +1e-8


def singular_values(z) -> np.ndarray:
    """Singular values of the N x d matrix ``z`` (as given: not normalised, not centred), largest first."""
    z = np.asarray(z, dtype=np.float64)
    if z.size == 0:
        return np.zeros(0)
    return np.linalg.svd(z, compute_uv=False)


def rankme(s) -> float:
    """RankMe from singular values ``s``: ``exp(-sum p log p)``, ``p = s / sum(s) + 1e-7``;
    0 for an all-zero matrix (it uses no direction)."""
    s = np.asarray(s, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total + EPS
    return float(np.exp(-(p * np.log(p)).sum()))


def sphere_uniformity(d: int, t: float = T) -> float:
    """The limit of :func:`uniformity` for points uniform on the unit sphere in ``d`` dimensions:
    ``-2t + log(Gamma(d/2) (2/s)^nu I_nu(s))``, ``s = 2t``, ``nu = d/2 - 1``. From
    ``E exp(s x.y) = Gamma(d/2) (2/s)^nu I_nu(s)`` for two independent uniform unit vectors."""
    from scipy.special import gammaln, ive

    if d < 1:
        raise ValueError("d must be >= 1")
    s, nu = 2.0 * t, d / 2.0 - 1.0
    log_e = gammaln(d / 2.0) + nu * math.log(2.0 / s) + math.log(ive(nu, s)) + s  # ive = I e^-s
    return float(-2.0 * t + log_e)


def collapse(m: dict) -> bool | None:
    """Whether measures ``m`` (a :func:`measure` result or a card's ``measures``) show a collapse
    by :data:`COLLAPSE_RULE`; None when they lack the uniformity or the effective rank."""
    uni, rank = m.get("uniformity"), m.get("rankme")
    if uni is None or rank is None or not (math.isfinite(uni) and math.isfinite(rank)):
        return None
    return bool(uni > COLLAPSE_UNIFORMITY and rank < COLLAPSE_RANKME)


def is_collapsed(m: dict) -> bool:
    """:func:`collapse` as a plain yes / no (unknown counts as no)."""
    return bool(collapse(m))


def spread(z) -> dict:
    """How far apart the embeddings ``z`` (N x d, as output) are, exactly, in O(N d):
    ``rms_distance`` (root-mean-square distance over the pairs i != j), ``rms_norm`` (root-mean-square
    length), ``relative`` (their ratio), ``direction_rms_distance`` (the same for the L2-normalised
    rows) and ``n_images``. Uses ``mean_{i != j} ||z_i - z_j||^2 = 2n/(n-1) (mean ||z||^2 - ||mean z||^2)``."""
    x = np.asarray(z, dtype=np.float64)
    n = len(x)
    if n < 2:
        return {"rms_distance": None, "rms_norm": None, "relative": None, "direction_rms_distance": None, "n_images": n}

    def rms_pairs(v):
        sq = (v * v).sum(1).mean() - float((v.mean(0) ** 2).sum())
        return math.sqrt(max(0.0, 2.0 * n / (n - 1) * sq))

    norms = np.linalg.norm(x, axis=1)
    rms_norm = float(np.sqrt((norms ** 2).mean()))
    units = x / np.maximum(norms, 1e-30)[:, None]
    d = rms_pairs(x)
    return {"rms_distance": d, "rms_norm": rms_norm, "relative": d / rms_norm if rms_norm > 0 else None,
            "direction_rms_distance": rms_pairs(units), "n_images": n}


def histogram_edges(bins: int = BINS) -> np.ndarray:
    return np.linspace(RANGE[0], RANGE[1], bins + 1)


def measure_embeddings(z, z1=None, z2=None, labels=None, *, t: float = T, alpha: float = ALPHA,
                       bins: int = BINS, block_elements: int = BLOCK_ELEMENTS) -> dict:
    """Every measure from arrays: ``z`` (N x d, the un-augmented embeddings as output), ``z1``,
    ``z2`` (the two views' embeddings, row i of each from image i; optional) and ``labels``
    (optional; needed for the same-class / other histograms)."""
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32))
    u = _normalise(zt)
    n = len(u)
    lab = torch.as_tensor(np.asarray(labels)).long() if labels is not None else None
    if n >= 2:
        total, same, other = _pair_pass(u, lab, t, bins, block_elements)
        uni = _log_mean(total, n)
    else:
        uni = float("nan")
        same = other = torch.zeros(bins, dtype=torch.int64)
    s = singular_values(zt.numpy())
    out = {"uniformity": uni, "rankme": rankme(s), "singular_values": s.tolist(), "embedding_dim": int(zt.shape[1]),
           "sphere_uniformity": sphere_uniformity(int(zt.shape[1]), t) if zt.shape[1] else None,
           "t": t, "alpha": alpha, "n_images": n, "n_pairs": n * (n - 1) // 2,
           "histograms": {"range": list(RANGE), "bins": bins}}
    out["collapsed"] = collapse(out)
    if z1 is not None and z2 is not None:
        v1, v2 = _normalise(torch.as_tensor(np.asarray(z1))), _normalise(torch.as_tensor(np.asarray(z2)))
        cos = (v1 * v2).sum(1).clamp_(-1.0, 1.0)
        out["alignment"] = float((2.0 - 2.0 * cos.double()).clamp_min(0).pow(alpha / 2).mean()) if n else float("nan")
        out["positive_cosine_mean"] = float(cos.double().mean()) if n else float("nan")
        out["histograms"]["positive"] = np.histogram(cos.numpy(), bins=bins, range=RANGE)[0].tolist()
    if lab is not None:
        out["histograms"]["same_class"] = same.tolist()
        out["histograms"]["other"] = other.tolist()
        out["n_same_class_pairs"] = int(same.sum())
        out["n_other_pairs"] = int(other.sum())
    return out


@torch.no_grad()
def embed_views(model: torch.nn.Module, images: torch.Tensor, augmentation: str, seed: int = 0,
                batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, z1, z2)``: the un-augmented embeddings and those of two augmented views of every
    uint8 image, in eval mode (the model's mode is restored after). The views come from one
    ``torch.Generator`` seeded with ``seed``, batch after batch: view 1 then view 2."""
    return _embed(model, images, augmentation, seed, batch_size, clean=True)


def _views_only(model, images, augmentation: str, seed: int, batch_size: int = BATCH):
    """``(z1, z2)`` of :func:`embed_views` without the un-augmented pass (the same views: the
    generator draws the same numbers either way)."""
    _, z1, z2 = _embed(model, images, augmentation, seed, batch_size, clean=False)
    return z1, z2


@torch.no_grad()
def _embed(model, images, augmentation: str, seed: int, batch_size: int, clean: bool):
    from .augmentations import augment_uint8, get_augmentation
    from .data import to_float

    aug = get_augmentation(augmentation)
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    fn = getattr(model, "embed", model)
    out: tuple[list, list, list] = ([], [], [])
    try:
        for s in range(0, len(images), batch_size):
            x = images[s:s + batch_size]
            k = len(x)
            if augmentation == "none":  # two views of "none" are the image itself
                z = fn(to_float(x).to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
                out[0].append(z)
                out[1].append(z)
                out[2].append(z)
                continue
            parts = ([to_float(x)] if clean else []) + [augment_uint8(x, aug, gen), augment_uint8(x, aug, gen)]
            z = fn(torch.cat(parts).to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
            if clean:
                out[0].append(z[:k])
                z = z[k:]
            out[1].append(z[:k])
            out[2].append(z[k:])
    finally:
        model.train(was_training)
    if not out[1]:
        d = int(getattr(model, "embedding_dim", 0))
        empty = np.zeros((0, d), dtype=np.float32)
        return empty, empty, empty
    return tuple(torch.cat(o).numpy() if o else None for o in out)


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """All of ``range(n)``, or a seeded random ``limit`` of them, sorted."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _rounded(m: dict) -> dict:
    def r(v):
        if isinstance(v, float):
            return None if not math.isfinite(v) else float(f"{v:.6g}")
        if isinstance(v, list):
            return [r(x) for x in v]
        if isinstance(v, dict):
            return {k: r(x) for k, x in v.items()}
        return v
    return r(m)


def measure(model: torch.nn.Module, image_set, augmentation: str, seed: int = 0, limit: int | None = None) -> dict:
    """All measures of ``model`` on ``image_set`` (a :class:`cl.data.ImageSet`), or on a seeded
    random ``limit`` of its images, with two views per image from ``augmentation`` seeded by
    ``seed``. The result names its data: ``data`` (data set, split, images measured, images in the
    split, how they were chosen), ``augmentation`` and ``seed``; floats rounded to 6 digits and
    NaN written as None, so it goes into a card as it is."""
    t0 = time.perf_counter()
    idx = sample_indices(len(image_set), limit, seed)
    subset = len(idx) < len(image_set)
    images = image_set.images[torch.from_numpy(idx)] if subset else image_set.images
    labels = image_set.labels.numpy()[idx]
    z, z1, z2 = embed_views(model, images, augmentation, seed)
    out = measure_embeddings(z, z1, z2, labels)
    out["spread"] = spread(z)
    out["data"] = {"dataset": image_set.name, "split": image_set.split, "n_images": int(len(idx)),
                   "n_split": len(image_set), "complete_split": bool(image_set.complete),
                   "sample": f"seeded random {len(idx):,} of {len(image_set):,} (seed {seed})" if subset else "all"}
    out["augmentation"] = augmentation
    out["seed"] = int(seed)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return _rounded(out)


def measures_on_sample(model: torch.nn.Module, images: torch.Tensor, labels, augmentation: str, seed: int = 0,
                       z=None) -> dict:
    """The measures on a fixed sample (meant for at most :data:`SAMPLE_LIMIT` images), cheap
    enough to call after every epoch: ``alignment``, ``uniformity``, ``rankme``, the spectrum and
    the histograms, plus ``n_images``, ``augmentation``, ``seed`` and ``seconds``. Uses its own
    generator, so the training's random streams are untouched; restores the model's mode.

    The cost is three forward passes over ``images`` (the images and two views). A caller that has
    just embedded the same images (``cl.evaluation.embed``) passes them as ``z`` and saves one."""
    t0 = time.perf_counter()
    if z is None:
        z, z1, z2 = embed_views(model, images, augmentation, seed)
    else:
        z = np.asarray(z, dtype=np.float32)
        if len(z) != len(images):
            raise ValueError(f"z has {len(z)} rows for {len(images)} images")
        z1, z2 = _views_only(model, images, augmentation, seed)
    out = measure_embeddings(z, z1, z2, np.asarray(labels))
    out["augmentation"] = augmentation
    out["seed"] = int(seed)
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return _rounded(out)


def describe(m: dict) -> str:
    """One line: the three numbers and the data they came from."""
    d = m.get("data") or {}
    where = (f"{d.get('n_images', m.get('n_images', 0)):,} {d.get('dataset', '?')} {d.get('split', '?')} images"
             if d else f"{m.get('n_images', 0):,} images")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    state = {True: "; collapsed", False: "", None: ""}[collapse(m)]
    return (f"alignment {f(m.get('alignment'), '.3f')}, uniformity {f(m.get('uniformity'), '.3f')}, "
            f"RankMe {f(m.get('rankme'), '.1f')} of {m.get('embedding_dim', '?')}{state} "
            f"({where}, augmentation {m.get('augmentation', '?')}, seed {m.get('seed', '?')})")


def measures_for_card(model: torch.nn.Module, test_set, augmentation: str, limit: int = CARD_LIMIT,
                      seed: int = 0) -> dict:
    """What a new model's card stores: :func:`measure` on a seeded random ``limit`` of the test
    split (all of it when smaller), with the model's own augmentation, seed 0."""
    return measure(model, test_set, augmentation, seed=seed, limit=limit)
