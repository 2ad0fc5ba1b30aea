"""The shape measures (:mod:`cl.measures`) in the app: read from a card, or computed once per
model on a sample of the test split; and their charts (the alignment-uniformity plane, the
singular-value spectrum, the cosine histograms)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cl.checkpoints import Card, as_card
from cl.measures import COLLAPSE_RANKME, COLLAPSE_RULE, COLLAPSE_UNIFORMITY, histogram_edges
from cl.measures import is_collapsed as _is_collapsed

KIND_NAMES = {"positive": "views of one image", "same_class": "same class", "other": "different classes"}
KIND_COLORS = ["#2ca02c", "#1f77b4", "#d62728"]


def from_card(card: Card | dict, dataset: str) -> dict | None:
    """The card's measures when they were computed on ``dataset``'s test split."""
    m = as_card(card).measures
    if m is not None and (m.get("data") or {}).get("dataset") == dataset and "uniformity" in m:
        return m
    return None


@st.cache_data(max_entries=16, show_spinner=False)
def computed(path: str, cid: str, dataset: str, augmentation: str) -> dict:
    """:func:`cl.measures.measure` on a seeded random 2,000 (at most) of ``dataset``'s test split,
    once per model for every session."""
    from cl.measures import measures_for_card

    from . import cache

    net, _card = cache.model(path, cid)
    return measures_for_card(net, cache.load_data(dataset, "test"), augmentation)


def for_model(entry, dataset: str) -> dict:
    """The card's measures, else computed now (cached)."""
    m = from_card(entry.typed_card, dataset)
    if m is not None:
        return m
    return computed(entry.path, entry.cid, dataset, entry.config.get("augmentation") or "none")


def data_line(m: dict) -> str:
    d = m.get("data") or {}
    sample = "" if d.get("sample", "all") == "all" else f", {d['sample']}"
    return (f"{d.get('n_images', 0):,} {d.get('dataset', '?')} {d.get('split', 'test')} images{sample}; "
            f"two views of each by the {m.get('augmentation', '?')} augmentation, seed {m.get('seed', 0)}")


def is_collapsed(m: dict) -> bool:
    """The library's one definition (:func:`cl.measures.collapse`): uniformity and effective rank."""
    return _is_collapsed(m)


COLLAPSE_TEXT = f"collapsed: {COLLAPSE_RULE}"


def loss_label(config: dict) -> str:
    loss = config.get("loss", "?")
    if config.get("mining") not in (None, "none"):
        loss += f" ({config['mining']})"
    if config.get("negatives") == "random":
        loss += " (random negatives)"
    return loss


def plane_frame(entries: list, highlight: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """One row per model whose card carries measures (those whose path is in ``highlight`` marked
    ``chosen``); and the names of those that do not."""
    rows, missing = [], []
    for e in entries:
        m = e.typed_card.measures
        if m is None or m.get("alignment") is None or m.get("uniformity") is None:
            missing.append(e.name)
            continue
        d = m.get("data") or {}
        rows.append({"model": e.name, "loss": loss_label(e.config), "data set": e.dataset,
                     "augmentation": m.get("augmentation"), "alignment": float(m["alignment"]),
                     "uniformity": float(m["uniformity"]), "RankMe": float(m.get("rankme") or 0.0),
                     "d": m.get("embedding_dim"), "images": int(d.get("n_images", 0)),
                     "state": "collapsed" if is_collapsed(m) else "spread",
                     "label": (f"{e.name} (collapsed)" if is_collapsed(m) else e.name) if (is_collapsed(m) or e.path in highlight)
                              else "",
                     "chosen": e.path in highlight})
    return pd.DataFrame(rows), missing


def plane(df: pd.DataFrame, height: int = 440) -> alt.LayerChart:
    """Wang & Isola's plane: uniformity across, alignment up; lower-left is better on both."""
    y = alt.Y("alignment:Q", scale=alt.Scale(domainMin=0), axis=alt.Axis(title="alignment (lower = views closer)"))
    tooltip = ["model:N", "data set:N", "loss:N", "augmentation:N", alt.Tooltip("alignment:Q", format=".3f"),
               alt.Tooltip("uniformity:Q", format=".3f"), alt.Tooltip("RankMe:Q", format=".1f"), "d:Q",
               alt.Tooltip("images:Q", title="test images measured", format=",")]
    lo = min(-2.6, float(df["uniformity"].min()) - 0.2) if len(df) else -4.0
    x = alt.X("uniformity:Q", scale=alt.Scale(domain=[lo, 0.1], nice=False),
              axis=alt.Axis(title="uniformity (lower = spread more evenly; 0 = collapsed)"))
    # names of models that sit on (nearly) one spot are stacked upwards instead of printed over each other
    step = 0.06 * max(float(df["alignment"].max()) if len(df) else 1.0, 0.2)
    named = df[df["label"] != ""].sort_values(["uniformity", "alignment"]).copy() if len(df) else df
    if len(named):
        spot = (named["uniformity"].round(1).astype(str) + "," + named["alignment"].round(1).astype(str))
        named["alignment"] = named["alignment"] + step * spot.groupby(spot).cumcount()  # where the name is written
    base = alt.Chart(df)
    points = base.mark_point(filled=True, size=110, opacity=0.85).encode(
        x=x, y=y, color=alt.Color("loss:N", legend=alt.Legend(title="loss", orient="bottom", columns=3)),
        shape=alt.Shape("data set:N", legend=alt.Legend(title="data set", orient="bottom")), tooltip=tooltip)
    rings = base.transform_filter("datum.state == 'collapsed' || datum.chosen").mark_point(
        size=420, strokeWidth=2.5, color="#111111", filled=False).encode(x=x, y=y, tooltip=tooltip)
    labels = alt.Chart(named).mark_text(align="right", dx=-14, fontSize=11).encode(
        x=x, y=y, text="label:N")
    collapse = alt.Chart(pd.DataFrame({"uniformity": [0.0]})).mark_rule(strokeDash=[4, 3], color="#888").encode(x="uniformity:Q")
    return alt.layer(collapse, points, rings, labels).properties(height=height)


def spectrum(m: dict, title: str, height: int = 240) -> alt.Chart:
    """Each direction's share of the singular values, s_k / sum(s), largest first."""
    s = np.asarray(m.get("singular_values") or [], dtype=float)
    share = s / s.sum() if s.sum() > 0 else s
    df = pd.DataFrame({"direction": np.arange(1, len(s) + 1), "share": share, "singular value": s})
    return alt.Chart(df, title=title).mark_bar(color="#4c78a8").encode(
        x=alt.X("direction:O", axis=alt.Axis(title="direction k (largest singular value first)", labelAngle=0,
                                             values=[k for k in range(1, len(s) + 1) if k == 1 or k % 8 == 0])),
        y=alt.Y("share:Q", axis=alt.Axis(title="share s_k / sum(s)", format="%")),
        tooltip=["direction:O", alt.Tooltip("share:Q", format=".2%"), alt.Tooltip("singular value:Q", format=".3g")],
    ).properties(height=height)


def histograms_frame(m: dict) -> pd.DataFrame:
    h = m.get("histograms") or {}
    bins = int(h.get("bins") or 0)
    if not bins:
        return pd.DataFrame(columns=["lo", "hi", "kind", "share", "pairs"])
    edges = histogram_edges(bins)
    rows = []
    for kind in ("positive", "same_class", "other"):
        counts = np.asarray(h.get(kind) or [], dtype=float)
        if len(counts) != bins or counts.sum() == 0:
            continue
        share = counts / counts.sum()  # each kind as a share of its own pairs: their numbers differ 1,000-fold
        rows += [{"lo": float(a), "hi": float(b), "kind": KIND_NAMES[kind], "share": float(p), "pairs": int(n)}
                 for a, b, p, n in zip(edges[:-1], edges[1:], share, counts, strict=True)]
    return pd.DataFrame(rows)


def histograms(m: dict, title: str, height: int = 300) -> alt.Chart:
    """The three cosine-similarity histograms, overlaid, each normalised to its own number of pairs."""
    df = histograms_frame(m)
    return alt.Chart(df, title=title).mark_bar(opacity=0.55, binSpacing=0).encode(
        x=alt.X("lo:Q", scale=alt.Scale(domain=[-1, 1]), axis=alt.Axis(title="cosine similarity")),
        x2="hi:Q",
        # square-root scale: a spike of views near 1 would otherwise flatten the class histograms
        y=alt.Y("share:Q", stack=None, scale=alt.Scale(type="sqrt"),
                axis=alt.Axis(title="share of its pairs (square-root scale)", format="%")),
        color=alt.Color("kind:N", scale=alt.Scale(domain=list(KIND_NAMES.values()), range=KIND_COLORS),
                        legend=alt.Legend(title="pairs:", orient="top", direction="horizontal")),
        tooltip=["kind:N", alt.Tooltip("lo:Q", title="cosine from", format=".2f"),
                 alt.Tooltip("hi:Q", title="to", format=".2f"), alt.Tooltip("share:Q", format=".2%"),
                 alt.Tooltip("pairs:Q", format=",")],
    ).properties(height=height)


def alignment_path(rows: list[dict], data: str):
    """The model's path through Wang and Isola's alignment-uniformity plane, one point per measured epoch."""
    df = pd.DataFrame([{"epoch": r["epoch"], "alignment": r["alignment"], "uniformity": r["uniformity"],
                        "effective rank": r.get("rankme")} for r in rows])
    base = alt.Chart(df)
    # few digits on the axes and integer epochs: the defaults printed 0.036817 and "2.000000"
    x = alt.X("uniformity:Q", scale=alt.Scale(zero=False), axis=alt.Axis(format=".2f", tickCount=5))
    y = alt.Y("alignment:Q", scale=alt.Scale(zero=False), axis=alt.Axis(format=".3~f", tickCount=5))
    tooltip = [alt.Tooltip("epoch:Q", format="d"), alt.Tooltip("alignment:Q", format=".3f"),
               alt.Tooltip("uniformity:Q", format=".3f"), alt.Tooltip("effective rank:Q", format=".1f")]
    line = base.mark_line(color="#8a94a6").encode(x=x, y=y, order="epoch:Q")
    points = base.mark_circle(size=70).encode(x=x, y=y, tooltip=tooltip,
                                              color=alt.Color("epoch:Q", scale=alt.Scale(scheme="viridis"),
                                                              legend=alt.Legend(format="d", tickMinStep=1)))
    return (line + points).properties(height=260, title=alt.TitleParams("Alignment and uniformity per epoch",
                                                                        subtitle=data))


def show_alignment_path(measured: list[dict], data: str) -> None:
    """The path through the alignment-uniformity plane when at least two epochs were measured; one
    measured point is not a path, so its numbers are written instead of drawing a lone dot."""
    from ui.words import explain

    from . import vega

    if len(measured) >= 2:
        st.vega_lite_chart(spec=vega.spec(alignment_path, measured, data), width="stretch")
        st.caption(f"{explain('alignment')} {explain('uniformity')} A good model moves down and to the left; a "
                   "collapsing one runs to the right edge (uniformity 0). Measured after an epoch when it fits in 3 % "
                   "of the training time.")
        return
    one = measured[0]
    st.markdown(f"**Alignment and uniformity**, measured once (after epoch {one['epoch']}, {data}): alignment "
                f"{one['alignment']:.3f}, uniformity {one['uniformity']:.2f}"
                + (f", effective rank {one['rankme']:.1f}" if one.get("rankme") is not None else "") + ".")
    st.caption(f"{explain('alignment')} {explain('uniformity')} A path through the alignment-uniformity plane needs "
               "two measured epochs; this run was too short to measure more within 3 % of its training time.")


@st.cache_data(max_entries=16, show_spinner=False)
def spread_of(path: str, cid: str, dataset: str) -> dict:
    """:func:`cl.measures.spread` of the model's test embeddings (once per model, for everyone)."""
    from cl.measures import spread

    from . import cache

    return spread(cache.embeddings(path, cid, dataset, "test"))


def collapse_note(entry, dataset: str) -> str | None:
    """For a collapsed model (by its card's measures), why its t-SNE or UMAP map still looks like
    a cloud, in numbers: how far apart its embeddings really are. None for any other model."""
    m = from_card(entry.typed_card, dataset)
    if m is None or not is_collapsed(m):
        return None
    s = spread_of(entry.path, entry.cid, dataset)
    if not s.get("rms_distance") or not s.get("rms_norm"):
        return None
    knn = entry.typed_card.figures("paper").knn_acc
    shrink = 2 ** 0.5 / s["relative"]
    shrink = float(f"{shrink:.2g}")  # two significant digits: "1/3,500", not "1/3,481"
    return (f"**Why this map still looks like a cloud.** This model has collapsed: uniformity {m['uniformity']:.2g} and "
            f"RankMe {m['rankme']:.2f} of {m.get('embedding_dim', '?')} (collapsed = uniformity above "
            f"{COLLAPSE_UNIFORMITY} and RankMe below {COLLAPSE_RANKME:g}: every image in a narrow cone of directions). Two "
            f"of its {s['n_images']:,} test images' embeddings are on average {s['rms_distance']:.2g} apart, "
            f"{100 * s['relative']:.2g} % of the embeddings' length ({s['rms_norm']:.3g}); embeddings pointing in random "
            "directions would be 141 % of it apart. t-SNE and UMAP keep only who is whose neighbour and give every "
            f"neighbourhood about the same size on the map, so they blow differences of {s['rms_distance']:.2g} up to fill "
            "the picture. The clusters are real neighbourhoods"
            + (f" (kNN-30 reads {knn:.3f} from them)" if knn is not None else "")
            + f", but in a space about 1/{shrink:,.0f} the size of a spread-out one: distances between them mean "
            "nothing, and a small change to the model reshuffles them.")
