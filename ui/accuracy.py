"""Accuracies on the pages as far as they can be trusted (:mod:`cl.uncertainty`): the figure with
its 95 % interval and image count under it, not shown where it means nothing, one warning
saying why a figure is flagged."""

from __future__ import annotations

from cl.uncertainty import MIN_SCORED, fmt_range, half_width
from cl.uncertainty import flags as accuracy_flags


def metric(col, label: str, r: dict, key: str, help_text: str | None = None, n_classes: int | None = None) -> None:
    """One accuracy of result ``r`` in column ``col``: the value, and under it its 95 % interval and
    the number of images scored; for a figure that means nothing, "not shown" and why."""
    f = accuracy_flags(r, n_classes).get(key)
    if key not in r:
        col.metric(label, "-", help=help_text)
        return
    if f is not None and f["level"] == "hide":
        col.metric(label, "not shown", help=help_text)
        col.caption(f"Not shown: {f['why']}")
        return
    n = int(r.get("n_test") or 0)
    col.metric(label, f"{r[key]:.3f}", help=help_text)
    col.caption(f"95 %: {fmt_range(r[key], n)} · {n:,} images" + (" · :orange[flagged, see below]" if f else ""))


def warnings_text(results: list[dict], n_classes: int | None = None) -> str | None:
    """One paragraph with every distinct reason a shown figure of ``results`` is flagged, or None."""
    reasons = [f["why"] for r in results for f in accuracy_flags(r, n_classes).values() if f["level"] == "warn"]
    if not reasons:
        return None
    return "Hard to trust: " + " ".join(dict.fromkeys(reasons))


def knn_curve_caption(n: int | None, test_note: str) -> str:
    """What a per-epoch kNN curve rests on, and whether its wiggles can mean anything."""
    base = f"Scored on the paper split of {test_note}"
    if not n:
        return base + "."
    text = f"{base}: {n:,} images per point; the band is each point's 95 % interval."
    if n < MIN_SCORED:
        text += (f" :orange[On {n:,} images a point can move by ±{half_width(n):.2f} by chance alone, so the curve's "
                 "ups and downs say little.]")
    return text
