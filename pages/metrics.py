"""Metrics: linear probe, top-3, kNN-30 under both protocols, per-class accuracy, confusion matrix."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cl.errors import DataUnavailableError
from ui import cache, charts, common, state

ctx = state.context()
st.title("Metrics")
common.require_model(ctx)
m = ctx.model
st.caption(common.model_line(ctx))

results = {}
with st.spinner(f"Evaluating on {ctx.dataset} ..."), common.user_errors():
    test = cache.load_data(ctx.dataset, "test")
    results["paper"] = cache.evaluation(m.path, m.cid, ctx.dataset, "paper")
    standard_note = ""
    try:
        results["standard"] = cache.evaluation(m.path, m.cid, ctx.dataset, "standard")
    except DataUnavailableError as err:
        standard_note = f"Standard protocol unavailable: {err}"


def data_line(r: dict) -> str:
    fit = r["fitted_on"]
    scored = r["scored_on"]
    partial = "" if scored.get("complete", True) else " (partial test split)"
    return (f"probe and kNN fitted on {r['n_fit']:,} {fit.get('dataset')} {fit.get('split')} images, "
            f"scored on {r['n_test']:,} {scored.get('dataset')} test images{partial}")


rows = []
for protocol, r in results.items():
    rows.append({"protocol": protocol, "linear probe": r["linear_acc"], "top-3": r["top3_acc"], "kNN-30": r["knn_acc"],
                 "precision@10": r["precision_at_10"], "fitted on": f"{r['n_fit']:,} {r['fitted_on'].get('split')}",
                 "scored on": f"{r['n_test']:,} test"})
st.subheader("Headline figures")
cols = st.columns(4)
p = results["paper"]
cols[0].metric("Linear probe accuracy", f"{p['linear_acc']:.3f}", help=data_line(p))
cols[1].metric("Top-3 accuracy", f"{p['top3_acc']:.3f}", help=data_line(p))
cols[2].metric("kNN-30 accuracy", f"{p['knn_acc']:.3f}", help=data_line(p))
cols[3].metric("Precision@10", f"{p['precision_at_10']:.3f}", help="share of each image's 10 nearest test "
               "neighbours with its class")
st.caption(f"Paper protocol (the study's): {data_line(p)}; the split of the test embeddings is 80/20, seeded "
           "and stratified.")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(format="%.3f")
                            for k in ("linear probe", "top-3", "kNN-30", "precision@10")})
if "standard" in results:
    st.caption(f"Standard protocol: {data_line(results['standard'])}.")
else:
    st.caption(standard_note)
card_metrics = (m.card.get("metrics") or {}).get("paper")
if card_metrics:
    st.caption(f"The checkpoint's card recorded, paper protocol: linear {card_metrics.get('linear_acc', 0):.3f}, "
               f"top-3 {card_metrics.get('top3_acc', 0):.3f}, kNN-30 {card_metrics.get('knn_acc', 0):.3f} on "
               f"{card_metrics.get('n_test', 0):,} {card_metrics.get('dataset', '?')} test images.")

st.subheader("Per-class accuracy (linear probe)")
bars = []
for protocol, r in results.items():
    cm = np.asarray(r["confusion_matrix"])
    for k, cls in enumerate(test.classes):
        if r["per_class_acc"][k] is not None:
            bars.append({"class": cls, "protocol": protocol, "accuracy": r["per_class_acc"][k], "n": int(cm[k].sum())})
st.altair_chart(charts.per_class(test.classes, bars, f"Per-class accuracy on {ctx.dataset} test images"),
                width="stretch")

st.subheader("Confusion matrix")
protocol = st.radio("Protocol", list(results), horizontal=True, key="met_protocol",
                    format_func={"paper": "paper (20 % of test)", "standard": "standard (all test)"}.get)
r = results[protocol]
cm = np.asarray(r["confusion_matrix"])
left, right = st.columns([3, 2])
with left:
    event = st.altair_chart(
        charts.confusion(r["confusion_matrix"], test.classes, f"{protocol} protocol: {r['n_test']:,} {ctx.dataset} "
                                                               "test images"),
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
    fallback = st.selectbox("Or show a pair", options, index=0 if options else None, key=f"met_pair_{protocol}",
                            format_func=lambda o: f"true {o[0]}, predicted {o[1]}") if options else None
cell = picked or fallback
if cell:
    t, q = test.classes.index(cell[0]), test.classes.index(cell[1])
    scored = np.asarray(r["scored_indices"])
    pred = np.asarray(r["predictions"])
    hits = scored[(test.labels.numpy()[scored] == t) & (pred == q)]
    what = "classified correctly" if t == q else f"predicted as {cell[1]}"
    st.markdown(f"**{len(hits):,} image(s) of class {cell[0]} {what}** (linear probe, {protocol} protocol, "
                f"{ctx.dataset} test images scored: {r['n_test']:,})")
    if len(hits):
        shown = hits[:40]
        common.image_gallery(test.images[torch.from_numpy(shown)], [f"#{i}" for i in shown], ncol=10, scale=2)
