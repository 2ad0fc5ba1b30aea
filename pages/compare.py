"""Compare: the study's 12 scenarios beside the shipped checkpoints; two embeddings side by side."""

import pandas as pd
import streamlit as st

from cl.reference import PAPER_TABLE
from cl.data import dataset_spec
from cl.errors import UserError
from ui import cache, charts, models, state

METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}

ctx = state.context()
st.title("Compare")

shipped, problems = models.shipped_models()
session = [e for e in (models.session_entry(r) for r in state.session_models()) if e is not None]
runs = []
if models.list_runs_enabled():
    runs = [e for e in models.runs_models()[0] if e.path not in {s.path for s in session}]
everything = session + shipped + runs


def metric(card: dict, protocol: str, key: str):
    v = (card.get("metrics") or {}).get(protocol, {}).get(key)
    return round(float(v), 3) if v is not None else None


# ------------------------------------------------------------------ the study's table
st.subheader("The study's 12 scenarios and our checkpoints")
by_scenario = {}
for e in shipped + session:
    c = e.config
    if c.get("recipe") == "paper":
        by_scenario.setdefault((e.dataset, c.get("augmentation"), c.get("loss")), []).append(e)
rows = []
for (data, aug, loss), (acc, top3, knn) in PAPER_TABLE.items():
    row = {"data set": data, "augmentation": aug, "loss": loss, "paper acc": acc, "paper top-3": top3,
           "paper kNN": knn, "ours acc": None, "ours top-3": None, "ours kNN": None, "ours test images": None,
           "ours train images": None, "checkpoint": None}
    found = by_scenario.get((data, aug, loss), [])
    if found:
        e = sorted(found, key=lambda x: x.source != "shipped")[0]
        d = e.card.get("data", {})
        row.update({"ours acc": metric(e.card, "paper", "linear_acc"), "ours top-3": metric(e.card, "paper", "top3_acc"),
                    "ours kNN": metric(e.card, "paper", "knn_acc"),
                    "ours test images": (e.card.get("metrics") or {}).get("paper", {}).get("n_test"),
                    "ours train images": f"{d.get('n_images', 0):,}"
                                         + ("" if d.get("complete", True) else f" of {d.get('n_full', 0):,}"),
                    "checkpoint": e.name})
    rows.append(row)
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3,
             column_config={k: st.column_config.NumberColumn(format="%.2f") for k in
                            ("paper acc", "paper top-3", "paper kNN", "ours acc", "ours top-3", "ours kNN")})
st.caption("Paper figures: the study's own report (MNIST 60k/10k, CIFAR-10 50k/10k), linear probe, top-3 and "
           "kNN-30 on 20 % of the test embeddings (2,000 images). Ours: the same protocol on the test images "
           "named in 'ours test images', after training on the images named in 'ours train images' (a partial "
           "split here, so not a full-data-set result).")
if not any(by_scenario.values()):
    st.info("No checkpoint trained with the paper recipe is here yet: train one on the Train page with the "
            "paper recipe, or ship the grid (`python -m cl grid`).", icon=":material/info:")

# ------------------------------------------------------------------ all checkpoints
if everything:
    st.subheader("Every model here")
    allrows = []
    for e in everything:
        c, d = e.config, e.card.get("data", {})
        allrows.append({"model": e.name, "where": e.source, "data set": e.dataset, "recipe": c.get("recipe"),
                        "augmentation": c.get("augmentation"), "loss": c.get("loss"),
                        "train images": d.get("n_images"), "complete": d.get("complete"),
                        "epochs": (e.card.get("training") or {}).get("epochs_completed"),
                        "paper acc": metric(e.card, "paper", "linear_acc"),
                        "paper kNN": metric(e.card, "paper", "knn_acc"),
                        "paper test images": (e.card.get("metrics") or {}).get("paper", {}).get("n_test"),
                        "standard acc": metric(e.card, "standard", "linear_acc"),
                        "standard kNN": metric(e.card, "standard", "knn_acc"),
                        "standard test images": (e.card.get("metrics") or {}).get("standard", {}).get("n_test")})
    st.dataframe(pd.DataFrame(allrows), hide_index=True, width="stretch")
    st.caption("Figures as recorded in each checkpoint's card when it was trained.")
if problems:
    with st.expander(f"{len(problems)} checkpoint file(s) could not be read"):
        for p in problems:
            st.caption(p)

# ------------------------------------------------------------------ two embeddings side by side
st.subheader("Two models side by side")
if len(everything) < 1:
    st.info("No models yet: train one on the Train page.", icon=":material/model_training:")
    st.stop()
by_path = {e.path: e for e in everything}
paths = list(by_path)
c1, c2, c3, c4 = st.columns([3, 3, 1, 1])
default_a = ctx.model.path if ctx.model is not None and ctx.model.path in by_path else paths[0]
a = c1.selectbox("Left model", paths, index=paths.index(default_a), format_func=lambda p: by_path[p].label,
                 key="cmp_a")
# by default the right side shows another model of the same data set (another loss or augmentation)
others = [p for p in paths if p != a]
same_data = [p for p in others if by_path[p].dataset == by_path[a].dataset]
default_b = (same_data or others or [a])[0]
b = c2.selectbox("Right model", paths, index=paths.index(default_b), format_func=lambda p: by_path[p].label,
                 key="cmp_b")
method = c3.selectbox("Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, key="cmp_method")
limit = c4.number_input("Points", 100, 20000, 2000, step=500, key="cmp_n",
                        help="Test images per model (a seeded random subset when the split is larger).")

cols = st.columns(2)
for side, (col, path) in enumerate(zip(cols, (a, b))):
    e = by_path[path]
    with col:
        st.markdown(f"**{e.name}**: {e.config.get('augmentation')}, {e.config.get('loss')}, "
                    f"{e.config.get('recipe')} recipe")
        n_test = int(cache.status(e.dataset).get("n_test", 0))
        n = int(min(limit, n_test))
        shipped = cache.shipped_layouts(e.path, e.dataset, n_test) if e.source == "shipped" else None
        classes = list(dataset_spec(e.dataset).classes)  # also an uploaded image set (archive:ID)
        if shipped is not None and n == len(shipped["rows"]) and method in shipped:
            # the shipped view (seed 0, default parameters): drawn at once
            idx, xy, labels, thumbs = shipped["rows"], shipped[method], shipped["labels"], shipped["thumbs"]
            where = f"{e.dataset} test split ({n_test:,} images), layout shipped with the model"
        else:
            try:
                test = cache.load_data(e.dataset, "test")
                with st.spinner(f"{METHOD_NAMES[method]} of {n:,} {e.dataset} test images ..."):
                    idx, xy = cache.projection(e.path, e.cid, e.dataset, method, n, 0, 30.0, 15, 0.1)
                thumbs = cache.thumbnails(e.dataset, "test")
            except UserError as err:
                st.error(str(err), icon=":material/error:")
                continue
            labels, classes, where = test.labels.numpy(), list(test.classes), test.describe()
        df = charts.scatter_frame(xy, idx, labels, classes, None, thumbs)
        st.altair_chart(charts.scatter(df, "class", classes, METHOD_NAMES[method], height=420, selectable=False),
                        width="stretch", key=f"cmp_chart_{side}")
        st.caption(f"{len(idx):,} points from {where}; model {e.train_note()}.")
