"""Metrics: linear probe, top-3, kNN-30 under both protocols, per-class accuracy, confusion matrix, and
how the embedding space is shaped (alignment, uniformity, RankMe, spectrum, cosine histograms)."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cl.data import SPECS
from cl.errors import DataUnavailableError
from cl.uncertainty import flags as accuracy_flags
from cl.uncertainty import fmt as fmt_interval
from cl.uncertainty import wilson
from ui import accuracy, cache, charts, common, demo, state, vega
from ui import measures as shape
from ui.words import explain, plain

ctx = state.context()
st.title("Metrics")
common.require_model(ctx)
m = ctx.model
st.caption(common.model_line(ctx))



def summary_line(r: dict, fit_split: str) -> str:
    """Which data a summary (a card's or a live result) came from."""
    return (f"probe and kNN fitted on {r.get('n_fit', 0):,} {r.get('dataset', '?')} {fit_split} images, "
            f"scored on {r.get('n_test', 0):,} {r.get('dataset', '?')} test images")


N_CLASSES = len(SPECS[ctx.dataset].classes) if ctx.dataset in SPECS else None


def headline(r: dict, where: str) -> None:
    st.subheader("Headline figures")
    cols = st.columns(4)
    line = summary_line(r, "test")
    # each help says what the number measures; the data sentence is said once, in the caption below
    accuracy.metric(cols[0], "Linear probe accuracy", r, "linear_acc", explain("linear probe"), N_CLASSES)
    accuracy.metric(cols[1], "Top-3 accuracy", r, "top3_acc", explain("top-3"), N_CLASSES)
    accuracy.metric(cols[2], "kNN-30 accuracy", r, "knn_acc", explain("kNN-30"), N_CLASSES)
    cols[3].metric("Precision@10", f"{r.get('precision_at_10', float('nan')):.3f}", help=explain("Precision@10"))
    if "precision_at_10" in accuracy.accuracy_flags(r, N_CLASSES):  # classes of 10 or fewer scored images
        cols[3].caption(f"at most {r['precision_at_10_best']:.3f} here · :orange[flagged, see below]")
    flagged = accuracy.warnings_text([r], N_CLASSES)
    if flagged:
        st.warning(flagged, icon=":material/warning:")
    st.caption(f"Paper protocol (the study's), {where}: {line}; the test embeddings are split 80/20, seeded and "
               "stratified. 95 %: the Wilson score interval of each accuracy from the number of images scored (how "
               "far it could move on another draw of as many test images).")


# The card's figures come first (instant); the live evaluation below adds per-class accuracy and
# the confusion matrix, and takes a while the first time for a model (then it is cached for all).
card_paper = m.typed_card.figures("paper").summary()
from_card = bool(card_paper) and m.dataset == ctx.dataset and "linear_acc" in card_paper
if from_card:
    headline(card_paper, "as recorded in the checkpoint's card")

results = {}
with common.user_errors():
    test = cache.load_data(ctx.dataset, "test")
    with st.spinner(f"Linear probe and kNN on {len(test):,} {plain(ctx.name)} test embeddings (paper protocol) ..."):
        results["paper"] = cache.evaluation(m.path, m.cid, ctx.dataset, "paper")
if not from_card:
    headline(results["paper"], "computed now")
standard_note = ""
with common.user_errors():
    try:
        n_train = ctx.status.get("n_train", 0)
        with st.spinner(f"Standard protocol: fitting on {n_train:,} {plain(ctx.name)} train embeddings (once per model; "
                        "can take a minute) ..."):
            results["standard"] = cache.evaluation(m.path, m.cid, ctx.dataset, "standard")
    except DataUnavailableError as err:
        standard_note = demo.scrub(f"Standard protocol unavailable: {err}")


def data_line(r: dict) -> str:
    fit = r["fitted_on"]
    scored = r["scored_on"]
    partial = "" if scored.get("complete", True) else " (partial test split)"
    return (f"probe and kNN fitted on {r['n_fit']:,} {fit.get('dataset')} {fit.get('split')} images, "
            f"scored on {r['n_test']:,} {scored.get('dataset')} test images{partial}")


rows = []
for protocol, r in results.items():
    hidden = {k for k, f in accuracy_flags(r, N_CLASSES).items() if f["level"] == "hide"}
    rows.append({"protocol": protocol, "linear probe": r["linear_acc"],
                 "linear probe, 95 %": fmt_interval(r["linear_acc"], r["n_test"], 3),
                 "top-3": None if "top3_acc" in hidden else r["top3_acc"], "kNN-30": r["knn_acc"],
                 "kNN-30, 95 %": fmt_interval(r["knn_acc"], r["n_test"], 3),
                 "precision@10": r["precision_at_10"], "fitted on": f"{r['n_fit']:,} {r['fitted_on'].get('split')}",
                 "scored on": f"{r['n_test']:,} test"})
shipped_note = ("Shipped with the model: computed by `scripts/build_checkpoints.py` on these same test images. "
                if all(r.get("shipped") for r in results.values()) else "")
st.markdown("**Both protocols**" if shipped_note else "**Both protocols, computed now (cached for everyone)**")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(format="%.3f")
                            for k in ("linear probe", "top-3", "kNN-30", "precision@10")})
st.caption(shipped_note + f"Paper protocol: {data_line(results['paper'])}. "
           + (f"Standard protocol: {data_line(results['standard'])}." if "standard" in results else standard_note))

st.subheader("Per-class accuracy (linear probe)")
bars = []
for protocol, r in results.items():
    cm = np.asarray(r["confusion_matrix"])
    for k, cls in enumerate(test.classes):
        if r["per_class_acc"][k] is not None:
            n_k = int(cm[k].sum())
            low, high = wilson(int(cm[k, k]), n_k)
            bars.append({"class": cls, "protocol": protocol, "accuracy": r["per_class_acc"][k], "n": n_k,
                         "low": low, "high": high})
st.vega_lite_chart(spec=vega.spec(charts.per_class, test.classes, bars, f"Per-class accuracy on {ctx.name} test images"),
                   width="stretch")
st.caption("Each bar: the share of that class's scored images the probe got right; the black line is its 95 % Wilson "
           "interval, from that class's image count (hover a bar for it). Fewer images, wider line.")

st.subheader("Confusion matrix")
protocol = st.radio("Protocol", list(results), horizontal=True, key="met_protocol",
                    format_func={"paper": "paper (20 % of test)", "standard": "standard (all test)"}.get)
r = results[protocol]
cm = np.asarray(r["confusion_matrix"])
left, right = st.columns([3, 2])
with left:
    event = st.vega_lite_chart(
        spec=vega.spec(charts.confusion, r["confusion_matrix"], test.classes,
                       f"{protocol} protocol: {r['n_test']:,} {ctx.name} test images"),
        on_select="rerun", selection_mode="cell", key=f"met_cm_{protocol}")
    st.caption("Rows: true class; columns: the linear probe's prediction. Click a cell to see those images.")

off = [(int(cm[t, q]), t, q) for t in range(len(cm)) for q in range(len(cm)) if t != q and cm[t, q] > 0]
off.sort(reverse=True)
picked = charts.selected_cell(event)
with right:
    st.markdown("**Most confused pairs**")
    if off:
        st.dataframe(pd.DataFrame([{"true": test.classes[t], "predicted": test.classes[q], "images": c}
                                   for c, t, q in off[:8]]), hide_index=True, width="stretch")
    else:
        st.caption("No confusions: every scored image was classified correctly.")
    options = [(test.classes[t], test.classes[q]) for _, t, q in off]
    # Whichever was used last wins, a click in the matrix or a choice in the list, and the list
    # shows what the page shows: the clicked pair, or nothing for a diagonal cell (correct
    # predictions are not a confused pair), never the previous choice.
    pair_key, clicked_key = f"met_pair_{protocol}", f"met_pair_{protocol}_clicked"
    if picked != state.widget(clicked_key):
        state.set_widget(clicked_key, picked)
        if options:
            state.set_widget(pair_key, picked if picked in options else (None if picked else options[0]))
    fallback = st.selectbox("Or show a pair", options, index=0, key=pair_key, placeholder="the clicked cell",
                            format_func=lambda o: f"true {o[0]}, predicted {o[1]}") if options else None
cell = fallback if fallback is not None else picked
if cell:
    t, q = test.classes.index(cell[0]), test.classes.index(cell[1])
    scored = np.asarray(r["scored_indices"])
    pred = np.asarray(r["predictions"])
    hits = scored[(test.labels.numpy()[scored] == t) & (pred == q)]
    what = "classified correctly" if t == q else f"predicted as {cell[1]}"
    st.markdown(f"**{len(hits):,} image(s) of class {plain(cell[0])} {plain(what)}** (linear probe, {protocol} "
                f"protocol, {plain(ctx.name)} test images scored: {r['n_test']:,})")
    if len(hits):
        shown = hits[:40]
        common.image_gallery(test.images[torch.from_numpy(shown)], [f"#{i}" for i in shown], ncol=10, scale=2)
        # Linked to the map: the same images highlighted on the model's t-SNE of its test images.
        layout = cache.shipped_layouts(m.path, ctx.dataset, len(test)) if m.dataset == ctx.dataset else None
        if layout is not None and "tsne" in layout:
            rows = np.asarray(layout["rows"])
            on_map = np.isin(rows, hits)
            if on_map.any():
                xy = np.asarray(layout["tsne"])
                frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "index": rows,
                                      "class": [test.classes[k] for k in test.labels.numpy()[rows]],
                                      "picked": np.where(on_map, f"{cell[0]} {what}", charts.OTHER_POINTS)})
                st.vega_lite_chart(spec=vega.spec(charts.picked_map, frame, f"{cell[0]} {what}",
                                                  f"Where they lie on the model's t-SNE ({len(rows):,} test images)"),
                                   width="stretch")
                st.caption(f"{int(on_map.sum()):,} of the {len(hits):,} images are among the map's points; the map is "
                           "the one the Embedding page opens on.")


# ------------------------------------------------------------------ how the space is shaped
st.subheader("How the embedding space is shaped")
with common.user_errors():
    with st.spinner(f"Alignment, uniformity and RankMe on {plain(ctx.name)} test images ..."):
        ms = shape.for_model(m, ctx.dataset)
where = shape.data_line(ms)
d_emb = ms.get("embedding_dim", "?")
cols = st.columns(3)
cols[0].metric("Alignment", common.fmt(ms.get("alignment")),
               help="Mean squared distance between the embeddings of two augmented views of one image: 0 = the views "
                    f"land on the same point, 4 = on opposite points. {where}.")
cols[1].metric("Uniformity", common.fmt(ms.get("uniformity")),
               help="How evenly the test images spread over the sphere of directions: 0 = every image on one point "
                    f"(a collapse), {common.fmt(ms.get('sphere_uniformity'))} = spread perfectly evenly over this "
                    f"model's {d_emb} dimensions. {where}.")
cols[2].metric("RankMe", f"{ms.get('rankme', float('nan')):.1f} of {d_emb}",
               help="How many directions the embeddings really use (the effective rank of the embedding matrix): "
                    f"1 = everything on one line, {d_emb} = every direction used equally. {where}.")
if shape.is_collapsed(ms):
    st.warning(f"This model has collapsed: its test images land on (nearly) one point (uniformity "
               f"{ms['uniformity']:.3f}, where 0 is a single point; RankMe {ms.get('rankme', float('nan')):.1f}), so "
               f"distances between its embeddings say little about the images. {shape.COLLAPSE_TEXT[0].upper()}"
               f"{shape.COLLAPSE_TEXT[1:]}; the accuracies above can still be well above chance, because a probe and "
               "a kNN vote rescale the tiny differences left.", icon=":material/warning:")
st.caption(f"Alignment: the two views of an image should land close together (lower is better). Uniformity: the "
           f"images should spread out instead of bunching up (lower is better). Computed on {where}"
           + ("; stored in the model's card." if shape.from_card(m.card, ctx.dataset) is not None
              else "; computed now for this model (cached)."))
left, right = st.columns(2)
with left:
    st.vega_lite_chart(spec=vega.spec(shape.spectrum, ms, f"Singular values of {ms['data']['n_images']:,} embeddings"),
                       width="stretch")
    st.caption("Each bar is one direction's share of the embedding matrix's singular values; a few tall bars and the "
               f"rest near zero mean the model uses only a few of its {d_emb} directions. From {where.split(';')[0]}.")
with right:
    st.vega_lite_chart(spec=vega.spec(shape.histograms, ms, "Cosine similarity of pairs"), width="stretch")
    st.caption("How alike pairs of embeddings are (cosine similarity, 1 = same direction): two views of one image "
               "should be near 1, two images of one class closer than two of different classes; all three piled up "
               "at 1 is a collapse. "
               f"From {where.split(';')[0]}: every pair of them, and one pair of views per image.")
