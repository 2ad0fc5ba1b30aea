"""Altair charts: the embedding scatter with image tooltips (or images as points), where an
image's augmented views land, the confusion matrix, curves."""

from __future__ import annotations

import math
import re

import altair as alt
import numpy as np
import pandas as pd

CORRECT_DOMAIN = ["correct", "wrong", "no prediction"]
CORRECT_RANGE = ["#2ca02c", "#d62728", "#bbbbbb"]
_THUMB_URL = re.compile(r"^(.*/)(\d+)\.png$")


def _rounded(v: np.ndarray) -> np.ndarray:
    """Coordinates to ~1/10,000 of their span: the chart cannot show more, and the spec's text
    (what every visitor downloads) is a third shorter."""
    span = float(np.ptp(v)) if len(v) else 0.0
    decimals = max(0, 4 - math.floor(math.log10(span))) if span > 0 else 4
    return np.round(v.astype(float), decimals)


def scatter_frame(xy: np.ndarray, indices: np.ndarray, labels: np.ndarray, classes: list[str],
                  pred: np.ndarray | None, thumbs: list[str] | None, kept: np.ndarray | None = None,
                  origins: list[str] | None = None) -> pd.DataFrame:
    """One row per point: x, y, test index, class, predicted, correct, its thumbnail, and
    (``kept``, in the points' order) the share of its true neighbours the map keeps, and
    (``origins``, in the points' order) where each image came from (its file).

    Thumbnails served as files of one folder (:func:`ui.images.thumbnail_urls`) become a
    ``thumb`` number and the folder's URL in ``df.attrs["thumb_base"]``; the chart builds each
    URL in the browser, so the spec carries a few digits per point instead of a URL. Any other
    URL (a data URL) is kept in an ``image`` column."""
    idx = np.asarray(indices, dtype=np.int64)
    lab = np.asarray(labels)[idx]
    df = pd.DataFrame({"x": _rounded(xy[:, 0]), "y": _rounded(xy[:, 1]), "index": idx,
                       "class": [classes[k] for k in lab]})
    if pred is not None:
        p = np.asarray(pred)[idx]
        df["predicted"] = [classes[k] if k >= 0 else "none" for k in p]
        df["correct"] = np.where(p < 0, "no prediction", np.where(p == lab, "correct", "wrong"))
    if kept is not None:
        df["kept"] = np.round(np.asarray(kept, dtype=float), 2)
    if origins is not None:
        df["file"] = list(origins)
    if thumbs is not None:
        urls = [thumbs[i] for i in idx]
        matches = [_THUMB_URL.match(u) if isinstance(u, str) else None for u in urls]
        bases = {m.group(1) for m in matches if m}
        if len(urls) and all(matches) and len(bases) == 1:
            df["thumb"] = [int(m.group(2)) for m in matches]
            df.attrs["thumb_base"] = bases.pop()
        else:
            df["image"] = urls
    return df


def with_point_images(df: pd.DataFrame, urls: list[str]) -> pd.DataFrame:
    """The frame with each row's image given inline (``urls`` in row order), as the points'
    image marks and tooltips use it."""
    out = df.drop(columns=[c for c in ("thumb", "image") if c in df.columns])
    out.attrs = {}
    out["image"] = list(urls)
    return out


def _with_image_field(chart: alt.Chart, df: pd.DataFrame) -> alt.Chart:
    base = df.attrs.get("thumb_base")
    if base and "thumb" in df.columns:
        return chart.transform_calculate(image=f"{base!r} + datum.thumb + '.png'")
    return chart


def _color(color_by: str, classes: list[str]) -> alt.Color:
    if color_by == "kept":
        return alt.Color("kept:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]),
                         legend=alt.Legend(title="neighbours kept", format=".0%"))
    if color_by == "correct":
        return alt.Color("correct:N", scale=alt.Scale(domain=CORRECT_DOMAIN, range=CORRECT_RANGE),
                         legend=alt.Legend(title="probe prediction"))
    domain = list(classes) + (["none"] if color_by == "predicted" else [])
    return alt.Color(f"{color_by}:N", scale=alt.Scale(domain=domain, scheme="tableau10"),
                     legend=alt.Legend(title="predicted class" if color_by == "predicted" else "class",
                                       columns=1, symbolLimit=0))


def image_side(n: int) -> int:
    """Pixel side of each thumbnail when images are the points: large for a few hundred, small
    enough at 2,000+ that the map stays readable."""
    return 28 if n <= 300 else 20 if n <= 1000 else 15 if n <= 3000 else 10


def scatter(df: pd.DataFrame, color_by: str, classes: list[str], axis_title: str, height: int = 520,
            point_size: float | None = None, selectable: bool = True, title: str | None = None,
            as_images: bool = False) -> alt.Chart:
    """The map. ``as_images``: each point drawn as its thumbnail (a Vega image mark) instead of
    a dot; needs thumbnails in ``df``."""
    n = len(df)
    size = point_size or (60 if n <= 600 else 30 if n <= 3000 else 14)
    has_image = "image" in df.columns or "thumb" in df.columns
    tooltip = [c for c in ("image", "file", "class", "predicted", "correct", "kept", "index")
               if c in df.columns or (c == "image" and has_image)]
    tooltip = [alt.Tooltip("kept:Q", title="neighbours kept", format=".0%") if c == "kept"
               else alt.Tooltip(f"{c}:{'Q' if c == 'index' else 'N'}") for c in tooltip]
    base = alt.Chart(df, title=title) if title else alt.Chart(df)
    base = _with_image_field(base, df)
    xenc = alt.X("x:Q", axis=alt.Axis(title=f"{axis_title} 1", labels=False, ticks=False, grid=False))
    yenc = alt.Y("y:Q", axis=alt.Axis(title=f"{axis_title} 2", labels=False, ticks=False, grid=False))
    if as_images and has_image:
        side = image_side(n)
        chart = base.mark_image(width=side, height=side).encode(x=xenc, y=yenc, url="image:N", tooltip=tooltip)
    else:
        chart = base.mark_circle(size=size, opacity=0.8, stroke=None).encode(
            x=xenc, y=yenc, color=_color(color_by, classes), tooltip=tooltip)
    chart = chart.properties(height=height)
    if selectable:
        brush = alt.selection_interval(name="brush", encodings=["x", "y"])
        # nearest: a tap picks the closest point (a finger is wider than a 3-pixel dot, and touch has no hover)
        pick = alt.selection_point(name="pick", fields=["index"], on="click", empty=False, nearest=True)
        chart = chart.add_params(brush, pick).encode(opacity=alt.condition(brush, alt.value(0.85), alt.value(0.2)))
        if not (as_images and has_image):
            chart = chart.encode(size=alt.condition(pick, alt.value(size * 4), alt.value(size)))
    return chart


def views_map(df: pd.DataFrame, original: tuple[float, float], views_xy: np.ndarray, view_urls: list[str],
              original_url: str, classes: list[str], axis_title: str, title: str, height: int = 520) -> alt.LayerChart:
    """The map faded, and one image's augmented views drawn as thumbnails at their positions,
    each joined to the original by a line."""
    ox, oy = float(original[0]), float(original[1])
    views = pd.DataFrame({"x": views_xy[:, 0].astype(float), "y": views_xy[:, 1].astype(float),
                          "x0": ox, "y0": oy, "view": np.arange(len(views_xy)), "image": view_urls})
    orig = pd.DataFrame({"x": [ox], "y": [oy], "image": [original_url]})
    xenc = alt.X("x:Q", axis=alt.Axis(title=f"{axis_title} 1", labels=False, ticks=False, grid=False))
    yenc = alt.Y("y:Q", axis=alt.Axis(title=f"{axis_title} 2", labels=False, ticks=False, grid=False))
    df = df[[c for c in ("x", "y", "class", "index") if c in df.columns]]  # no thumbnails: the map is only context
    points = alt.Chart(df, title=title).mark_circle(size=18, opacity=0.35, stroke=None).encode(
        x=xenc, y=yenc, color=_color("class", classes), tooltip=["class:N", "index:Q"])
    lines = alt.Chart(views).mark_rule(color="#1d2433", strokeWidth=1.2, opacity=0.7).encode(
        x="x0:Q", y="y0:Q", x2="x:Q", y2="y:Q")
    side = 30
    frames = alt.Chart(views).mark_square(size=(side + 4) ** 2, color="white", stroke="#1d2433", strokeWidth=1,
                                          opacity=1).encode(x="x:Q", y="y:Q")
    thumbs = alt.Chart(views).mark_image(width=side, height=side).encode(
        x="x:Q", y="y:Q", url="image:N", tooltip=[alt.Tooltip("image:N"), alt.Tooltip("view:Q", title="view")])
    oframe = alt.Chart(orig).mark_square(size=(side + 14) ** 2, color="white", stroke="#d62728", strokeWidth=3,
                                         opacity=1).encode(x="x:Q", y="y:Q")
    othumb = alt.Chart(orig).mark_image(width=side + 8, height=side + 8).encode(
        x="x:Q", y="y:Q", url="image:N", tooltip=[alt.Tooltip("image:N")])
    return alt.layer(points, lines, frames, thumbs, oframe, othumb).properties(height=height)


def selected_indices(event, df: pd.DataFrame) -> np.ndarray:
    """Test indices chosen in the scatter (a click, or a drag rectangle)."""
    if not event:
        return np.zeros(0, dtype=np.int64)
    sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    chosen: list[int] = []
    for item in sel.get("pick", []) or []:
        if isinstance(item, dict) and "index" in item:
            chosen.append(int(item["index"]))
    brush = sel.get("brush") or {}
    if isinstance(brush, dict) and "x" in brush and "y" in brush:
        (x0, x1), (y0, y1) = sorted(brush["x"]), sorted(brush["y"])
        inside = df[(df.x >= x0) & (df.x <= x1) & (df.y >= y0) & (df.y <= y1)]
        chosen.extend(int(i) for i in inside["index"])
    return np.array(list(dict.fromkeys(chosen)), dtype=np.int64)


def confusion(cm: list[list[int]], classes: list[str], title: str) -> alt.LayerChart:
    rows = []
    for t, row in enumerate(cm):
        total = sum(row)
        for p, count in enumerate(row):
            rows.append({"true": classes[t], "pred": classes[p], "count": int(count),
                         "share": (count / total) if total else 0.0})
    df = pd.DataFrame(rows)
    cell = alt.selection_point(name="cell", fields=["true", "pred"], on="click")
    base = alt.Chart(df, title=title).encode(
        x=alt.X("pred:N", sort=list(classes), title="predicted class", axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("true:N", sort=list(classes), title="true class"),
    )
    rect = base.mark_rect(stroke="white").encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), legend=alt.Legend(title="row share")),
        tooltip=[alt.Tooltip("true:N", title="true"), alt.Tooltip("pred:N", title="predicted"),
                 alt.Tooltip("count:Q", title="images"), alt.Tooltip("share:Q", title="share of row", format=".1%")],
        opacity=alt.condition(cell, alt.value(1.0), alt.value(0.75)),
    ).add_params(cell)
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q"),
        color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("#222")),
    )
    side = max(320, 34 * len(classes))
    return (rect + text).properties(width=side, height=side)


def selected_cell(event) -> tuple[str, str] | None:
    if not event:
        return None
    sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    cells = sel.get("cell") or []
    if cells and isinstance(cells[0], dict) and "true" in cells[0] and "pred" in cells[0]:
        return str(cells[0]["true"]), str(cells[0]["pred"])
    return None


def loss_curve(losses: list, title: str) -> alt.Chart:
    df = pd.DataFrame(losses, columns=["step", "epoch", "loss"])
    line = alt.Chart(df, title=title).mark_line(strokeWidth=1.2, opacity=0.6).encode(
        x=alt.X("step:Q", title="training step", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        tooltip=["step", "epoch", alt.Tooltip("loss:Q", format=".4f")])
    if len(df) >= 10:
        smooth = alt.Chart(df).transform_window(
            avg="mean(loss)", frame=[-10, 10]).mark_line(color="#d62728", strokeWidth=2).encode(x="step:Q", y="avg:Q")
        return (line + smooth).properties(height=260)
    return line.properties(height=260)


def epoch_metric(history: list[dict], field: str, title: str, y_title: str, n_scored: int | None = None) -> alt.Chart:
    """One accuracy per epoch; with ``n_scored`` (the images each is scored on) a band of each
    point's 95 % Wilson interval, so a wiggle inside it reads as the noise it is."""
    from cl.uncertainty import wilson

    df = pd.DataFrame([h for h in history if field in h])
    x = alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1))
    tooltip = [alt.Tooltip("epoch:Q", format="d"), alt.Tooltip(f"{field}:Q", format=".3f")]
    line = alt.Chart(df).mark_line(point=True).encode(
        x=x, y=alt.Y(f"{field}:Q", title=y_title, scale=alt.Scale(domain=[0, 1])), tooltip=tooltip)
    if not n_scored or df.empty:
        return line.properties(height=260, title=title)
    bounds = [wilson(round(a * n_scored), n_scored) for a in df[field]]
    df["low"], df["high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    band = alt.Chart(df).mark_area(opacity=0.2, color="#4c78a8").encode(
        x=x, y="low:Q", y2="high:Q", tooltip=tooltip + [alt.Tooltip("low:Q", title="95 % from", format=".2f"),
                                                         alt.Tooltip("high:Q", title="to", format=".2f")])
    return alt.layer(band, line).properties(height=260, title=title)  # on the layer: a child's title is not drawn


def per_class(classes: list[str], values: list[dict], title: str) -> alt.Chart | alt.LayerChart:
    """values: rows of {class, protocol, accuracy, n} and, optionally, the interval {low, high}
    (drawn as a black line across each bar)."""
    df = pd.DataFrame(values)
    y = alt.Y("class:N", sort=list(classes), title=None, axis=alt.Axis(labelOverlap=False))
    tooltip = ["class", "protocol", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("n:Q", title="images")]
    has_interval = {"low", "high"} <= set(df.columns)
    if has_interval:
        tooltip += [alt.Tooltip("low:Q", title="95 % from", format=".2f"), alt.Tooltip("high:Q", title="to", format=".2f")]
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy"), y=y,
        color=alt.Color("protocol:N", legend=alt.Legend(title="protocol")), yOffset="protocol:N", tooltip=tooltip)
    height = max(260, 40 * len(classes))
    if not has_interval:
        return bars.properties(height=height, title=title)
    whiskers = alt.Chart(df).mark_rule(color="#222", strokeWidth=1.5).encode(
        x="low:Q", x2="high:Q", y=y, yOffset="protocol:N", tooltip=tooltip)
    return alt.layer(bars, whiskers).properties(height=height, title=title)


def agreement_map(frame: pd.DataFrame, title: str) -> alt.Chart:
    """One model's map (x, y) coloured by ``agreement``: the share of each image's neighbours
    another model keeps (0 to 1)."""
    axis = alt.Axis(labels=False, ticks=False, grid=False, title=None)
    return alt.Chart(frame, title=title).mark_circle(size=18).encode(
        x=alt.X("x:Q", axis=axis), y=alt.Y("y:Q", axis=axis),
        color=alt.Color("agreement:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]), title="shared"),
        tooltip=["index", "class", alt.Tooltip("agreement:Q", format=".1f")]).properties(height=420)


OTHER_POINTS = "other test images"  # picked_map's name for the points not picked


def picked_map(frame: pd.DataFrame, picked: str, title: str, height: int = 320) -> alt.Chart:
    """A map (x, y) with the rows whose ``picked`` column equals ``picked`` drawn large and red
    on top, every other point (``picked`` = :data:`OTHER_POINTS`) small and grey."""
    axis = alt.Axis(labels=False, ticks=False, grid=False, title=None)
    others = OTHER_POINTS
    return alt.Chart(frame, title=title).mark_circle().encode(
        x=alt.X("x:Q", axis=axis), y=alt.Y("y:Q", axis=axis),
        color=alt.Color("picked:N", scale=alt.Scale(domain=[picked, others], range=["#e03131", "#d0d5dd"]),
                        legend=alt.Legend(orient="bottom", title=None)),
        size=alt.condition(alt.datum.picked == others, alt.value(12), alt.value(60)),
        order=alt.Order("picked:N", sort="descending"),
        tooltip=["index", "class"]).properties(height=height)
