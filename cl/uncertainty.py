"""How far to trust an accuracy: its interval from the number of scored images, the figures that
cannot be trusted at all, and when a difference between two accuracies is more than noise.

An accuracy ``p = k / n`` from ``n`` scored images is a binomial proportion. Its 95 % interval is
**Wilson's score interval** (Wilson 1927; recommended over the textbook ``p +- z sqrt(p(1-p)/n)``
by Brown, Cai and DasGupta 2001: it never leaves [0, 1] and keeps its coverage at p near 0 or 1
and for small n)::

    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)
    [centre - half, centre + half],        z = 1.96 for 95 %

It is the interval of the *scoring*: it says how much the figure would move on another draw of
as many test images, not how much it would move with another seed of the training or the probe.

**Too few images.** :data:`MIN_SCORED` is the smallest n whose worst-case (p = 0.5) Wilson
interval is no wider than +-0.10 (93 images). Below it the interval is wider than the
differences the app compares (0.05 to 0.2 between the study's scenarios), so such a figure is
flagged. **Top-k** with k >= the number of classes is 1 by construction (every class is among
the k guesses) and is not shown; with k / classes >= 0.5 chance alone reaches k / classes and it
is flagged. **kNN-k** whose smallest fitted class has fewer than k images cannot find k
neighbours of that class: its vote leans to the larger classes (with k >= the images fitted, it
is the majority class for every image) and it is flagged.

**A difference** ``p1 - p2`` is called an effect only when Newcombe's hybrid score interval for
it (Newcombe 1998, method 10, built from the two Wilson intervals ``[l1, u1]``, ``[l2, u2]``)
excludes 0::

    low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
    high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)

It treats the two accuracies as independent. Two models scored on the *same* images are
positively correlated, which makes the true interval narrower: the test is conservative, it
calls fewer effects than a paired test (McNemar's) would, never more.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
MAX_HALF_WIDTH = 0.10  # the widest worst-case interval (+-) a figure may have without a flag
METHOD = "Wilson score interval, 95 %"
DIFFERENCE_METHOD = "Newcombe's hybrid score interval of the difference, 95 % (method 10)"
ACCURACY_KEYS = ("linear_acc", "top3_acc", "knn_acc")
TOP_K = 3
KNN_K = 30


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _score_interval(p: float, n: int, confidence: float) -> tuple[float, float]:
    z = _z(confidence)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # clamp the float rounding at the ends (p = 0 or 1 gives exactly 0 or 1 in exact arithmetic)
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval ``(low, high)`` of ``successes / n``; ``(nan, nan)`` for ``n = 0``."""
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    return _score_interval(successes / n, n, confidence)


def half_width(n: int, p: float = 0.5, confidence: float = CONFIDENCE) -> float:
    """Half the width of the Wilson interval of a proportion ``p`` on ``n`` images (the widest at p = 0.5)."""
    if n <= 0:
        return float("nan")
    lo, hi = _score_interval(p, n, confidence)
    return (hi - lo) / 2.0


def min_scored(max_half: float = MAX_HALF_WIDTH, confidence: float = CONFIDENCE) -> int:
    """The smallest ``n`` whose widest Wilson interval (at p = 0.5) is at most ``+-max_half``."""
    n = 1
    while half_width(n, 0.5, confidence) > max_half:
        n += 1
    return n


MIN_SCORED = min_scored()


def successes_of(accuracy: float, n: int) -> int:
    """The number of correct images behind an accuracy measured on ``n`` images."""
    return int(round(float(accuracy) * n))


def interval(accuracy: float, n: int) -> dict:
    """An accuracy on ``n`` images with its interval: ``{value, low, high, n, correct, method}``."""
    k = successes_of(accuracy, n)
    lo, hi = wilson(k, n)
    return {"value": float(accuracy), "low": lo, "high": hi, "n": int(n), "correct": k, "method": METHOD}


def fmt(accuracy: float | None, n: int | None, digits: int = 2) -> str:
    """``"0.62 (0.41-0.80, 16 images)"``; ``"-"`` without a figure."""
    if accuracy is None or n is None or not n or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return "-"
    lo, hi = wilson(successes_of(accuracy, n), n)
    return f"{accuracy:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f}, {n:,} images)"


def fmt_range(accuracy: float, n: int, digits: int = 2) -> str:
    """``"0.41-0.80"``: the interval alone."""
    lo, hi = wilson(successes_of(accuracy, n), n)
    return f"{lo:.{digits}f}-{hi:.{digits}f}"


# ------------------------------------------------------------------ figures that cannot be trusted
def flags(result: dict, n_classes: int | None = None) -> dict[str, dict]:
    """Per accuracy key of an evaluation result (or a card's summary of one), why it cannot be
    trusted: ``{key: {"level": "hide" | "warn", "why": sentence}}`` (a whole sentence, capitalised
    unless it starts with a name such as kNN-30); keys that are fine are absent.

    Uses ``n_test``, ``n_fit``, ``n_classes``, ``fit_class_min`` and ``knn_k`` where the result
    has them; an older card without the last two gets them estimated from a stratified split
    (``n_fit // n_classes`` images per class, ``k = min(30, n_fit)``)."""
    n = int(result.get("n_test") or 0)
    c = int(result.get("n_classes") or n_classes or len(result.get("classes") or []) or 0)
    n_fit = int(result.get("n_fit") or 0)
    out: dict[str, dict] = {}
    if 0 < n < MIN_SCORED:
        wide = half_width(n)
        for key in ACCURACY_KEYS:
            out[key] = {"level": "warn",
                        "why": f"Scored on only {n:,} images: its 95 % interval is up to +-{wide:.2f} wide "
                               f"(at least {MIN_SCORED} images are needed for +-{MAX_HALF_WIDTH:.2f})."}
    if c:
        if TOP_K >= c:
            out["top3_acc"] = {"level": "hide",
                               "why": f"With {c} classes the top-{TOP_K} guesses hold every class, so top-{TOP_K} "
                                      "accuracy is 1 by construction and says nothing."}
        elif TOP_K / c >= 0.5:
            out["top3_acc"] = {"level": "warn",
                               "why": f"With {c} classes, {TOP_K} random guesses already hold the true class "
                                      f"{TOP_K / c:.0%} of the time."}
    if n_fit:
        k = int(result.get("knn_k") or min(KNN_K, n_fit))
        smallest = result.get("fit_class_min")
        smallest = int(smallest) if smallest is not None else (n_fit // c if c else n_fit)
        if k >= n_fit:
            out["knn_acc"] = {"level": "warn",
                              "why": f"kNN-{KNN_K} fitted on only {n_fit:,} images: every vote counts all of them, "
                                     "so it predicts the most common class for every image."}
        elif smallest < k:
            out["knn_acc"] = {"level": "warn",
                              "why": f"kNN-{k} with a class of only {smallest:,} fitted images: a vote of {k} "
                                     "neighbours cannot be won by that class's own images, so it leans to the "
                                     "larger classes."}
    best = result.get("precision_at_10_best")
    if best is not None and best == best and best < 1 - 1e-9:  # (best == best: not NaN)
        out["precision_at_10"] = {"level": "warn",
                                  "why": f"Precision@10 among only {n:,} scored images: some classes have 10 or "
                                         f"fewer of them, so even a perfect model reaches at most {best:.3f}."}
    return out


def with_intervals(result: dict) -> dict:
    """``result`` plus ``intervals`` (per accuracy key, :func:`interval` on ``n_test``),
    ``flags`` (:func:`flags`) and ``interval_method``; the figures themselves are unchanged."""
    n = int(result.get("n_test") or 0)
    out = dict(result)
    out["intervals"] = {k: interval(result[k], n) for k in ACCURACY_KEYS if k in result and n}
    out["flags"] = flags(result)
    out["interval_method"] = METHOD
    return out


def figure_text(result: dict, key: str, digits: int = 3) -> str:
    """One accuracy as the CLI prints it: ``"0.375 (0.18-0.61, 16 images)"``, or the reason it is
    not shown, with a ``[!]`` mark when it is flagged."""
    f = flags(result).get(key)
    if f is not None and f["level"] == "hide":
        return "not shown. " + f["why"]
    text = fmt(result.get(key), int(result.get("n_test") or 0), digits=digits)
    return text + (" [!]" if f else "")


# ------------------------------------------------------------------ differences
def difference(p1: float, n1: int, p2: float, n2: int) -> dict:
    """``p1 - p2`` with Newcombe's interval (see the module docstring) and whether it is an effect
    (the interval excludes 0): ``{diff, low, high, effect, method}``."""
    k1, k2 = successes_of(p1, n1), successes_of(p2, n2)
    a, b = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = a - b
    low = d - math.sqrt((a - l1) ** 2 + (u2 - b) ** 2)
    high = d + math.sqrt((u1 - a) ** 2 + (b - l2) ** 2)
    return {"diff": d, "low": low, "high": high, "effect": bool(low > 0 or high < 0), "method": DIFFERENCE_METHOD}


def verdict(p_from: float, p_to: float, n: int, n_to: int | None = None) -> str:
    """``"higher"``, ``"lower"`` or ``"within noise"`` for the change ``p_from -> p_to``."""
    d = difference(p_to, n_to or n, p_from, n)
    if not d["effect"]:
        return "within noise"
    return "higher" if d["diff"] > 0 else "lower"
