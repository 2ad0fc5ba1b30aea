"""Altair charts: the embedding scatter with image tooltips, the confusion matrix, curves."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

CORRECT_DOMAIN = ["correct", "wrong", "no prediction"]
CORRECT_RANGE = ["#2ca02c", "#d62728", "#bbbbbb"]


def scatter_frame(xy: np.ndarray, indices: np.ndarray, labels: np.ndarray, classes: list[str],
                  pred: np.ndarray | None, thumbs: list[str] | None) -> pd.DataFrame:
    """One row per point: x, y, test index, class, predicted, correct, image (data URL)."""
    idx = np.asarray(indices, dtype=np.int64)
    lab = np.asarray(labels)[idx]
    df = pd.DataFrame({"x": xy[:, 0].astype(float), "y": xy[:, 1].astype(float), "index": idx,
                       "class": [classes[k] for k in lab]})
    if pred is not None:
        p = np.asarray(pred)[idx]
        df["predicted"] = [classes[k] if k >= 0 else "none" for k in p]
        df["correct"] = np.where(p < 0, "no prediction", np.where(p == lab, "correct", "wrong"))
    if thumbs is not None:
        df["image"] = [thumbs[i] for i in idx]
    return df


def scatter(df: pd.DataFrame, color_by: str, classes: list[str], axis_title: str, height: int = 520,
            point_size: float | None = None, selectable: bool = True, title: str | None = None) -> alt.Chart:
    n = len(df)
    size = point_size or (60 if n <= 600 else 30 if n <= 3000 else 14)
    if color_by == "correct":
        color = alt.Color("correct:N", scale=alt.Scale(domain=CORRECT_DOMAIN, range=CORRECT_RANGE),
                          legend=alt.Legend(title="probe prediction"))
    else:
        domain = list(classes) + (["none"] if color_by == "predicted" else [])
        color = alt.Color(f"{color_by}:N", scale=alt.Scale(domain=domain, scheme="tableau10"),
                          legend=alt.Legend(title="predicted class" if color_by == "predicted" else "class",
                                            columns=1, symbolLimit=0))
    tooltip = [c for c in ("image", "class", "predicted", "correct", "index") if c in df.columns]
    chart = (alt.Chart(df, title=title) if title else alt.Chart(df)).mark_circle(size=size, opacity=0.8, stroke=None).encode(
        x=alt.X("x:Q", axis=alt.Axis(title=f"{axis_title} 1", labels=False, ticks=False, grid=False)),
        y=alt.Y("y:Q", axis=alt.Axis(title=f"{axis_title} 2", labels=False, ticks=False, grid=False)),
        color=color,
        tooltip=tooltip,
    ).properties(height=height)
    if selectable:
        brush = alt.selection_interval(name="brush", encodings=["x", "y"])
        pick = alt.selection_point(name="pick", fields=["index"], on="click", empty=False)
        chart = chart.add_params(brush, pick).encode(
            opacity=alt.condition(brush, alt.value(0.85), alt.value(0.2)),
            size=alt.condition(pick, alt.value(size * 4), alt.value(size)))
    return chart


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
        x=alt.X("step:Q", title="training step", axis=alt.Axis(format="d", tickMinStep=1)), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        tooltip=["step", "epoch", alt.Tooltip("loss:Q", format=".4f")])
    if len(df) >= 10:
        smooth = alt.Chart(df).transform_window(
            avg="mean(loss)", frame=[-10, 10]).mark_line(color="#d62728", strokeWidth=2).encode(x="step:Q", y="avg:Q")
        return (line + smooth).properties(height=260)
    return line.properties(height=260)


def epoch_metric(history: list[dict], field: str, title: str, y_title: str) -> alt.Chart:
    df = pd.DataFrame([h for h in history if field in h])
    return alt.Chart(df, title=title).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y(f"{field}:Q", title=y_title, scale=alt.Scale(domain=[0, 1])),
        tooltip=["epoch", alt.Tooltip(f"{field}:Q", format=".3f")]).properties(height=260)


def per_class(classes: list[str], values: list[dict], title: str) -> alt.Chart:
    """values: rows of {class, protocol, accuracy}."""
    df = pd.DataFrame(values)
    return alt.Chart(df, title=title).mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy"),
        y=alt.Y("class:N", sort=list(classes), title=None, axis=alt.Axis(labelOverlap=False)),
        color=alt.Color("protocol:N", legend=alt.Legend(title="protocol")),
        yOffset="protocol:N",
        tooltip=["class", "protocol", alt.Tooltip("accuracy:Q", format=".3f"), "n"],
    ).properties(height=max(260, 40 * len(classes)))
