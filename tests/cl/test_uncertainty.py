"""Intervals, untrustworthy figures and differences (cl.uncertainty), against scipy and formulas
written out here; and the evaluation and the command line that carry them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from cl.data import ImageSet
from cl.evaluation import _paper_split, evaluate_embeddings, summary

Z = 1.959963984540054  # the 97.5 % normal quantile


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The roots p of (k/n - p)^2 = Z^2 p (1 - p) / n, a quadratic a p^2 + b p + c = 0."""
    ph = k / n
    a = 1 + Z * Z / n
    b = -(2 * ph + Z * Z / n)
    c = ph * ph
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (6, 16), (16, 16), (0, 16), (5, 5), (23, 204), (1982, 2000),
                                 (9910, 10000), (1, 3)])
def test_wilson_matches_scipy_and_the_quadratic(k, n):
    from cl import uncertainty as u
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = u.wilson(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    hand = _wilson_by_hand(k, n)
    assert lo == pytest.approx(hand[0], abs=1e-12) and hi == pytest.approx(hand[1], abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_the_too_few_threshold_is_where_the_interval_reaches_a_tenth():
    from cl import uncertainty as u
    n = u.MIN_SCORED
    for m, wider in ((n - 1, True), (n, False)):
        lo, hi = _wilson_by_hand(m / 2, m)  # p = 0.5, the widest interval
        assert ((hi - lo) / 2 > 0.10) is wider
    assert n == 93


def test_the_issue_s_format():
    from cl import uncertainty as u
    assert u.fmt(10 / 16, 16) == "0.62 (0.39-0.82, 16 images)"
    ref = binomtest(1982, 2000).proportion_ci(method="wilson")
    assert u.fmt(0.991, 2000, digits=3) == f"0.991 ({ref.low:.3f}-{ref.high:.3f}, 2,000 images)"
    assert u.fmt(None, 16) == "-"


def _newcombe_by_hand(k1, n1, k2, n2):
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson_by_hand(k1, n1)
    l2, u2 = _wilson_by_hand(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def test_newcombe_difference_and_the_study_s_noise():
    from cl import uncertainty as u
    # Newcombe (1998), table II, example (a): 56/70 - 48/80 -> 0.0524 to 0.3339
    d = u.difference(56 / 70, 70, 48 / 80, 80)
    assert (round(d["low"], 4), round(d["high"], 4)) == (0.0524, 0.3339)
    for k1, n1, k2, n2 in ((1486, 2000, 1496, 2000), (62, 204, 66, 204), (9, 10, 3, 10)):
        d = u.difference(k1 / n1, n1, k2 / n2, n2)
        lo, hi = _newcombe_by_hand(k1, n1, k2, n2)
        assert d["low"] == pytest.approx(lo, abs=1e-12) and d["high"] == pytest.approx(hi, abs=1e-12)
    # the issue's two "decreases": -0.005 on 2,000 images and -0.020 on 204 are noise
    assert u.verdict(0.748, 0.743, 2000) == "within noise"
    assert u.verdict(0.3235, 0.3039, 204) == "within noise"
    assert u.verdict(0.651, 0.748, 2000) == "higher"
    assert u.verdict(0.91, 0.743, 2000) == "lower"


def _result(n_test, n_fit, n_classes, fit_class_min=None, knn_k=None):
    r = {"n_test": n_test, "n_fit": n_fit, "n_classes": n_classes, "linear_acc": 1.0, "top3_acc": 1.0, "knn_acc": 0.2}
    if fit_class_min is not None:
        r["fit_class_min"] = fit_class_min
    if knn_k is not None:
        r["knn_k"] = knn_k
    return r


def test_flags_say_why_a_figure_cannot_be_trusted():
    from cl import uncertainty as u
    # the issue's zip: 3 classes, 5 images scored, kNN-30 fitted on 19
    f = u.flags(_result(5, 19, 3, fit_class_min=6, knn_k=19))
    assert f["linear_acc"]["level"] == "warn" and "only 5 images" in f["linear_acc"]["why"]
    assert f["top3_acc"]["level"] == "hide" and "1 by construction" in f["top3_acc"]["why"]
    assert f["knn_acc"]["level"] == "warn" and "19 images" in f["knn_acc"]["why"]
    assert u.flags(_result(400, 1600, 4))["top3_acc"]["level"] == "warn"  # chance is 0.75
    small_class = u.flags(_result(400, 1600, 10, fit_class_min=12))
    assert set(small_class) == {"knn_acc"} and "only 12 fitted images" in small_class["knn_acc"]["why"]
    assert u.flags(_result(2000, 8000, 10)) == {}  # the shipped MNIST cards: nothing to flag
    assert u.flags(_result(204, 813, 10)) == {}  # CIFAR-10's 204 images: +-0.07 at worst
    assert "not shown" in u.figure_text(_result(5, 19, 3), "top3_acc")
    assert u.figure_text(_result(5, 19, 3), "linear_acc").endswith("[!]")


def _image_set(labels, n_classes):
    n = len(labels)
    return ImageSet("synthetic", "test", torch.zeros(n, 1, 4, 4, dtype=torch.uint8),
                    torch.as_tensor(labels, dtype=torch.long), [str(i) for i in range(n_classes)], "made in a test", n)


def test_evaluation_carries_its_intervals_and_flags_into_the_card_summary():
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 4
    emb = (np.eye(4)[labels] * 2 + rng.normal(size=(80, 4))).astype(np.float32)
    r = evaluate_embeddings(emb, _image_set(labels, 4), "paper")
    assert r["n_test"] == 16 and r["n_classes"] == 4 and r["fit_class_min"] == 16 and r["knn_k"] == 30
    for key in ("linear_acc", "top3_acc", "knn_acc"):
        k = round(r[key] * 16)
        ref = binomtest(k, 16).proportion_ci(method="wilson")
        assert (r["intervals"][key]["low"], r["intervals"][key]["high"]) == pytest.approx((ref.low, ref.high))
        assert r["intervals"][key]["n"] == 16 and r["intervals"][key]["correct"] == k
    # 16 images; 3 of 4; 16 per class < 30; 4 scored per class, so precision@10 is at most 3/10
    assert set(r["flags"]) == {"linear_acc", "top3_acc", "knn_acc", "precision_at_10"}
    assert r["precision_at_10_best"] == pytest.approx(0.3)
    s = summary(r)
    assert s["intervals"] == r["intervals"] and s["flags"] == r["flags"]
    json.dumps(s)  # a card stores it as it is


@pytest.mark.parametrize("n", [540, 1017, 2000, 10000, 333])
def test_the_paper_split_is_unchanged_for_sets_that_split_before(n):
    from sklearn.model_selection import train_test_split

    labels = np.random.default_rng(n).integers(0, 10, n)
    fit, score = _paper_split(labels, 0)
    ref_fit, ref_score = train_test_split(np.arange(n), test_size=0.2, random_state=0, stratify=labels)
    assert np.array_equal(fit, ref_fit) and np.array_equal(score, ref_score)


def test_a_tiny_three_class_test_split_is_evaluated_not_a_traceback():
    labels = np.array([0, 0, 1, 1, 2, 2])  # a 3-class folder of 30 images: its 20 % test split
    emb = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    r = evaluate_embeddings(emb, _image_set(labels, 3), "paper")
    assert r["n_test"] == 3 and sorted(labels[r["scored_indices"]]) == [0, 1, 2]
    assert r["flags"]["top3_acc"]["level"] == "hide"


def test_the_cli_trains_and_evaluates_a_tiny_folder(tmp_path, capsys):
    from PIL import Image

    from cl.cli import main

    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "fox"):
        (tmp_path / "set" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "set" / c / f"{i}.png")
    ckpt = str(tmp_path / "tiny.safetensors")
    data = f"folder:{tmp_path / 'set'}"
    assert main(["train", "--dataset", data, "--epochs", "1", "--threads", "1", "--out", ckpt]) == 0
    assert main(["evaluate", ckpt, "--dataset", data]) == 0
    out = capsys.readouterr().out
    assert "scored on 3 test images" in out and "top-3         not shown. With 3 classes" in out
    assert "linear probe  0." in out and "3 images) [!]" in out and "[!] Scored on only 3 images" in out
    assert main(["evaluate", ckpt, "--dataset", data, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["intervals"]["linear_acc"]["n"] == 3 and payload["flags"]["top3_acc"]["level"] == "hide"


def test_precision_at_10_on_small_classes_is_flagged_with_its_best_possible_value():
    """A perfect embedding (one direction per class) reaches exactly the best value; below 11
    images per class that is under 1, and the figure is flagged with it."""
    from cl.evaluation import best_precision_at_k, precision_at_k
    from cl.uncertainty import flags

    for counts in ([3, 3, 3], [2, 5, 12], [11, 11], [30, 40, 25]):
        labels = np.repeat(np.arange(len(counts)), counts)
        perfect = np.eye(len(counts), dtype=np.float32)[labels]
        best = best_precision_at_k(labels, 10)
        assert precision_at_k(perfect, labels, 10) == pytest.approx(best, abs=1e-9)
        k = min(10, len(labels) - 1)
        assert best == pytest.approx(np.mean([min(k, counts[c] - 1) / k for c in labels]))
        flagged = "precision_at_10" in flags({"n_test": len(labels), "precision_at_10_best": best})
        assert flagged == (min(counts) <= k)
