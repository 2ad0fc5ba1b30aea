"""Study: the study's talk as a page. Its 3 x 2 scenario grids (rows none / FER / SimCLR, columns
pairwise / triplet), its three observations as numbers, its outlook answered with models.

Everything comes from what is shipped (cards, layouts, galleries, checkpoints/study.json):
no model runs when the page opens.
"""

import os

import numpy as np
import pandas as pd
import streamlit as st

from cl import study
from cl.data import SPECS
from cl.layouts import read_layouts
from cl.uncertainty import fmt_range, half_width
from ui import state
from ui.images import thumbnail_urls
from ui.links import page_link_url

# Points per panel: the same seeded sample of the shipped test gallery in every panel.
POINTS = {"mnist": 500, "cifar10": 250}
COLOURS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac"]  # Vega's tableau10, the panels' colours

ctx = state.context()
ckpt_dir = study.checkpoints_dir()


def _stamp() -> tuple:
    """What the page's figures depend on: the shipped files' names, sizes and times (a listing
    per view; the cards and layouts themselves are read once per change, below)."""
    out = []
    with os.scandir(ckpt_dir) as it:
        for e in it:
            if e.name.endswith((".safetensors", ".json")):
                s = e.stat()
                out.append((e.name, s.st_size, s.st_mtime_ns))
    return tuple(sorted(out))


@st.cache_data(max_entries=2, show_spinner=False)
def _shipped(stamp: tuple) -> tuple[dict, dict, list]:
    structure = study.load_structure(ckpt_dir)
    return structure, study.grid_figures(ckpt_dir), study.outlook_rows(ckpt_dir, structure)


stamp = _stamp()
structure, figures, outlook = _shipped(stamp)


def panel_rows(dataset: str, n: int) -> np.ndarray:
    """The gallery rows every panel of a data set shows (the same seeded sample in each)."""
    return np.sort(np.random.default_rng(0).permutation(n)[: POINTS[dataset]])


@st.cache_data(max_entries=4, show_spinner=False)
def thumbs(dataset: str, n: int) -> dict[int, str]:
    """Thumbnail URLs of the shown gallery rows at their own size: files served by Streamlit's
    static serving (ui.images.thumbnail_urls: the browser fetches a hovered one and caches it),
    or PNG data URLs where that is off. Only the sampled rows are encoded (750 images, not 3,017)."""
    from cl.layouts import gallery_images

    rows = panel_rows(dataset, n)
    images = np.asarray(gallery_images(dataset))[rows]
    return dict(zip(rows.tolist(), thumbnail_urls(images, scale=1), strict=True))


def _figures_caption(name: str, title: str, dataset: str, paper: tuple | None) -> tuple[str, bool]:
    """A panel's caption (ours / the study's figures, linearity, a deep link) and whether its
    card exists."""
    f = study.card_figures(ckpt_dir / f"{name}.safetensors")
    if f is None:
        return (f"**{title}**: `{name}` is not here yet (`python -m cl grid --preset "
                f"{'outlook' if paper is None else 'paper'}`)."), False
    lin = structure.get(name, {}).get("linearity")
    ours = study.fmt3((f["acc"], f["top3"], f["knn"]))
    study_txt = f" · study {study.fmt2(paper)}" if paper else ""
    url = page_link_url("embedding", dataset=dataset, model=name, method="tsne")
    caption = (f"**{title}**: ours {ours}{study_txt}" + (f" · linearity {lin:.2f}" if lin is not None else "")
               + f" · [open in Embedding]({url})")
    return caption, True


@st.cache_data(max_entries=8, show_spinner=False)
def _grid_data(dataset: str, items: tuple, stamp: tuple) -> tuple[list[str], pd.DataFrame | None, int]:
    """Captions, the long-form points of every panel (panel, x, y, class, gallery row) and the
    gallery size, read from the shipped cards and layouts once per ``stamp``."""
    captions, frames, n_gallery = [], [], 0
    classes = list(SPECS[dataset].classes)
    for k, (name, title, paper) in enumerate(items):
        caption, ok = _figures_caption(name, title, dataset, paper)
        layout = read_layouts(ckpt_dir / f"{name}.safetensors") if ok else None
        if ok and layout is None:
            caption += (" · no shipped t-SNE layout (`python scripts/build_checkpoints.py --layouts "
                        f"{name}`)")
        captions.append(caption)
        if layout is None:
            continue
        labels = layout["labels"].astype(int)
        n_gallery = len(labels)
        rows = panel_rows(dataset, n_gallery)
        xy = np.round(layout["tsne"][rows].astype(float), 2)
        frames.append(pd.DataFrame({"panel": f"{k + 1}. {title}", "x": xy[:, 0], "y": xy[:, 1],
                                    "class": [classes[c] for c in labels[rows]], "row": rows}))
    return captions, (pd.concat(frames, ignore_index=True) if frames else None), n_gallery


def grid_spec(df: pd.DataFrame, classes: list[str], images: dict[int, str]) -> dict:
    """Vega-Lite: one faceted chart, two panels a row, the thumbnails joined by gallery row.

    One chart, not one per panel: every panel shows the same gallery rows, so their thumbnails
    travel once, as a lookup table joined in the browser (6 inline panels of 500 MNIST
    thumbnails were ~1.4 MB; CIFAR-10's ~3.8 MB). Written as a dict, not with Altair: a view
    then costs no schema validation."""
    order = sorted(df["panel"].unique(), key=lambda t: int(t.split(".")[0]))
    return {
        "transform": [{"lookup": "row", "from": {"data": {"values": [{"row": r, "image": u} for r, u in images.items()]},
                                                 "key": "row", "fields": ["image"]}}],
        "facet": {"field": "panel", "type": "nominal", "sort": order, "title": None,
                  "header": {"labelFontSize": 13, "labelFontWeight": "bold"}},
        "columns": 2,
        "spec": {"width": 330, "height": 240, "mark": {"type": "circle", "size": 18, "opacity": 0.8},
                 "encoding": {"x": {"field": "x", "type": "quantitative", "axis": None, "scale": {"zero": False}},
                              "y": {"field": "y", "type": "quantitative", "axis": None, "scale": {"zero": False}},
                              "color": {"field": "class", "type": "nominal", "legend": None,
                                        "scale": {"domain": classes, "range": COLOURS[:len(classes)]}},
                              "tooltip": [{"field": "image", "type": "nominal"},
                                          {"field": "class", "type": "nominal"}]}},
        "resolve": {"scale": {"x": "independent", "y": "independent"}},
    }


def grid(dataset: str, items: list[tuple[str, str, tuple | None]], key: str, draw: bool = True) -> None:
    """Panels ``items`` = [(model name, title, the study's figures or None)] of one data set as
    one chart (:func:`grid_spec`), then one caption per panel. ``draw=False`` sends the captions
    only (a tab that is not open)."""
    captions, df, n_gallery = _grid_data(dataset, tuple(items), stamp)
    if df is not None and draw:
        classes = list(SPECS[dataset].classes)
        st.vega_lite_chart(df, grid_spec(df, classes, thumbs(dataset, n_gallery)), key=key)
    for k in range(0, len(captions), 2):
        cols = st.columns(2)
        for col, text in zip(cols, captions[k:k + 2], strict=False):  # the last row may hold one
            col.caption(text)


def legend(dataset: str) -> None:
    classes = list(SPECS[dataset].classes)
    st.markdown(" ".join(f"<span style='color:{COLOURS[i]}'>●</span> {c}" for i, c in enumerate(classes)),
                unsafe_allow_html=True)


def n_test_of(dataset: str) -> tuple[int, str]:
    f = next((v for k, v in figures.items() if k.startswith(dataset + "-")), None)
    return (f["n_test"], study.train_images_text(f)) if f else (0, "?")


st.title("The study")
st.markdown(
    "The study trained one small encoder per **scenario**: 2 data sets x 3 augmentations (none, FER, SimCLR) "
    "x 2 losses (pairwise cosine, triplet). Its central figure: a grid of t-SNE pictures per data set. "
    "Below are ours, from the shipped paper-recipe checkpoints. Each caption: linear / top-3 / kNN-30 accuracy "
    "(paper protocol), **ours** beside the **study**'s, and the *linearity* of the embedding (observation 3). "
    "Hover a point to see its image; a panel's link opens that model on the Embedding page.")

# Lazy tabs: only the open tab's pictures run and travel (a tab switch reruns the page).
# The open tab is in the URL (?study_tab=CIFAR-10): a slide links to the CIFAR-10 grid.
tabs = st.tabs([study.DATASET_TITLES[d] for d in study.DATASETS], key="study_tab", on_change="rerun",
               bind="query-params")
for tab, d in zip(tabs, study.DATASETS, strict=True):
    with tab:
        n_test, n_train = n_test_of(d)
        legend(d)
        items = [(study.scenario_name(d, a, loss), f"{study.AUG_TITLES[a]} / {loss}", study.paper_figures(d, a, loss))
                 for a in study.ROWS for loss in study.COLS]
        grid(d, items, key=f"study_grid_{d}", draw=tab.open is not False)
        st.caption(f"Points: {POINTS[d]} of the {d} test gallery shipped with the app (t-SNE of all of it, seed 0). "
                   f"Accuracies: paper protocol, {n_test:,} {d} test images scored, so each of ours is uncertain by "
                   f"up to ±{half_width(n_test):.2f} (95 % Wilson interval); ours trained on {n_train} "
                   f"train images, the study on the full training split.")

# ------------------------------------------------------------------ observations
obs = study.observations(figures, structure)
st.header("The three observations, measured")

st.subheader("1. Augmentation changes the results, and more is not always better")
rows1 = []
for r in obs["augmentation"]:
    ours, paper = r["ours"], r["paper"]
    rows1.append({"data set": r["dataset"], "loss": r["loss"],
                  "ours none / FER / SimCLR": study.fmt3(ours),
                  "ours change to FER, to SimCLR": ("-" if not r["changes"] else
                                                    ", ".join(f"{c['diff']:+.3f} ({c['verdict']})" for c in r["changes"])),
                  "study none / FER / SimCLR": study.fmt2(paper),
                  "study change": f"{paper[1] - paper[0]:+.2f}, {paper[2] - paper[1]:+.2f}",
                  "test images scored": r["n_test"]})
st.dataframe(pd.DataFrame(rows1), hide_index=True, width="stretch")
st.markdown(f"A stronger augmentation lowered linear accuracy by more than its noise in **{len(obs['not_monotone'])} "
            f"of 4** of our (data set, loss) series ({', '.join(obs['not_monotone']) or 'none'})"
            + (f"; it lowered it **within noise** in {', '.join(obs['within_noise'])}, which counts as no change"
               if obs["within_noise"] else "")
            + f". In the study: {len(obs['not_monotone_paper'])} of 4 ({', '.join(obs['not_monotone_paper']) or 'none'}).")
st.caption("A change is an effect only when its 95 % interval (Newcombe's hybrid score interval for a difference of two "
           "accuracies, from their Wilson intervals and the images scored) leaves out 0; otherwise it is *within noise*"
           + "".join(f"; on {r['n_test']:,} {r['dataset']} images ({r['loss']}) a change must exceed about "
                     f"{max((c['high'] - c['low']) / 2 for c in r['changes']):.2f} to count"
                     for r in obs["augmentation"] if r["changes"] and r["loss"] == study.COLS[0])
           + ". The study reports no counts, so its own changes cannot be tested.")

st.subheader("2. The more complex data set gains less")
g = obs["gain"]
parts = []
for d in study.DATASETS:
    ours = "-" if g[d]["ours"] is None else f"{g[d]['ours']:+.3f}"
    parts.append(f"{study.DATASET_TITLES[d]} **{ours}** (study {g[d]['paper']:+.3f})")
st.markdown("Mean over the two losses of *best augmentation minus no augmentation*, linear accuracy: "
            + "; ".join(parts) + ". Computed on the paper protocol's scored test images ("
            + ", ".join(f"{n_test_of(d)[0]:,} {d}" for d in study.DATASETS) + ").")

st.subheader("3. Pairwise loss gives lines, triplet loss gives clusters")
rows3 = [{"data set": r["dataset"], "augmentation": r["augmentation"],
          "pairwise linearity": r["pairwise"], "triplet linearity": r["triplet"], "images": r["n_images"]}
         for r in obs["shape"]]
st.dataframe(pd.DataFrame(rows3), hide_index=True, width="stretch",
             column_config={k: st.column_config.NumberColumn(format="%.3f") for k in ("pairwise linearity", "triplet linearity")})
wins, total = obs["pairwise_more_linear"]
st.markdown(
    f"Measured in the 32-d embedding itself, not in the t-SNE picture: for each class, the share of its variance on "
    f"its first principal axis, averaged over classes (`cl.structure`; 1 = a line, about 1/32 = a round ball). "
    f"Pairwise is more line-like than triplet in **{wins} of {total}** scenario pairs. A cosine loss fixes only "
    f"the direction of an embedding, so a class can stretch along a ray; the triplet loss's Euclidean margin "
    f"pulls it into a ball. Computed on the shipped test galleries (2,000 MNIST, 1,017 CIFAR-10 images).")

st.subheader("Where our reproduction differs")
st.markdown(
    "- **MNIST SimCLR / pairwise**: ours reaches 0.74, the study 0.56, so that scenario is not reproduced (one "
    "seed each; the study's figure may be one unlucky run of an unstable loss).\n"
    "- **Partial training data**: the MNIST train split here is 17,387 of 60,000 images (about a third of the "
    "study's SGD steps), the CIFAR-10 one a 5,085-of-50,000 subset with a 1,017-image test subset, so CIFAR-10 "
    "figures are scored on 204 images (one image = 0.5 points).\n"
    "- One seed (0) per scenario; the study's own figures are from its report.")

# ------------------------------------------------------------------ outlook
st.header("The outlook, answered with models")
st.markdown(
    "The study's next steps: triplet mining, other losses, supervised contrastive learning, and its limitation: "
    "*the method needs labels to choose negatives*. Each model below uses the study's encoder and the triplet "
    "scenarios' budget (SGD lr 0.15, 10 epochs, batch 1,024) with SimCLR augmentation. **NT-Xent** and "
    "**random negatives** use no labels at all (evaluation aside).")
rows = outlook
if rows:
    table = pd.DataFrame([{"model": r["model"], "labels": "yes" if r["uses_labels"] else "none",
                           "linear": r["acc"], "linear 95 %": fmt_range(r["acc"], r["n_test"], 3),
                           "top-3": r["top3"], "kNN": r["knn"], "images scored": r["n_test"],
                           "train images": r["train_images"], "train s": round(r["seconds"]),
                           "vs the study's best (ours)": r["vs_our_best"], "study's best": r["study_best"],
                           "its study / ours linear": f"{r['study_best_paper'][0]:.2f} / "
                           + (f"{r['study_best_ours'][0]:.3f}" if r["study_best_ours"] else "-")} for r in rows])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("linear", "top-3", "kNN", "vs the study's best (ours)")})
    st.caption("Paper protocol on the named number of test images. 'vs the study's best (ours)': linear accuracy minus "
               "our reproduction of the study's best scenario (SimCLR / triplet) on the same images.")
    collapsed = [r for r in rows if r.get("collapsed")]
    if collapsed:
        from cl.measures import COLLAPSE_RULE

        listed = ", ".join(f"{r['model']} (uniformity {r['uniformity']:.3g}, RankMe {r['rankme']:.1f}, linear "
                           f"{r['acc']:.3f})" for r in collapsed)
        st.markdown(f"**Collapsed**: {listed}. Collapsed means {COLLAPSE_RULE}: the shape of the space, not its "
                    "accuracy. A linear probe or a kNN vote compares only distances, so it can still tell classes "
                    "apart inside the tiny space left (hence a collapsed model above chance), as t-SNE still draws "
                    "a cloud. The batch-hard models: with the study's sigmoid output and plain SGD at lr 0.15, mining "
                    "the hardest triplets from the first step pulls every embedding to one point, where the loss sits "
                    "at the margin (1.0); a known failure of batch-hard mining without a warm-up.")
else:
    st.info("No outlook model is here yet: `python -m cl grid --preset outlook --out DIR` trains them.",
            icon=":material/info:")
pick = st.segmented_control("Outlook grid", list(study.DATASETS), format_func=study.DATASET_TITLES.get,
                            default=ctx.dataset if ctx.dataset in study.DATASETS else "mnist") or "mnist"
legend(pick)
grid(pick, [(f"{pick}-simclr-{m.suffix}", m.title + ("" if m.uses_labels else " (no labels)"), None)
            for m in study.OUTLOOK], key=f"outlook_grid_{pick}")
best_name, best_paper = study.study_best(pick)
st.caption(f"The study's best {pick} scenario, {best_name}: {study.fmt2(best_paper)} (study).")
