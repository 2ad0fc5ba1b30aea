"""Pair/triplet samplers and online miners against brute-force definitions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from cl.samplers import class_balanced_batches, draw_negatives, mine_triplets, paper_anchors

torch.set_num_threads(1)


def _labels(seed=0, n=300, k=10):
    return np.random.default_rng(seed).integers(0, k, size=n)


# ----------------------------------------------------------------------------- negatives
@pytest.mark.parametrize("seed", range(25))
def test_label_aware_negative_never_shares_class(seed):
    labels = _labels(seed, n=200, k=int(2 + seed % 9))
    rng = np.random.default_rng(seed)
    anchors = paper_anchors(labels, 50, rng)
    neg = draw_negatives(labels, anchors, rng, "label-aware")
    assert neg.shape == anchors.shape
    assert neg.min() >= 0 and neg.max() < len(labels)
    assert not np.any(labels[neg] == labels[anchors])


def test_label_aware_negatives_cover_every_other_class():
    labels = np.repeat(np.arange(5), 40)
    rng = np.random.default_rng(1)
    anchors = np.flatnonzero(labels == 0).repeat(50)
    neg = draw_negatives(labels, anchors, rng, "label-aware")
    assert set(labels[neg]) == {1, 2, 3, 4}
    with pytest.raises(ValueError):
        draw_negatives(np.zeros(10, dtype=int), np.arange(10), rng, "label-aware")
    with pytest.raises(ValueError):
        draw_negatives(labels, anchors, rng, "nearest")


@pytest.mark.parametrize("seed", range(10))
def test_random_negatives_never_the_anchor_but_sometimes_same_class(seed):
    labels = np.repeat(np.arange(10), 30)
    rng = np.random.default_rng(seed)
    anchors = np.tile(np.arange(len(labels)), 5)
    neg = draw_negatives(labels, anchors, rng, "random")
    assert neg.min() >= 0 and neg.max() < len(labels)
    assert not np.any(neg == anchors)
    same = float(np.mean(labels[neg] == labels[anchors]))
    assert 0.05 < same < 0.15  # about (30 - 1) / 299 on 10 balanced classes


def test_random_negatives_reach_every_index():
    labels = np.repeat(np.arange(2), 3)  # 6 images
    rng = np.random.default_rng(0)
    anchors = np.zeros(3000, dtype=int)
    neg = draw_negatives(labels, anchors, rng, "random")
    counts = Counter(neg.tolist())
    assert set(counts) == {1, 2, 3, 4, 5}  # every other image, never the anchor
    assert min(counts.values()) > 450  # roughly uniform (600 expected each)


# ----------------------------------------------------------------------------- anchors
@pytest.mark.parametrize("cap", [1, 7, 30, 1000])
def test_paper_anchors_cap_per_class(cap):
    labels = _labels(3, n=400, k=10)
    anchors = paper_anchors(labels, cap, np.random.default_rng(0))
    assert len(np.unique(anchors)) == len(anchors)  # no repeats
    counts = Counter(labels[anchors].tolist())
    for c in np.unique(labels):
        assert counts[c] == min(cap, int((labels == c).sum()))


def test_paper_anchors_are_shuffled_and_seeded():
    labels = np.repeat(np.arange(4), 25)
    a = paper_anchors(labels, 20, np.random.default_rng(5))
    b = paper_anchors(labels, 20, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert not np.array_equal(np.sort(a), a)  # shuffled, not grouped by class


# ----------------------------------------------------------------------------- P x K batches
@pytest.mark.parametrize("batch_size,per_class", [(40, 4), (64, None), (20, 2), (12, 6)])
def test_class_balanced_batches_composition(batch_size, per_class):
    labels = np.repeat(np.arange(10), 37)
    np.random.default_rng(0).shuffle(labels)
    batches = class_balanced_batches(labels, batch_size, np.random.default_rng(1), per_class)
    k = per_class or max(2, batch_size // 10)
    n_classes = min(10, batch_size // k)
    assert batches
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == len(seen), "an image appears twice in one epoch"
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert set(counts.values()) == {k}, counts
        assert len(counts) <= n_classes
        assert len(batch) <= batch_size
    # most of the epoch is covered
    assert len(seen) >= 0.75 * len(labels)


def test_class_balanced_batches_full_batches_when_data_allow():
    labels = np.repeat(np.arange(8), 64)
    batches = class_balanced_batches(labels, 32, np.random.default_rng(2), per_class=4)
    assert all(len(b) == 32 for b in batches)
    assert sum(len(b) for b in batches) == len(labels)


# ----------------------------------------------------------------------------- miners
def _brute_batch_hard(emb, labels):
    out = []
    n = len(labels)
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        distance = np.linalg.norm(emb - emb[i], axis=1)
        out.append((i, max(pos, key=lambda j: distance[j]), min(neg, key=lambda j: distance[j])))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_batch_hard_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(24, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (24,), generator=g)
    labels[-1] = 9  # a singleton: no positive, must be skipped
    a, p, n = mine_triplets(emb, labels, "batch-hard")
    got = list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert got == _brute_batch_hard(emb.numpy(), labels.numpy())
    assert 23 not in a.tolist()


def test_batch_hard_skips_anchor_without_negative():
    emb = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    a, p, n = mine_triplets(emb, torch.zeros(4, dtype=torch.long), "batch-hard")
    assert len(a) == len(p) == len(n) == 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("margin", [0.3, 1.0])
def test_semi_hard_condition(seed, margin):
    g = torch.Generator().manual_seed(100 + seed)
    emb = torch.randn(30, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (30,), generator=g)
    a, p, n = mine_triplets(emb, labels, "semi-hard", margin=margin)
    d = torch.cdist(emb, emb).numpy()
    lab = labels.numpy()
    # every anchor-positive pair (with some negative) appears exactly once
    expected_pairs = {(i, j) for i in range(30) for j in range(30)
                      if i != j and lab[i] == lab[j] and (lab != lab[i]).any()}
    assert set(zip(a.tolist(), p.tolist(), strict=True)) == expected_pairs and len(a) == len(expected_pairs)
    n_semi = 0
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        assert lab[i] == lab[j] and i != j and lab[k] != lab[i]
        negs = [m for m in range(30) if lab[m] != lab[i]]
        semi = [m for m in negs if d[i, j] < d[i, m] < d[i, j] + margin]
        if semi:
            n_semi += 1
            assert d[i, j] < d[i, k] < d[i, j] + margin
            assert d[i, k] == pytest.approx(min(d[i, m] for m in semi))  # the closest semi-hard one
        else:  # fallback: the hardest negative
            assert d[i, k] == pytest.approx(min(d[i, m] for m in negs))
    assert n_semi > 0


def test_unknown_strategy():
    with pytest.raises(ValueError):
        mine_triplets(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), "easy")


def test_semi_hard_picks_the_lowest_index_among_equal_distances_as_argmin_does():
    # integer points on a line: many equal distances
    emb = torch.tensor([[0.0], [1.0], [2.0], [2.0], [3.0], [1.0], [0.0], [3.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1])
    a, p, n = mine_triplets(emb, labels, "semi-hard", margin=1.5)
    d = torch.cdist(emb, emb)
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        negs = [m for m in range(8) if labels[m] != labels[i]]
        semi = [m for m in negs if d[i, j] < d[i, m] < d[i, j] + 1.5]
        pool = semi or negs
        best = min(d[i, m] for m in pool)
        assert k == min(m for m in pool if d[i, m] == best)

