"""What the loss sees: one training batch, built as the recipe builds it, written as the terms
the loss averages.

:func:`build_batch` runs the training code itself on the first batch of the first epoch: its
setup (:func:`cl.training.setup`: the seeded sampler, the augmentation stream, the encoder, the
loss class) and its batch step (:func:`cl.training.batch_loss`), under ``torch.no_grad`` and with
the encoder in training mode, as a training step computes it (BatchNorm normalises with this
batch's statistics). Taps on the encoder and on the loss record what the encoder was fed and
what the loss class was called with; nothing is re-implemented but the loss's own formula, term
by term:

- pairwise (cosine) and Hadsell's contrastive loss: one term per pair ``(a, b, y)``,
  ``1 - cos`` or ``max(0, cos - m)``; ``d^2 / 2`` or ``max(0, m - d)^2 / 2``;
- triplet (the study's triplets, or the triplets an online miner picked): one term per triplet,
  ``max(0, d(a, p) - d(a, n) + m)``; every candidate triplet of the batch is placed on the
  FaceNet picture (Schroff et al. 2015) by ``d(a, n) - d(a, p)``:
  hard ``<= 0`` (the negative no farther than the positive), semi-hard ``(0, m)``, easy ``>= m``
  (zero loss: "satisfied");
- NT-Xent and SupCon: one term per anchor, ``-log p(i -> j(i))`` (NT-Xent) or the mean of
  ``-log p(i -> p)`` over ``i``'s positives (SupCon), with ``p(i -> k)`` the softmax over
  ``cos(z_i, z_k) / tau``, ``k != i``.

The loss class reduces by the mean over its terms (SupCon: over the anchors that have a
positive), so ``mean(terms)`` equals :attr:`LossBatch.value` (tests check 1e-6 for every loss
and miner). The encoder runs in float32 here even where training used bf16 autocast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import Card
from .data import ImageSet
from .errors import ConfigError
from .losses import PAIRS, TRIPLETS, VIEWS, ContrastiveLoss, loss_class

FAMILIES = ("pairs", "triplets", "views")  # pairwise/Hadsell; triplet (study's or mined); NT-Xent/SupCon
KINDS = ("easy", "semi-hard", "hard")
ANCHORS = 16  # a batch a phone can show: 16 anchors (8 images with two views each)
MAX_BATCH = 1024
MAX_LISTED_CANDIDATES = 20_000  # candidate triplets listed one by one; beyond, only counted
EPS = 1e-6  # F.pairwise_distance's eps, which TripletLoss and ContrastiveMarginLoss use


@dataclass
class LossBatch:
    """One batch as the loss saw it.

    ``rows`` are the encoder's inputs, one per embedding: ``index`` into the data set, ``label``,
    ``role`` (anchor, positive, negative, other, view 1, view 2) and ``images`` (uint8, what the
    encoder was fed after augmentation). ``terms`` holds one entry per loss term (the arrays below
    are aligned with it); ``contributions[t]`` is term ``t``'s value and ``value`` the loss class's
    output for the batch."""

    loss: str
    family: str
    mining: str
    negatives: str
    config: dict
    data: dict
    trained: bool
    value: float
    contributions: np.ndarray
    reduction: str
    row_index: np.ndarray
    row_label: np.ndarray
    row_role: list[str]
    images: torch.Tensor
    embeddings: np.ndarray
    terms: dict = field(default_factory=dict)  # per-term arrays, by family (see build_batch)
    candidates: dict | None = None  # triplet families: every candidate triplet (or counts only)
    matrix: dict | None = None  # views family: similarity, probability, positive/false-negative masks
    classes: list[str] = field(default_factory=list)

    @property
    def margin(self) -> float | None:
        return self.config.get("margin")

    @property
    def temperature(self) -> float | None:
        return self.config.get("temperature")

    def mean_contribution(self) -> float:
        c = self.contributions[np.isfinite(self.contributions)]
        return float(c.mean()) if len(c) else 0.0

    def summary(self) -> dict:
        """The batch in a few figures (which ones depends on the family)."""
        return summarise(self)


# ----------------------------------------------------------------------------- configuration
def batch_config(card_config: dict, *, loss: str | None = None, mining: str | None = None,
                 negatives: str | None = None, seed: int = 0, batch_size: int | None = None,
                 anchors: int = ANCHORS):
    """The training config whose first batch is shown: the checkpoint's own (``card_config``)
    with another ``loss``, ``mining`` or ``negatives`` when given, a ``seed`` and a
    ``batch_size`` (default: as many items as make ``anchors`` anchors: 16 anchors are 16 pairs,
    16 triplets, or 8 images where each has two views).
    A loss other than the model's gets that loss's recipe defaults (views,
    temperature, margin) and no mining unless ``mining`` is given. Runs on the CPU in float32,
    on the current thread count."""
    from .training import TrainConfig, batch_kind, resolve_config

    known = {k: v for k, v in card_config.items() if k in TrainConfig.__dataclass_fields__}
    config = TrainConfig(**known)
    if batch_size is not None and (not isinstance(batch_size, int) or not 2 <= batch_size <= MAX_BATCH):
        raise ConfigError(f"batch size must be between 2 and {MAX_BATCH:,}, got {batch_size}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed}")
    if loss is not None and loss != config.loss:
        config = replace(config, loss=loss, views=None, temperature=None, margin=None)
        if loss_class(loss).needs != TRIPLETS and mining is None:
            config = replace(config, mining="none")
    if mining is not None and mining != config.mining:
        config = replace(config, mining=mining,
                         views=None if config.loss and loss_class(config.loss).needs == TRIPLETS else config.views)
    if negatives is not None:
        config = replace(config, negatives=negatives)
    resolved = resolve_config(replace(config, seed=seed, batch_size=batch_size or 2, device="cpu", threads=None,
                                      precision="fp32", time_budget=None))
    if batch_size is None:
        views_path = batch_kind(resolved) == VIEWS
        if not isinstance(anchors, int) or not 2 * resolved.views <= anchors <= MAX_BATCH:
            raise ConfigError(f"anchors must be between {2 * resolved.views} and {MAX_BATCH:,}, got {anchors}")
        resolved = replace(resolved, batch_size=anchors // resolved.views if views_path else anchors)
    return resolved


def family_of(config) -> str:
    """``pairs`` (pairwise, contrastive), ``triplets`` (triplet, study's or mined) or ``views``
    (NT-Xent, SupCon): what the config's loss needs."""
    needs = loss_class(config.loss).needs
    return needs if needs in (PAIRS, TRIPLETS) else "views"


# ----------------------------------------------------------------------------- taps
class _EncoderTap(torch.nn.Module):
    """The training encoder, recording every batch it is fed and what it returned."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        self.calls.append((x.detach(), z.detach()))
        return z


class _LossTap:
    """The loss class, recording the arguments of its call and its output."""

    def __init__(self, loss_fn: ContrastiveLoss):
        self.loss_fn = loss_fn
        self.needs = loss_fn.needs
        self.embeddings: torch.Tensor | None = None
        self.tuples: tuple | None = None
        self.output: float | None = None

    @property
    def margin(self) -> float:  # the miners read it
        return self.loss_fn.margin

    def __call__(self, embeddings, labels=None, tuples=None):
        out = self.loss_fn(embeddings, labels, tuples)
        self.embeddings = embeddings.detach()
        self.tuples = None if tuples is None else tuple(t.detach() for t in tuples)
        self.output = float(out)
        return out


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """The encoder's float input in [-1, 1] back to uint8 images for display."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous()


# ----------------------------------------------------------------------------- the batch
def build_batch(config, train_set: ImageSet, weights: dict | None = None) -> LossBatch:
    """The first batch of the first epoch that ``config`` (resolved) draws from ``train_set``,
    under the encoder with ``weights`` (a state dict), or under the untrained encoder the recipe
    starts from with this seed when ``weights`` is None (epoch 0).

    Terms, by family (arrays aligned with ``contributions``; ``a``, ``b``, ``p``, ``n`` are rows):

    - ``pairs``: ``a``, ``b``, ``similar``, ``cosine`` (pairwise) or ``distance`` (contrastive),
      ``satisfied`` (zero term);
    - ``triplets``: ``a``, ``p``, ``n``, ``d_ap``, ``d_an``, ``kind``, ``satisfied``,
      ``false_negative`` (the negative shares the anchor's class: random negatives);
    - ``views``: ``anchor``, ``positive_probability`` (NT-Xent: of its other view; SupCon: the
      softmax mass on all its positives), ``n_positives``, ``n_false_negatives``.
    """
    from .training import batch_loss, epoch_order, setup

    c = config
    with torch.no_grad():
        run = setup(c, train_set)
        if weights is not None:
            run.module.load_state_dict(weights, strict=True)
        tap, loss_tap = _EncoderTap(run.model), _LossTap(run.loss_fn)
        # the tap stands in for the loss: the same call shape, needs and margin (duck-typed)
        run.model, run.loss_fn = tap, cast(ContrastiveLoss, loss_tap)
        run.model.train()
        anchors, negatives, order = epoch_order(run)
        items = order[:c.batch_size]
        loss, _n_images, _shared = batch_loss(run, items, anchors, negatives)
    value = float(loss)
    labels = train_set.labels.numpy()
    family = family_of(c)
    base = dict(loss=c.loss, family=family, mining=c.mining, negatives=c.negatives,
                config={k: v for k, v in c.to_dict().items() if k not in ("device", "threads", "time_budget")},
                data=train_set.provenance(), trained=weights is not None, value=value, classes=list(train_set.classes))
    base["config"]["margin"] = getattr(run.loss_fn.loss_fn, "margin", None)
    base["config"]["temperature"] = getattr(run.loss_fn.loss_fn, "temperature", None)
    if family == "pairs":
        return _pairs(base, c, tap, loss_tap, items, anchors, negatives, labels)
    if family == "triplets" and c.mining == "none":
        return _study_triplets(base, c, tap, loss_tap, items, anchors, negatives, labels)
    return _views(base, c, tap, loss_tap, items, anchors, labels)


def _pairs(base, c, tap, loss_tap, items, anchors, negatives, labels) -> LossBatch:
    # the item layout of cl.training.epoch_order: (anchor i, its positive) for item i < n, then
    # (anchor i - n, its negative)
    n_a = len(anchors)
    is_pos = items < n_a
    slot = np.where(is_pos, items, items - n_a)
    a_idx = anchors[slot]
    o_idx = np.where(is_pos, a_idx, negatives[slot])
    (x_a, _), (x_o, _) = tap.calls
    i, j, y = loss_tap.tuples
    z_a, z_o = loss_tap.embeddings[i], loss_tap.embeddings[j]
    similar = (y > 0).numpy()
    k = len(items)
    # the loss's own per-pair formula: cosine terms (pairwise) or distance terms (contrastive)
    pair_terms, measures = loss_tap.loss_fn.pair_terms(z_a, z_o, y)
    measure = {name: values.numpy() for name, values in measures.items()}
    terms = pair_terms.numpy().astype(np.float64)
    rows = np.arange(k)
    return LossBatch(**base, contributions=terms, reduction=f"mean over the {k} pairs",
                     row_index=np.concatenate([a_idx, o_idx]), row_label=labels[np.concatenate([a_idx, o_idx])],
                     row_role=["anchor"] * k + ["positive" if s else "negative" for s in is_pos],
                     images=_to_uint8(torch.cat([x_a, x_o])), embeddings=torch.cat([z_a, z_o]).numpy(),
                     terms={"a": rows, "b": rows + k, "similar": similar, **measure, "satisfied": terms == 0})


def _triplet_terms(z_a: torch.Tensor, z_p: torch.Tensor, z_n: torch.Tensor, margin: float):
    """``(d_ap, d_an, terms)`` as :class:`cl.losses.TripletLoss` computes them, per triplet."""
    d_ap = F.pairwise_distance(z_a, z_p, p=2, eps=EPS)
    d_an = F.pairwise_distance(z_a, z_n, p=2, eps=EPS)
    return d_ap, d_an, (d_ap - d_an + margin).clamp_min(0)


def facenet_kind(d_ap: np.ndarray, d_an: np.ndarray, margin: float) -> np.ndarray:
    """FaceNet's classes of a triplet: ``hard`` when ``d_an <= d_ap``, ``semi-hard`` when
    ``d_ap < d_an < d_ap + margin`` (a positive loss below the margin), ``easy`` when
    ``d_an >= d_ap + margin`` (zero loss)."""
    gap = np.asarray(d_an, dtype=np.float64) - np.asarray(d_ap, dtype=np.float64)
    return np.where(gap <= 0, "hard", np.where(gap < margin, "semi-hard", "easy"))


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x_i - y_j + eps||`` for every pair: F.pairwise_distance's value (its eps included),
    computed directly rather than through the matrix-product shortcut, which loses precision
    for nearby points."""
    return torch.cdist(x + EPS, y, compute_mode="donot_use_mm_for_euclid_dist")


def _candidates(d_ap_pairs: torch.Tensor, pair_a: torch.Tensor, pair_p: torch.Tensor, d_an: torch.Tensor,
                neg_mask: torch.Tensor, margin: float, picked: set) -> dict:
    """Every candidate triplet ``(a, p, n)``: the ``(a, p)`` pairs given with their distance,
    every ``n`` allowed by ``neg_mask[a]`` with ``d_an[a, n]``. Counted per kind for any batch;
    listed one by one (with ``picked``) when there are at most :data:`MAX_LISTED_CANDIDATES`."""
    n_neg = neg_mask.sum(1)
    total = int(n_neg[pair_a].sum())
    inf = torch.tensor(float("inf"), dtype=d_an.dtype)
    sorted_neg, _ = torch.where(neg_mask, d_an, inf).sort(dim=1)
    rows = sorted_neg[pair_a]
    hard = torch.searchsorted(rows, d_ap_pairs[:, None], right=True).squeeze(1)
    below = torch.searchsorted(rows, (d_ap_pairs + margin)[:, None], right=False).squeeze(1)
    counts = {"hard": int(hard.sum()), "semi-hard": int((below - hard).sum()),
              "easy": int((n_neg[pair_a] - below).sum())}
    out = {"total": total, "counts": counts, "listed": total <= MAX_LISTED_CANDIDATES}
    if out["listed"] and total:
        pa, pn = torch.nonzero(neg_mask[pair_a], as_tuple=True)  # pa indexes the (a, p) pairs
        a, p = pair_a[pa].numpy(), pair_p[pa].numpy()
        n = pn.numpy()
        dap, dan = d_ap_pairs[pa].numpy(), d_an[pair_a[pa], pn].numpy()
        out.update(a=a, p=p, n=n, d_ap=dap, d_an=dan, kind=facenet_kind(dap, dan, margin),
                   picked=np.array([(int(i), int(j), int(k)) in picked for i, j, k in zip(a, p, n, strict=True)], dtype=bool))
    return out


def _study_triplets(base, c, tap, loss_tap, items, anchors, negatives, labels) -> LossBatch:
    """The study's triplets: (anchor, its positive, the drawn negative) per item."""
    a_idx, n_idx = anchors[items], negatives[items]
    k = len(items)
    xs = [x for x, _ in tap.calls]
    x_a, x_n = xs[0], xs[-1]
    x_p = xs[1] if len(xs) == 3 else x_a  # no augmentation: the positive is the anchor's batch
    z_a, z_p, z_n = (loss_tap.embeddings[t] for t in loss_tap.tuples)
    margin = loss_tap.loss_fn.margin
    d_ap, d_an, terms = _triplet_terms(z_a, z_p, z_n, margin)
    false_neg = labels[n_idx] == labels[a_idx]
    rows = np.arange(k)
    # candidates: each anchor with its positive and every negative of the batch of another class
    true_neg = torch.from_numpy(labels[a_idx][:, None] != labels[n_idx][None, :])
    cand = _candidates(d_ap, torch.arange(k), torch.arange(k), _distances(z_a, z_n), true_neg, margin,
                       {(i, i, i) for i in range(k)})
    if cand.get("listed") and cand["total"]:  # rows: anchors 0..k-1, positives k..2k-1, negatives 2k..3k-1
        cand["p"] = cand["p"] + k
        cand["n"] = cand["n"] + 2 * k
    terms_np = terms.numpy().astype(np.float64)
    d_ap_np, d_an_np = d_ap.numpy(), d_an.numpy()
    idx = np.concatenate([a_idx, a_idx, n_idx])
    return LossBatch(**base, contributions=terms_np, reduction=f"mean over the {k} triplets",
                     row_index=idx, row_label=labels[idx], row_role=["anchor"] * k + ["positive"] * k + ["negative"] * k,
                     images=_to_uint8(torch.cat([x_a, x_p, x_n])), embeddings=torch.cat([z_a, z_p, z_n]).numpy(),
                     terms={"a": rows, "p": rows + k, "n": rows + 2 * k, "d_ap": d_ap_np, "d_an": d_an_np,
                            "kind": facenet_kind(d_ap_np, d_an_np, margin), "satisfied": terms_np == 0,
                            "false_negative": false_neg},
                     candidates=cand)


def _views(base, c, tap, loss_tap, items, anchors, labels) -> LossBatch:
    """NT-Xent, SupCon and mined triplets over ``views`` views of each image (rows: view 1 of
    every image, then view 2)."""
    from .samplers import mine_triplets

    img_idx = anchors[items]
    v = c.views
    x = torch.cat([x for x, _ in tap.calls])
    z = torch.cat([z for _, z in tap.calls])
    idx = np.tile(img_idx, v)
    row_labels = labels[idx]
    roles = ["view 1"] * len(items) + ["view 2"] * len(items) if v == 2 else ["image"] * len(items)
    common = dict(row_index=idx, row_label=row_labels, row_role=roles, images=_to_uint8(x), embeddings=z.numpy())
    if loss_tap.needs == TRIPLETS:  # mined: the miner run again on the same embeddings picks the same triplets
        lab = torch.from_numpy(row_labels)
        margin = loss_tap.loss_fn.margin
        a, p, n = mine_triplets(z, lab, c.mining, margin)
        if loss_tap.tuples is not None and not torch.equal(loss_tap.tuples[0], a):
            raise RuntimeError("the miner picked other triplets than in the training step")
        d_ap, d_an, terms = _triplet_terms(z[a], z[p], z[n], margin)
        same = lab[:, None] == lab[None, :]
        eye = torch.eye(len(lab), dtype=torch.bool)
        pair_a, pair_p = torch.nonzero(same & ~eye, as_tuple=True)
        d = _distances(z, z)
        cand = _candidates(d[pair_a, pair_p], pair_a, pair_p, d, ~same, margin,
                           {(int(i), int(j), int(k)) for i, j, k in zip(a, p, n, strict=True)})
        terms_np = terms.numpy().astype(np.float64)
        dap, dan = d_ap.numpy(), d_an.numpy()
        reduction = f"mean over the {len(a)} triplets the miner picked"
        return LossBatch(**base, contributions=terms_np, reduction=reduction, **common,
                         terms={"a": a.numpy(), "p": p.numpy(), "n": n.numpy(), "d_ap": dap, "d_an": dan,
                                "kind": facenet_kind(dap, dan, margin), "satisfied": terms_np == 0,
                                "false_negative": np.zeros(len(a), dtype=bool)},
                         candidates=cand)
    temperature = loss_tap.loss_fn.temperature
    zn = F.normalize(z, dim=1)
    cos = zn @ zn.T
    logits = cos / temperature
    m = len(z)
    eye = torch.eye(m, dtype=torch.bool)
    log_prob = torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1)
    prob = log_prob.exp()
    same_class = torch.from_numpy(row_labels[:, None] == row_labels[None, :]) & ~eye
    if loss_tap.needs == VIEWS:  # the positive is the image's other view
        k = len(items)
        partner = torch.cat([torch.arange(k, 2 * k), torch.arange(0, k)])
        positive = torch.zeros(m, m, dtype=torch.bool)
        positive[torch.arange(m), partner] = True
        terms = -log_prob[torch.arange(m), partner]
        false_neg = same_class & ~positive
        reduction = f"mean over all {m} views as anchors"
    else:
        positive = same_class
        n_pos = positive.sum(1)
        terms = torch.where(n_pos > 0, -log_prob.masked_fill(~positive, 0.0).sum(1) / n_pos.clamp_min(1),
                            torch.tensor(float("nan")))
        false_neg = torch.zeros(m, m, dtype=torch.bool)
        reduction = f"mean over the {int((n_pos > 0).sum())} of {m} anchors that have a positive"
    n_pos = positive.sum(1)
    pos_prob = torch.where(n_pos > 0, prob.masked_fill(~positive, 0.0).sum(1), torch.tensor(float("nan")))
    return LossBatch(**base, contributions=terms.numpy().astype(np.float64), reduction=reduction, **common,
                     terms={"anchor": np.arange(m), "positive_probability": pos_prob.numpy(),
                            "n_positives": n_pos.numpy(), "n_false_negatives": false_neg.sum(1).numpy()},
                     matrix={"cosine": cos.numpy(), "probability": prob.numpy(), "positive": positive.numpy(),
                             "false_negative": false_neg.numpy()})


# ----------------------------------------------------------------------------- figures
def summarise(b: LossBatch) -> dict:
    """A few figures per family: how many terms are zero, the FaceNet shares, the mean
    probability of the positive, the false negatives; and the mean distance between the batch's
    embeddings (0 when the model has collapsed to one point)."""
    out = {"loss": b.value, "mean_of_contributions": b.mean_contribution(), "n_terms": int(len(b.contributions)),
           "reduction": b.reduction, "n_images": int(len(np.unique(b.row_index)))}
    z = torch.from_numpy(b.embeddings)
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
    off = ~torch.eye(len(z), dtype=torch.bool)
    out["mean_embedding_distance"] = float(d[off].mean()) if len(z) > 1 else 0.0
    t = b.terms
    if b.family == "pairs":
        sim = t["similar"]
        out.update(n_similar=int(sim.sum()), n_dissimilar=int((~sim).sum()),
                   n_satisfied=int(t["satisfied"].sum()),
                   n_satisfied_similar=int((t["satisfied"] & sim).sum()),
                   n_satisfied_dissimilar=int((t["satisfied"] & ~sim).sum()))
    elif b.family == "triplets":
        kinds = t["kind"]
        out.update(n_picked=int(len(kinds)), n_satisfied=int(t["satisfied"].sum()),
                   picked_kinds={k: int((kinds == k).sum()) for k in KINDS},
                   n_false_negatives=int(t["false_negative"].sum()))
        cand = b.candidates or {"total": 0, "counts": {k: 0 for k in KINDS}}
        n = max(cand["total"], 1)
        out.update(n_candidates=int(cand["total"]), candidate_kinds=dict(cand["counts"]),
                   candidate_shares={k: cand["counts"][k] / n for k in KINDS})
    else:
        p = t["positive_probability"]
        has = np.isfinite(p)
        m = len(p)
        out.update(n_anchors=int(m), n_anchors_with_positive=int(has.sum()),
                   mean_positive_probability=float(p[has].mean()) if has.any() else None,
                   chance_probability=1.0 / (m - 1) if m > 1 else None,
                   n_false_negative_pairs=int(t["n_false_negatives"].sum()),
                   n_anchors_with_false_negative=int((t["n_false_negatives"] > 0).sum()))
    return out


def to_json(b: LossBatch) -> dict:
    """The batch as plain JSON: rows (index, class, role), one record per term, the loss."""
    rows = [{"row": i, "index": int(b.row_index[i]), "label": int(b.row_label[i]),
             "class": b.classes[int(b.row_label[i])] if b.classes else str(int(b.row_label[i])), "role": b.row_role[i]}
            for i in range(len(b.row_index))]
    terms = []
    for i, value in enumerate(b.contributions):
        rec = {}
        for key, arr in b.terms.items():
            v = arr[i]
            rec[key] = v.item() if isinstance(v, np.generic) else v
            if isinstance(rec[key], float) and not np.isfinite(rec[key]):
                rec[key] = None
        rec["contribution"] = float(value) if np.isfinite(value) else None
        terms.append(rec)
    return {"loss": b.loss, "family": b.family, "mining": b.mining, "negatives": b.negatives, "trained": b.trained,
            "config": b.config, "data": b.data, "indices": [int(i) for i in np.unique(b.row_index)],
            "rows": rows, "terms": terms, "contributions": [t["contribution"] for t in terms],
            "reduction": b.reduction, "value": b.value, "summary": summarise(b)}


# ----------------------------------------------------------------------------- from a checkpoint
def batch_data(card: Card, data_dir=None) -> ImageSet:
    """The images a checkpoint's batches are drawn from: its data set's train split, or the
    shipped test gallery when the train split is not on this machine (the batch says which)."""
    from .checkpoints import check_compatible
    from .data import load_dataset
    from .errors import DataUnavailableError

    name = card.dataset
    if not name:
        raise ConfigError("the checkpoint's card names no data set")
    try:
        data = load_dataset(name, "train", data_dir, download=False, allow_gallery=False)
    except DataUnavailableError:
        data = load_dataset(name, "test", data_dir, download=False, allow_gallery=True)
        data = replace(data, notes=[*data.notes, "the train split is not on this machine: batches drawn from the "
                                                 "test images instead"])
    check_compatible(card, data.channels, data.size, name, card.name or "checkpoint")
    return data


def batch_from_checkpoint(path, *, untrained: bool = False, loss: str | None = None, mining: str | None = None,
                          negatives: str | None = None, seed: int = 0, batch_size: int | None = None,
                          anchors: int = ANCHORS,
                          data_dir=None) -> LossBatch:
    """:func:`build_batch` for a checkpoint file: its recipe (with the overrides), its data, its
    weights (or, ``untrained``, the recipe's initial weights for ``seed``: epoch 0)."""
    from .checkpoints import load_checkpoint

    card = Card.read(path)
    config = batch_config(card.config, loss=loss, mining=mining, negatives=negatives, seed=seed,
                          batch_size=batch_size, anchors=anchors)
    data = batch_data(card, data_dir)
    weights = None
    if not untrained:
        model, raw_card = load_checkpoint(path)
        card = Card.from_dict(raw_card)
        weights = model.state_dict()
    spec = card.encoder_spec
    if spec.name != config.encoder or (spec.name == "convnet" and int(spec.width) != config.encoder_width):
        config = replace(config, encoder=spec.name, encoder_width=int(spec.width or 0))
    return build_batch(config, data, weights)


def data_text(data: dict) -> str:
    """Where a batch came from, e.g. ``mnist train, 17,387 of 60,000 images (partial)``."""
    n, full = data["n_images"], data.get("n_full")
    size = f"{n:,} of {full:,} images (partial)" if full and n < full else f"{n:,} images"
    return f"{data.get('label') or data['dataset']} {data['split']}, {size}"


def headline(b: LossBatch) -> str:
    """The batch's figures in one sentence (the CLI's and the page's)."""
    s = summarise(b)
    loss = f"{b.loss} loss {b.value:.4f} ({b.reduction})"
    if b.family == "pairs":
        return (f"{loss}: {s['n_similar']} similar and {s['n_dissimilar']} dissimilar pairs; {s['n_satisfied']} "
                f"already satisfied (zero loss).")
    if b.family == "triplets":
        pk, ck = s["picked_kinds"], s["candidate_shares"]
        fn = f", {s['n_false_negatives']} with a negative of the anchor's own class" if s["n_false_negatives"] else ""
        return (f"{loss}: {s['n_picked']} triplets ({pk['easy']} easy, {pk['semi-hard']} semi-hard, {pk['hard']} hard; "
                f"{s['n_satisfied']} satisfied{fn}) out of {s['n_candidates']:,} candidates "
                f"({ck['easy']:.0%} easy, {ck['semi-hard']:.0%} semi-hard, {ck['hard']:.0%} hard); mean distance "
                f"between embeddings {s['mean_embedding_distance']:.3g}.")
    p = s["mean_positive_probability"]
    fn = (f"; {s['n_false_negative_pairs']} negatives share the anchor's class (false negatives) at "
          f"{s['n_anchors_with_false_negative']} anchors" if loss_class(b.loss).needs == VIEWS else "")
    return (f"{loss}: mean probability of the positive {'-' if p is None else format(p, '.3f')} over "
            f"{s['n_anchors_with_positive']} anchors (chance {s['chance_probability']:.3f}){fn}.")
