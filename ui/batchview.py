"""The Batch page's cache and charts: one training batch (cl.batchview) drawn per loss family.

- ``views`` (NT-Xent, SupCon): the batch's cosine-similarity matrix, the images on its top and left
  edges, positives boxed, false negatives crossed; an anchor's softmax over the batch as bars.
- ``triplets`` (the study's triplets, batch-hard, semi-hard, random negatives): FaceNet's picture,
  every candidate triplet at (d(a,p), d(a,n) - d(a,p)) between the lines 0 and the margin, the ones
  the loss uses ringed.
- ``pairs`` (pairwise, Hadsell): one line per pair, anchor and other image, the term as a bar.

Every chart is tappable (a Vega point selection, ``nearest`` so that a finger finds it): the tapped
anchor's row is shown below it, no hover needed.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cl.batchview import KINDS, LossBatch, batch_from_checkpoint

from . import images as ui_images

KIND_COLORS = {"easy": "#2ca02c", "semi-hard": "#ff7f0e", "hard": "#d62728"}
ROLE_COLORS = {"positive": "#1f77b4", "false negative": "#d62728", "negative": "#bbbbbb"}
CELL = 21  # px per heat-map cell: 17 columns (16 anchors and the images) fit a phone's 360 px


@st.cache_data(max_entries=24, show_spinner="Building the batch...")
def loss_batch(path: str, cid: str, untrained: bool, loss: str | None, mining: str | None, negatives: str | None,
               seed: int, anchors: int, data_root: str) -> LossBatch:
    """One batch per (model, recipe, seed, size), for every visitor; ``cid`` makes a re-written
    file a new entry, ``data_root`` a new data folder."""
    return batch_from_checkpoint(path, untrained=untrained, loss=loss, mining=mining, negatives=negatives, seed=seed,
                                 anchors=anchors)


def row_urls(b: LossBatch) -> list[str]:
    return ui_images.data_urls(b.images, scale=1)


def anchors_of(b: LossBatch) -> np.ndarray:
    """The rows a visitor can tap as anchors, in order."""
    if b.family == "views":
        return np.arange(len(b.row_index))
    return np.unique(b.terms["a"])


def tapped(event, name: str, field: str) -> int | None:
    """The ``field`` of the point tapped in selection ``name`` of a chart event, if any."""
    if not event:
        return None
    sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    for item in sel.get(name, []) or []:
        if isinstance(item, dict) and field in item:
            return int(item[field])
    return None


def label_of(b: LossBatch, row: int) -> str:
    """The class name of row ``row``."""
    return b.classes[int(b.row_label[row])] if b.classes else str(int(b.row_label[row]))


# ----------------------------------------------------------------------------- NT-Xent / SupCon
def heatmap(b: LossBatch, urls: list[str], selected: int) -> alt.LayerChart:
    """The cosine-similarity matrix with the images on the top and left edges."""
    m = len(b.row_index)
    mat = b.matrix
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    i, j = i.ravel(), j.ravel()
    mark = np.where(mat["positive"][i, j], "positive", np.where(mat["false_negative"][i, j], "false negative", ""))
    cells = pd.DataFrame({"anchor": i, "col": j, "x": j + 1, "y": i + 1, "cosine": np.round(mat["cosine"][i, j], 3),
                          "probability": np.round(mat["probability"][i, j], 4), "mark": mark})
    cells = cells[cells.anchor != cells.col]
    edge = pd.DataFrame({"anchor": np.r_[np.arange(m), np.arange(m)], "x": np.r_[np.zeros(m), np.arange(m) + 1],
                         "y": np.r_[np.arange(m) + 1, np.zeros(m)], "image": urls + urls})
    side = CELL * (m + 1)
    x = alt.X("x:Q", scale=alt.Scale(domain=[-0.5, m + 0.5]), axis=None)
    y = alt.Y("y:Q", scale=alt.Scale(domain=[-0.5, m + 0.5], reverse=True), axis=None)
    pick = alt.selection_point(name="anchor", fields=["anchor"], on="click", nearest=True, empty=False)
    rect = alt.Chart(cells).mark_square(size=(CELL - 1) ** 2, opacity=1).encode(
        x=x, y=y, color=alt.Color("cosine:Q", scale=alt.Scale(scheme="blueorange", domain=[-1, 1]),
                                  legend=alt.Legend(title="cosine", orient="bottom", gradientLength=120)),
        tooltip=["anchor:Q", "col:Q", "cosine:Q", "probability:Q", "mark:N"]).add_params(pick)
    boxes = alt.Chart(cells[cells["mark"] == "positive"]).mark_square(
        size=(CELL - 3) ** 2, filled=False, stroke="black", strokeWidth=2).encode(x=x, y=y)
    crosses = alt.Chart(cells[cells["mark"] == "false negative"]).mark_point(
        shape="cross", size=60, filled=True, color="black", angle=45).encode(x=x, y=y)
    row = pd.DataFrame({"x": [0.5], "x2": [m + 0.5], "y": [selected + 0.5], "y2": [selected + 1.5]})
    frame = alt.Chart(row).mark_rect(filled=False, stroke="#d62728", strokeWidth=2).encode(
        x=alt.X("x:Q", scale=alt.Scale(domain=[-0.5, m + 0.5]), axis=None), x2="x2:Q",
        y=alt.Y("y:Q", scale=alt.Scale(domain=[-0.5, m + 0.5], reverse=True), axis=None), y2="y2:Q")
    imgs = alt.Chart(edge).mark_image(width=CELL - 1, height=CELL - 1).encode(x=x, y=y, url="image:N")
    # "pad": the plot keeps its size and the legend adds to it (the default "fit" would squash the rows)
    return alt.layer(rect, boxes, crosses, frame, imgs).properties(width=side, height=side,
                                                                    autosize=alt.AutoSizeParams(type="pad"))


def probability_bars(b: LossBatch, urls: list[str], anchor: int) -> alt.HConcatChart:
    """Anchor ``anchor``'s softmax over the rest of the batch, most probable first."""
    m = len(b.row_index)
    others = [k for k in range(m) if k != anchor]
    mat = b.matrix
    kind = ["positive" if mat["positive"][anchor, k] else "false negative" if mat["false_negative"][anchor, k]
            else "negative" for k in others]
    df = pd.DataFrame({"row": others, "image": [urls[k] for k in others], "kind": kind,
                       "probability": [float(mat["probability"][anchor, k]) for k in others],
                       "cosine": [float(mat["cosine"][anchor, k]) for k in others]})
    df = df.sort_values("probability", ascending=False).reset_index(drop=True)
    df["rank"] = np.arange(len(df))
    df["text"] = [f"{p:.0%}" if p >= 0.005 else "<1%" for p in df.probability]
    y = alt.Y("rank:O", axis=None)
    pics = alt.Chart(df).mark_image(width=20, height=20).encode(y=y, url="image:N").properties(width=22,
                                                                                              height=22 * len(df))
    bars = alt.Chart(df).mark_bar().encode(
        y=y, x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="softmax probability"),
        color=alt.Color("kind:N", scale=alt.Scale(domain=list(ROLE_COLORS), range=list(ROLE_COLORS.values())),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["row:Q", "kind:N", "probability:Q", "cosine:Q"])
    text = alt.Chart(df).mark_text(align="left", dx=3, fontSize=11).encode(y=y, x="probability:Q", text="text:N")
    return alt.hconcat(pics, (bars + text).properties(width=260, height=22 * len(df)), spacing=2)


# ----------------------------------------------------------------------------- triplets
def facenet(b: LossBatch, selected: int) -> alt.LayerChart:
    """FaceNet's picture: each candidate triplet at (d(a,p), d(a,n) - d(a,p)); lines at 0 and the margin."""
    cand, m = b.candidates, b.margin
    if cand and cand.get("listed") and cand["total"]:
        df = pd.DataFrame({"a": cand["a"], "d_ap": cand["d_ap"], "gap": cand["d_an"] - cand["d_ap"],
                           "kind": cand["kind"], "picked": cand["picked"]})
    else:
        df = pd.DataFrame({"a": [], "d_ap": [], "gap": [], "kind": [], "picked": []})
    t = b.terms
    picked = pd.DataFrame({"a": t["a"], "d_ap": t["d_ap"], "gap": t["d_an"] - t["d_ap"], "kind": t["kind"],
                           "false negative": np.where(t["false_negative"], "yes", "no")})
    df["mine"] = np.where(df["a"] == selected, "this anchor", "other anchors")
    picked["mine"] = np.where(picked["a"] == selected, "this anchor", "other anchors")
    lo = float(min(df["gap"].min() if len(df) else 0, picked["gap"].min(), -0.2 * m))
    hi = float(max(df["gap"].max() if len(df) else 0, picked["gap"].max(), 1.3 * m))
    yscale = alt.Scale(domain=[lo, hi], nice=False)
    color = alt.Color("kind:N", scale=alt.Scale(domain=list(KINDS), range=[KIND_COLORS[k] for k in KINDS]),
                      legend=alt.Legend(title=None, orient="bottom"))
    x = alt.X("d_ap:Q", title="d(a, p): anchor to positive")
    y = alt.Y("gap:Q", scale=yscale, title="d(a, n) - d(a, p)")
    pick = alt.selection_point(name="anchor", fields=["a"], on="click", nearest=True, empty=False)
    dots = alt.Chart(df).mark_circle(size=14).encode(
        x=x, y=y, color=color, opacity=alt.condition("datum.mine == 'this anchor'", alt.value(0.9), alt.value(0.25)),
        tooltip=["a:Q", "kind:N", "d_ap:Q", "gap:Q"])
    rings = alt.Chart(picked).mark_point(size=120, strokeWidth=2, filled=False).encode(
        x=x, y=y, color=color, shape=alt.Shape("false negative:N", scale=alt.Scale(domain=["no", "yes"],
                                                                                   range=["circle", "cross"]),
                                               legend=None),
        opacity=alt.condition("datum.mine == 'this anchor'", alt.value(1.0), alt.value(0.55)),
        tooltip=["a:Q", "kind:N", "d_ap:Q", "gap:Q", "false negative:N"]).add_params(pick)
    lines = pd.DataFrame({"gap": [0.0, m], "label": ["hard below", "easy above (zero loss)"]})
    rules = alt.Chart(lines).mark_rule(strokeDash=[4, 3], color="#555").encode(y=alt.Y("gap:Q", scale=yscale))
    words = alt.Chart(lines).mark_text(align="left", baseline="bottom", dx=2, dy=-2, fontSize=11, color="#333").encode(
        y=alt.Y("gap:Q", scale=yscale), x=alt.value(0), text="label:N")
    return alt.layer(dots, rings, rules, words).properties(height=320)


# ----------------------------------------------------------------------------- pairs
def pair_rows(b: LossBatch, urls: list[str], selected: int) -> alt.HConcatChart:
    """One line per pair: anchor image, other image, the pair's term as a bar, a tick when zero."""
    t = b.terms
    n = len(b.contributions)
    measure = "cosine" if "cosine" in t else "distance"
    df = pd.DataFrame({"pair": np.arange(n), "a": t["a"], "anchor": [urls[k] for k in t["a"]],
                       "other": [urls[k] for k in t["b"]],
                       "kind": np.where(t["similar"], "similar", "dissimilar"), "term": b.contributions,
                       measure: np.round(t[measure], 3)})
    df["text"] = [f"{'cos' if measure == 'cosine' else 'd'} {v:.2f} · {'✓ satisfied' if s else f'loss {c:.3f}'}"
                  for v, s, c in zip(df[measure], t["satisfied"], df["term"], strict=True)]
    df["mine"] = df["a"] == selected
    y = alt.Y("pair:O", axis=None)
    h = 26 * n
    pick = alt.selection_point(name="anchor", fields=["a"], on="click", empty=False)
    a_img = alt.Chart(df).mark_image(width=22, height=22).encode(y=y, url="anchor:N").add_params(pick).properties(
        width=24, height=h)
    o_img = alt.Chart(df).mark_image(width=22, height=22).encode(y=y, url="other:N").properties(width=24, height=h)
    top = max(float(df["term"].max()), 1e-6)
    bars = alt.Chart(df).mark_bar(height=18).encode(
        y=y, x=alt.X("term:Q", title="the pair's loss", scale=alt.Scale(domain=[0, top])),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["similar", "dissimilar"], range=["#1f77b4", "#ff7f0e"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        stroke=alt.condition("datum.mine", alt.value("#d62728"), alt.value(None)), strokeWidth=alt.value(2),
        tooltip=["pair:Q", "kind:N", f"{measure}:Q", "term:Q"])
    words = alt.Chart(df).mark_text(align="left", dx=2, fontSize=10, color="#222").encode(
        y=y, x=alt.value(2), text="text:N")
    return alt.hconcat(a_img, o_img, (bars + words).properties(width=250, height=h), spacing=2)
