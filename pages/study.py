"""Study: the talk's central figure (a 3 x 2 grid of t-SNE plots per data set), its observations
measured, and where our reproduction differs. Everything comes from the shipped cards and
layouts (checkpoints/layouts): no model runs when the page opens."""

import numpy as np
import pandas as pd
import streamlit as st

from cl.catalog import AUGMENTATIONS  # noqa: F401  (names the study's augmentations)
from cl.cli import PAPER_TABLE
from cl.data import SPECS
from ui import cache, charts, links, models, state

AUGS = ["none", "fer", "simclr"]
LOSSES = ["pairwise", "triplet"]
AUG_TITLE = {"none": "no augmentation", "fer": "FER augmentation", "simclr": "SimCLR augmentation"}
PANEL_POINTS = 1000  # per panel: six panels of 2,000 thumbnails would make the page slow on a phone

state.context()  # the sidebar ran (and wrote this page's URL)
st.title("The study, as the talk tells it")
st.markdown(
    "The study trained the same small CNN on **MNIST** and **CIFAR-10** with three augmentations "
    "(none, FER, SimCLR) and two losses (pairwise cosine, triplet), and showed one t-SNE per scenario. "
    "Below are our 12 reproductions (`--recipe paper`, seed 0) from the shipped checkpoints, each "
    "captioned with our linear probe / top-3 / kNN-30 accuracy beside the study's. Click a panel's link "
    "to open that model on the Embedding page.")

shipped = {m.name: m for m in models.shipped_models()[0]}


@st.cache_data(show_spinner=False, max_entries=4)
def panel(name: str, path: str, cid: str, dataset: str, n_test: int) -> tuple[pd.DataFrame, dict] | None:
    """One scenario's scatter frame (from its shipped t-SNE) and the figures for its caption."""
    from cl.layouts import read_layouts

    sl = cache.shipped_layouts(path, dataset, n_test)
    data = read_layouts(path)
    if sl is None or data is None:
        return None
    rows = sl["rows"]
    keep = np.sort(np.random.default_rng(0).permutation(len(rows))[:PANEL_POINTS])
    df = charts.scatter_frame(sl["tsne"][keep], rows[keep], sl["labels"], list(SPECS[dataset].classes), None,
                              sl["thumbs"])
    from cl.study import load_structure

    return df, load_structure().get(name, {})


def figures(name: str) -> dict:
    m = shipped[name]
    p = (m.card.get("metrics") or {}).get("paper", {})
    return {"acc": p.get("linear_acc"), "top3": p.get("top3_acc"), "knn": p.get("knn_acc"),
            "n_test": p.get("n_test"), "n_train": m.card["data"].get("n_images"),
            "n_full": m.card["data"].get("n_full")}


def grid(dataset: str) -> None:
    st.subheader({"mnist": "MNIST", "cifar10": "CIFAR-10"}[dataset])
    n_test = int(cache.status(dataset).get("n_test", 0))
    header = st.columns(2)
    for j, loss in enumerate(LOSSES):
        header[j].markdown(f"**{loss} loss**")
    for aug in AUGS:
        cols = st.columns(2)
        for j, loss in enumerate(LOSSES):
            name = f"{dataset}-{aug}-{loss}"
            with cols[j]:
                if name not in shipped:
                    st.info(f"{name} is not shipped here.")
                    continue
                m = shipped[name]
                made = panel(name, m.path, m.cid, dataset, n_test)
                f = figures(name)
                ref = PAPER_TABLE[(dataset, aug, loss)]
                if made is not None:
                    df, _shape = made
                    st.altair_chart(charts.scatter(df, "class", list(SPECS[dataset].classes), "t-SNE", height=260,
                                                   point_size=12, selectable=False,
                                                   title=f"{AUG_TITLE[aug]}, {loss}"), width="stretch")
                st.caption(f"**{name}**: ours {f['acc']:.2f} / {f['top3']:.2f} / {f['knn']:.2f}, study "
                           f"{ref[0]:.2f} / {ref[1]:.2f} / {ref[2]:.2f} (linear / top-3 / kNN-30; ours scored on "
                           f"{f['n_test']:,} {dataset} test images, trained on {f['n_train']:,} of {f['n_full']:,}). "
                           f"[Open its embedding]({links.page_link_url('embedding', dataset=dataset, model=name, method='tsne')})")


tab_mnist, tab_cifar, tab_obs = st.tabs(["MNIST grid", "CIFAR-10 grid", "Observations, measured"])
with tab_mnist:
    grid("mnist")
with tab_cifar:
    grid("cifar10")

with tab_obs:
    st.markdown("#### 1. Augmentation changes the results, and more is not always better")
    rows = []
    for dataset in ("mnist", "cifar10"):
        for loss in LOSSES:
            acc = {a: figures(f"{dataset}-{a}-{loss}")["acc"] for a in AUGS if f"{dataset}-{a}-{loss}" in shipped}
            if len(acc) == 3:
                rows.append({"data set": dataset, "loss": loss, "none": acc["none"], "fer": acc["fer"],
                             "simclr": acc["simclr"], "none -> fer": acc["fer"] - acc["none"],
                             "fer -> simclr": acc["simclr"] - acc["fer"],
                             "study none -> fer": PAPER_TABLE[(dataset, "fer", loss)][0] - PAPER_TABLE[(dataset, "none", loss)][0],
                             "study fer -> simclr": PAPER_TABLE[(dataset, "simclr", loss)][0] - PAPER_TABLE[(dataset, "fer", loss)][0]})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%+.3f" if "->" in c else "%.3f")
                                    for c in rows[0] if c not in ("data set", "loss")})
        st.caption("Linear probe accuracy, paper protocol (probe fitted on 80 % of each test split, scored on the "
                   "other 20 %: 2,000 MNIST or 204 CIFAR-10 test images), one seed per scenario. A negative "
                   "fer -> simclr step is 'more augmentation, worse result'.")
        gains = {d: np.mean([max(r["fer"], r["simclr"]) - r["none"] for r in rows if r["data set"] == d])
                 for d in ("mnist", "cifar10")}
        st.markdown("#### 2. The more complex data set gains less")
        st.markdown(f"Best augmentation's gain over none, mean of the two losses: **MNIST {gains['mnist']:+.3f}**, "
                    f"**CIFAR-10 {gains['cifar10']:+.3f}** (same data and protocol as above).")

    st.markdown("#### 3. Pairwise loss gives lines, triplet loss gives clusters")
    shape_rows = []
    for dataset in ("mnist", "cifar10"):
        n_test = int(cache.status(dataset).get("n_test", 0))
        for aug in AUGS:
            for loss in LOSSES:
                name = f"{dataset}-{aug}-{loss}"
                if name in shipped:
                    made = panel(name, shipped[name].path, shipped[name].cid, dataset, n_test)
                    shape = made[1] if made else {}
                    shape_rows.append({"scenario": name, "data set": dataset, "augmentation": aug, "loss": loss,
                                       "linearity": shape.get("linearity"),
                                       "elongation": shape.get("elongation"),
                                       "images": shape.get("n_images")})
    if shape_rows:
        st.dataframe(pd.DataFrame(shape_rows), hide_index=True, width="stretch",
                     column_config={"linearity": st.column_config.NumberColumn(format="%.3f"),
                                    "elongation": st.column_config.NumberColumn(format="%.2f")})
        st.caption("Measured in the 32-d embedding itself, not in the t-SNE picture (`cl.structure`): **linearity** "
                   "is the share of each class's variance on its first principal axis, averaged over classes (1 = "
                   "every class on a line; about 1/32 = isotropic blobs); **elongation** is the ratio of the first two "
                   "singular values (`checkpoints/study.json`, `python -m cl study --structure`). Computed on each model's test gallery (2,000 MNIST or 1,017 "
                   "CIFAR-10 test images).")
        by_loss = {l: np.mean([r["linearity"] for r in shape_rows if r["loss"] == l and r["linearity"] is not None]
                              or [np.nan]) for l in LOSSES}
        st.markdown(f"Mean linearity over the six scenarios of each loss: **pairwise {by_loss['pairwise']:.3f}**, "
                    f"**triplet {by_loss['triplet']:.3f}**.")

    st.markdown("#### Where our reproduction differs")
    st.markdown(
        "- **MNIST SimCLR / pairwise** scores about 0.74 here against the study's 0.56; the study's figure "
        "may come from an unstable run (one seed each, there and here). Not reproduced.\n"
        "- **Training data**: the MNIST training split available offline is partial (17,387 of 60,000 images), so "
        "each epoch has about a third of the study's steps; five MNIST scenarios end 0.01-0.05 below the study.\n"
        "- **CIFAR-10** is a subset (5,085 of 50,000 training images, 1,017 test images; 204 scored, so one image "
        "is 0.5 points).\n"
        "- The study's outlook (triplet mining, other losses, supervised contrastive learning, negatives without "
        "labels) is not trained and shipped yet: see the project's open issue.")
