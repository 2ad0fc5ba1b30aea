"""Every loss in cl.losses against an independent reference (torch built-ins or explicit loops)."""

from __future__ import annotations

import math

import pytest
import torch

from cl.errors import ConfigError
from cl.losses import LOSSES, ContrastiveMarginLoss, NTXentLoss, PairwiseCosineLoss, SupConLoss, TripletLoss, build_loss

torch.set_num_threads(1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def on_pairs(loss, a, b, y):
    """``loss`` on the pairs ``(a[i], b[i], y[i])``, in the shared call shape (rows of ``[a; b]``)."""
    rows = torch.arange(len(a))
    return loss(torch.cat([a, b]), None, (rows, rows + len(a), y))


def on_triplets(loss, a, p, n):
    """``loss`` on the triplets ``(a[i], p[i], n[i])``, in the shared call shape (rows of ``[a; p; n]``)."""
    rows = torch.arange(len(a))
    return loss(torch.cat([a, p, n]), None, (rows, rows + len(a), rows + 2 * len(a)))


def _pairs(seed: int, n: int = 17, d: int = 9):
    g = _gen(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, d, generator=g, dtype=torch.float64)
    # make some pairs close so both branches of every hinge are exercised
    b[: n // 3] = a[: n // 3] + 0.05 * torch.randn(n // 3, d, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).double()
    return a, b, y


# ----------------------------------------------------------------------------- pairwise cosine
@pytest.mark.parametrize("margin", [0.0, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_cosine_matches_torch(margin, seed):
    a, b, y = _pairs(seed)
    ours = on_pairs(PairwiseCosineLoss(margin), a, b, y)
    ref = torch.nn.CosineEmbeddingLoss(margin=margin)(a, b, y)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_pairwise_cosine_all_positive_and_all_negative():
    a, b, _ = _pairs(5)
    for value in (1.0, -1.0):
        y = torch.full((a.shape[0],), value, dtype=torch.float64)
        torch.testing.assert_close(on_pairs(PairwiseCosineLoss(0.3), a, b, y),
                                   torch.nn.CosineEmbeddingLoss(margin=0.3)(a, b, y))


# ----------------------------------------------------------------------------- triplet
@pytest.mark.parametrize("margin", [1.0, 0.2, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_matches_torch(margin, seed):
    g = _gen(seed)
    a, p, n = (torch.randn(23, 8, generator=g, dtype=torch.float64) for _ in range(3))
    ours = on_triplets(TripletLoss(margin), a, p, n)
    ref = torch.nn.TripletMarginLoss(margin=margin, p=2)(a, p, n)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- Hadsell
def _hadsell_reference(a, b, y, margin):
    total = 0.0
    for i in range(a.shape[0]):
        d = math.sqrt(sum((float(a[i, k]) - float(b[i, k])) ** 2 for k in range(a.shape[1])))
        if float(y[i]) == 1:
            total += 0.5 * d * d
        else:
            total += 0.5 * max(0.0, margin - d) ** 2
    return total / a.shape[0]


@pytest.mark.parametrize("margin", [1.0, 2.5, 5.0])
@pytest.mark.parametrize("seed", [0, 3])
def test_contrastive_margin_matches_loop(margin, seed):
    a, b, y = _pairs(seed, n=15, d=4)
    ours = float(on_pairs(ContrastiveMarginLoss(margin), a, b, y))
    ref = _hadsell_reference(a, b, y, margin)
    # the implementation adds eps=1e-6 inside the distance (as torch.pairwise_distance does)
    assert ours == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_contrastive_margin_accepts_zero_for_dissimilar():
    a, b, y = _pairs(7, n=12, d=4)
    y01 = torch.where(y > 0, 1.0, 0.0).double()
    assert float(on_pairs(ContrastiveMarginLoss(2.0), a, b, y01)) == pytest.approx(_hadsell_reference(a, b, y, 2.0), rel=1e-4,
                                                                         abs=1e-5)


# ----------------------------------------------------------------------------- NT-Xent
def _ntxent_reference(z1, z2, tau):
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    z = [z[i] / z[i].norm() for i in range(2 * n)]
    total = 0.0
    for i in range(2 * n):
        j = i + n if i < n else i - n
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("tau", [0.5, 0.1, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ntxent_matches_double_loop(tau, seed):
    g = _gen(seed)
    z1 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    ours = float(NTXentLoss(tau)(torch.cat([z1, z2])))
    assert ours == pytest.approx(_ntxent_reference(z1, z2, tau), rel=1e-9)


def test_ntxent_is_scale_invariant():
    g = _gen(4)
    z1, z2 = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    torch.testing.assert_close(NTXentLoss(0.5)(torch.cat([z1, z2])), NTXentLoss(0.5)(torch.cat([3.0 * z1, 0.25 * z2])))


# ----------------------------------------------------------------------------- SupCon
def _supcon_reference(z, labels, tau):
    n = z.shape[0]
    z = [z[i] / z[i].norm() for i in range(n)]
    per_anchor = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and int(labels[p]) == int(labels[i])]
        if not positives:
            continue  # anchors without a positive are skipped
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
        s = sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in positives)
        per_anchor.append(-s / len(positives))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_supcon_matches_khosla_loop(tau, seed):
    g = _gen(seed)
    z = torch.randn(12, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (12,), generator=g)
    ours = float(SupConLoss(tau)(z, labels))
    assert ours == pytest.approx(_supcon_reference(z, labels, tau), rel=1e-9)


def test_supcon_skips_anchors_without_positive():
    g = _gen(11)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    # labels 5, 6 and 7 occur once: those anchors have no positive and must be skipped,
    # but they still appear in the other anchors' denominators
    labels = torch.tensor([0, 0, 1, 1, 1, 5, 6, 7])
    ours = SupConLoss(0.2)(z, labels)
    assert torch.isfinite(ours)
    assert float(ours) == pytest.approx(_supcon_reference(z, labels, 0.2), rel=1e-9)
    # including the singleton anchors as zero terms would give a different (smaller) value
    assert float(ours) != pytest.approx(_supcon_reference(z, labels, 0.2) * 5 / 8, rel=1e-6)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_supcon_equals_ntxent_with_unique_labels(tau):
    g = _gen(9)
    n = 9
    z1 = torch.randn(n, 5, generator=g, dtype=torch.float64)
    z2 = torch.randn(n, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(n)
    sup = SupConLoss(tau)(torch.cat([z1, z2]), torch.cat([labels, labels]))
    nt = NTXentLoss(tau)(torch.cat([z1, z2]))
    torch.testing.assert_close(sup, nt, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- gradients
def test_gradients_match_torch_reference():
    g = _gen(21)
    a0, p0, n0 = (torch.randn(10, 6, generator=g, dtype=torch.float64) for _ in range(3))
    grads = []
    for loss in (TripletLoss(1.0), torch.nn.TripletMarginLoss(margin=1.0, p=2)):
        a, p, n = (t.clone().requires_grad_(True) for t in (a0, p0, n0))
        (on_triplets(loss, a, p, n) if isinstance(loss, TripletLoss) else loss(a, p, n)).backward()
        grads.append((a.grad, p.grad, n.grad))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref)

    a0, b0, y = _pairs(22)
    grads = []
    for loss in (PairwiseCosineLoss(0.3), torch.nn.CosineEmbeddingLoss(margin=0.3)):
        a, b = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        (on_pairs(loss, a, b, y) if isinstance(loss, PairwiseCosineLoss) else loss(a, b, y)).backward()
        grads.append((a.grad, b.grad))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref)


def _supcon_reference_torch(z, labels, tau):
    """Differentiable loop version of the Khosla formula (for autograd comparison)."""
    n = z.shape[0]
    zn = z / z.norm(dim=1, keepdim=True)
    terms = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and int(labels[p]) == int(labels[i])]
        if not pos:
            continue
        others = torch.stack([zn[i] @ zn[a] / tau for a in range(n) if a != i])
        lse = torch.logsumexp(others, 0)
        terms.append(-torch.stack([zn[i] @ zn[p] / tau - lse for p in pos]).mean())
    return torch.stack(terms).mean()


def test_supcon_gradient_matches_loop_and_gradcheck():
    g = _gen(33)
    z0 = torch.randn(7, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    z = z0.clone().requires_grad_(True)
    SupConLoss(0.3)(z, labels).backward()
    zr = z0.clone().requires_grad_(True)
    _supcon_reference_torch(zr, labels, 0.3).backward()
    torch.testing.assert_close(z.grad, zr.grad)
    assert torch.isfinite(z.grad).all()
    # numerical gradients too (finite differences), for NT-Xent and Hadsell
    assert torch.autograd.gradcheck(lambda t: SupConLoss(0.3)(t, labels), (z0.clone().requires_grad_(True),))
    z1, z2 = (torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda u, v: NTXentLoss(0.5)(torch.cat([u, v])), (z1, z2))
    a, b, y = _pairs(34, n=8, d=3)
    assert torch.autograd.gradcheck(lambda u, v: on_pairs(ContrastiveMarginLoss(2.0), u, v, y),
                                    (a.requires_grad_(True), b.requires_grad_(True)))


# ----------------------------------------------------------------------------- factory
def test_build_loss_names_and_defaults():
    assert isinstance(build_loss("pairwise"), PairwiseCosineLoss) and build_loss("pairwise").margin == 0.0
    assert isinstance(build_loss("triplet"), TripletLoss) and build_loss("triplet").margin == 1.0
    assert build_loss("triplet", margin=0.5).margin == 0.5
    assert isinstance(build_loss("contrastive"), ContrastiveMarginLoss)
    assert isinstance(build_loss("ntxent"), NTXentLoss) and build_loss("ntxent").temperature == 0.5
    assert isinstance(build_loss("supcon"), SupConLoss) and build_loss("supcon", temperature=0.2).temperature == 0.2
    assert set(LOSSES) == {"pairwise", "triplet", "contrastive", "ntxent", "supcon"}
    with pytest.raises(ConfigError):
        build_loss("hinge")


def test_build_loss_takes_its_defaults_from_the_classes():
    import inspect

    from cl.losses import LOSS_CLASSES

    assert tuple(LOSS_CLASSES) == tuple(LOSSES)
    for name, cls in LOSS_CLASSES.items():
        built = build_loss(name)
        assert type(built) is cls
        for param in inspect.signature(cls).parameters.values():
            assert getattr(built, param.name) == param.default, (name, param.name)
    # an override reaches only the losses that take it
    assert build_loss("supcon", margin=3.0).temperature == 0.1
    assert build_loss("triplet", temperature=3.0).margin == 1.0


def test_every_loss_declares_what_its_batch_needs():
    from cl.losses import LOSS_CLASSES, NEEDS

    for name, cls in LOSS_CLASSES.items():
        assert cls.needs in NEEDS, name
