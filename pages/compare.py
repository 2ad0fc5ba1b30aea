"""Compare: every model in the alignment-uniformity plane; the study's 12 scenarios beside the checkpoints
named after them; two models side by side (their maps and their measures)."""

import numpy as np
import pandas as pd
import streamlit as st

from cl.checkpoints import Card
from cl.data import dataset_spec
from cl.errors import UserError
from cl.projection import ProjectionParams
from cl.study import scenario_table
from cl.uncertainty import fmt_range
from ui import cache, charts, common, models, own, state, vega
from ui import measures as shape
from ui.words import plain

METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}

ctx = state.context()
st.title("Compare")
if ctx.model is not None and ctx.model.own:
    own.needs_a_model("Comparing two models")

shipped, problems = models.shipped_models()
session = [e for e in (models.session_entry(r) for r in state.session_models()) if e is not None]
runs = []
if models.list_runs_enabled():
    runs = [e for e in models.runs_models()[0] if e.path not in {s.path for s in session}]
everything = session + shipped + runs


def metric(card: Card, protocol: str, key: str):
    v = getattr(card.figures(protocol), key)
    return round(float(v), 3) if v is not None else None


def interval_text(card: Card, protocol: str) -> str | None:
    """The linear probe's 95 % Wilson interval from the card's figure and image count."""
    r = card.figures(protocol)
    if r.linear_acc is None or not r.n_test:
        return None
    return fmt_range(r.linear_acc, int(r.n_test), 3)


def measure_columns(card: Card) -> dict:
    m = card.measures or {}
    r = {k: (round(float(m[k]), 3) if m.get(k) is not None else None) for k in ("alignment", "uniformity")}
    r["RankMe"] = round(float(m["rankme"]), 1) if m.get("rankme") is not None else None
    d = m.get("data") or {}
    r["measured on"] = f"{d['n_images']:,} {d.get('dataset')} test" if d.get("n_images") else None
    r["collapsed"] = shape.is_collapsed(m)  # cl.measures.collapse: uniformity and effective rank
    return r


# ------------------------------------------------------------------ the alignment-uniformity plane
st.subheader("How each model shapes its space")
# the two models chosen below (kept in the session from the last run) are ringed in the plane
chosen = tuple(p for p in (state.widget(state.K_COMPARE_A), state.widget(state.K_COMPARE_B)) if p)
plane_df, unmeasured = shape.plane_frame(everything, highlight=chosen)
if len(plane_df):
    st.vega_lite_chart(spec=vega.spec(shape.plane, plane_df), width="stretch", key="cmp_plane")
    collapsed = plane_df[plane_df["state"] == "collapsed"]["model"].tolist()
    st.caption("Each point is one model (hover for its figures). Across: uniformity, how evenly its test images "
               "spread (lower is better; 0 at the dashed line means every image lands on one point). Up: alignment, "
               "how far apart two augmented views of one image land (lower is better; models trained without "
               "augmentation see two identical views and sit at 0). Wang & Isola (2020) drew the same plane. "
               "Each point was computed on its own model's test split, as its card records: "
               + ", ".join(sorted({f"{n:,} {ds}" for n, ds in zip(plane_df["images"], plane_df["data set"], strict=True)}))
               + " test images."
               + (f" Ringed and named: {', '.join(collapsed)}, collapsed." if collapsed else ""))
if unmeasured:
    st.caption(f"Not in the plane (their cards carry no measures): {', '.join(unmeasured)}. "
               "`python -m cl measures CHECKPOINT` computes them.")

# ------------------------------------------------------------------ the study's table
st.subheader("The study's 12 scenarios and our checkpoints")
# Each row comes from the checkpoint named after its scenario (shipped first, then this session's
# and the runs folder's models of that name), never from another model with the same settings.
cards = {e.name: e.card for e in runs}
cards.update({e.name: e.card for e in session})
cards.update({e.name: e.card for e in shipped})
rows = scenario_table(cards)
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3,
             column_config={k: st.column_config.NumberColumn(format="%.2f") for k in
                            ("paper acc", "paper top-3", "paper kNN", "ours acc", "ours top-3", "ours kNN")})
st.caption("Paper figures: the study's own report (MNIST 60k/10k, CIFAR-10 50k/10k), linear probe, top-3 and "
           "kNN-30 on 20 % of the test embeddings (2,000 images). Ours: the same protocol on the test images "
           "named in 'ours test images', after training on the images named in 'ours train images' (a partial "
           "split here, so not a full-data-set result).")
if not any(r["checkpoint"] for r in rows):
    st.info("None of the study's scenario checkpoints (named like mnist-fer-triplet) is here yet: train them with "
            "`python -m cl grid --preset paper --out checkpoints`.", icon=":material/info:")

# ------------------------------------------------------------------ all checkpoints
if everything:
    st.subheader("Every model here")
    allrows = []
    for e in everything:
        c, card = e.config, e.typed_card
        allrows.append({"model": e.name, "where": e.source, "data set": state.dataset_label(e.dataset), "recipe": c.get("recipe"),
                        "augmentation": c.get("augmentation"), "loss": c.get("loss"),
                        "train images": card.data.n_images, "complete": card.data.complete,
                        "epochs": card.training.epochs_completed,
                        "paper acc": metric(card, "paper", "linear_acc"),
                        "paper acc, 95 %": interval_text(card, "paper"),
                        "paper kNN": metric(card, "paper", "knn_acc"),
                        "paper test images": card.figures("paper").n_test,
                        "standard acc": metric(card, "standard", "linear_acc"),
                        "standard kNN": metric(card, "standard", "knn_acc"),
                        "standard test images": card.figures("standard").n_test,
                        **measure_columns(card)})
    st.dataframe(pd.DataFrame(allrows), hide_index=True, width="stretch")
    st.caption("Figures as recorded in each checkpoint's card; '95 %': the linear probe's Wilson interval from the "
               "test images it was scored on. Alignment, uniformity and RankMe: on the test images named in 'measured "
               "on' (see the plane above); 'collapsed' by those measures (uniformity above -0.05 and RankMe below 3).")
if problems:
    with st.expander(f"{len(problems)} checkpoint file(s) could not be read"):
        for p in problems:
            st.caption(p)

# ------------------------------------------------------------------ which map of the active model to believe
def map_trust_section(model) -> None:
    """The active model's t-SNE, UMAP and PCA maps scored against its own neighbours (cl.maptrust):
    stored with its layouts, or computed on request (the same maps the Embedding page draws)."""
    n_test = int(cache.status(model.dataset).get("n_test", 0))
    layout = cache.shipped_layouts(model.path, model.dataset, n_test) if n_test else None
    figures = dict((layout or {}).get("trust") or {})
    figures = {k: v for k, v in figures.items() if v is not None}
    missing = [k for k in METHOD_NAMES if k not in figures]
    n = len(layout["rows"]) if layout else min(n_test, 2000)
    if missing and n >= 3 and st.button(f"Score the {', '.join(METHOD_NAMES[k] for k in missing)} map(s) of "
                                        f"{n:,} test images", key="cmp_trust_compute",
                                        icon=":material/straighten:"):
        for k in missing:
            with st.spinner(f"{METHOD_NAMES[k]} of {n:,} {model.dataset} test images and its neighbours ..."):
                try:
                    if layout is not None and k in layout:
                        figures[k] = cache.map_trust(model.path, model.cid, model.dataset, ProjectionParams(k),
                                                     shipped_on=n_test)
                    else:
                        figures[k] = cache.map_trust(model.path, model.cid, model.dataset, ProjectionParams(k, n=n))
                except UserError as err:
                    st.error(str(err), icon=":material/error:")
    if not figures:
        st.caption(f"{model.name}'s maps carry no trust figures yet.")
        return
    rows = [{"map": METHOD_NAMES[k], "trustworthiness": f["trustworthiness"], "continuity": f["continuity"],
             "kept": f["mean_kept"] * f["k"], "k": f["k"], "points": f["n_points"]}
            for k, f in figures.items() if k in METHOD_NAMES]
    # a Markdown table: three rows need no interactive grid (whose Arrow serialisation costs each view ~15 ms)
    st.markdown("| map | trustworthiness | continuity | kept |\n| --- | --- | --- | --- |\n"
                + "\n".join(f"| {r['map']} | {r['trustworthiness']:.3f} | {r['continuity']:.3f} | "
                            f"{r['kept']:.1f} of {r['k']} |" for r in rows))
    best = max(rows, key=lambda r: r["trustworthiness"])
    points = " and ".join(sorted({f"{r['points']:,}" for r in rows}))
    st.caption(f"{model.name}'s maps of {points} {model.dataset} test images (seed 0, default settings). "
               "Trustworthiness: are points "
               "drawn close together truly close in the model's space? Continuity: do truly close images stay close "
               "on the map? 1 is perfect, about 0.5 is a random scatter. Neighbours kept: of each image's 10 nearest "
               f"by cosine similarity, how many are among its 10 nearest on the map. Here {best['map']} is the most "
               "trustworthy; on every map, believe who is near whom, not the distances between far-apart groups.")


if ctx.model is not None:
    st.subheader(f"Which map to believe: {ctx.model.name}")
    map_trust_section(ctx.model)

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
                 key=state.K_COMPARE_A)
# by default the right side shows another model of the same data set (another loss or augmentation)
others = [p for p in paths if p != a]
same_data = [p for p in others if by_path[p].dataset == by_path[a].dataset]
default_b = (same_data or others or [a])[0]
b = c2.selectbox("Right model", paths, index=paths.index(default_b), format_func=lambda p: by_path[p].label,
                 key=state.K_COMPARE_B)
method = c3.selectbox("Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, key="cmp_method")
limit = c4.number_input("Points", 100, 20000, 2000, step=500, key="cmp_n",
                        help="Test images per model (a seeded random subset when the split is larger).")

cols = st.columns(2)
maps: dict[int, tuple] = {}  # side -> (test indices, 2-D positions) drawn
identities: dict[int, tuple] = {}  # side -> what fixes its map (see below)
for side, (col, path) in enumerate(zip(cols, (a, b), strict=True)):
    e = by_path[path]
    with col:
        st.markdown(f"**{e.name}**: {e.config.get('augmentation')}, {e.config.get('loss')}, "
                    f"{e.config.get('recipe')} recipe")
        n_test = int(cache.status(e.dataset).get("n_test", 0))
        n = int(min(limit, n_test))
        layout = cache.shipped_layouts(e.path, e.dataset, n_test) if e.source == "shipped" else None
        classes = list(dataset_spec(e.dataset).classes)  # also an uploaded image set (archive:ID)
        if layout is not None and n == len(layout["rows"]) and method in layout:
            # the shipped view (seed 0, default parameters): drawn at once
            idx, xy, labels, thumbs = layout["rows"], layout[method], layout["labels"], layout["thumbs"]
            where = f"{state.dataset_label(e.dataset)} test split ({n_test:,} images), layout shipped with the model"
        else:
            try:
                test = cache.load_data(e.dataset, "test")
                with st.spinner(f"{METHOD_NAMES[method]} of {n:,} {e.dataset} test images ..."):
                    idx, xy = cache.projection(e.path, e.cid, e.dataset, ProjectionParams(method, n=n))
                thumbs = cache.thumbnails(e.dataset, "test")
            except UserError as err:
                st.error(str(err), icon=":material/error:")
                continue
            labels, classes, where = test.labels.numpy(), list(test.classes), test.describe()
        maps[side] = (np.asarray(idx), np.asarray(xy), labels, classes)

        def scatter(xy=xy, idx=idx, labels=labels, classes=classes, thumbs=thumbs):
            return charts.scatter(charts.scatter_frame(xy, idx, labels, classes, None, thumbs), "class", classes,
                                  METHOD_NAMES[method], height=420, selectable=False)

        # The map is fixed by the model's content id, the method and the number of points (a shipped layout, or
        # a seeded projection), and the thumbnails' folder: its chart is made once for every visitor.
        first_thumb = next((thumbs[i] for i in idx[:1]), None) if thumbs is not None else None
        identity = identities[side] = ("compare map", e.cid, e.dataset, method, n, where, first_thumb)
        st.vega_lite_chart(spec=vega.spec(scatter, identity=identity), width="stretch", key=f"cmp_chart_{side}")
        st.caption(f"{len(idx):,} points from {where}; model {e.train_note()}.")
        try:
            with st.spinner(f"Alignment and uniformity of {e.name} ..."):
                ms = shape.for_model(e, e.dataset)
        except UserError as err:
            st.error(str(err), icon=":material/error:")
            continue
        st.markdown(f"Alignment **{common.fmt(ms.get('alignment'))}** · uniformity **{common.fmt(ms.get('uniformity'))}**"
                    f" · RankMe **{ms.get('rankme', float('nan')):.1f}** of {ms.get('embedding_dim', '?')}"
                    + (" · **collapsed**" if shape.is_collapsed(ms) else ""))
        st.vega_lite_chart(spec=vega.spec(shape.histograms, ms, f"{e.name}: cosine similarity of pairs", height=260),
                           width="stretch", key=f"cmp_hist_{side}")
        st.caption(f"Two views of one image should be near 1, images of one class closer than images of different "
                   f"classes. Computed on {shape.data_line(ms)}.")

# ------------------------------------------------------------------ where the two models agree
ea, eb = by_path[a], by_path[b]
if a != b and ea.dataset == eb.dataset and 0 in maps:
    st.subheader("Where the two models agree")
    try:
        with st.spinner("Nearest neighbours of every test image under both models ..."):
            agree = cache.neighbour_agreement(ea.path, ea.cid, eb.path, eb.cid, ea.dataset, 10)
            test = cache.load_data(ea.dataset, "test")
    except UserError as err:
        st.error(str(err), icon=":material/error:")
        st.stop()
    import torch

    idx, xy, _labels, _classes = maps[0]

    def agreement_map(idx=idx, xy=xy):
        frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "index": idx, "agreement": agree[idx],
                              "class": [test.classes[k] for k in test.labels.numpy()[idx]]})
        return charts.agreement_map(frame, f"{ea.name}'s map, coloured by how many of each image's 10 "
                                           f"neighbours {eb.name} shares")

    # fixed by the left map and the right model's content id
    st.vega_lite_chart(spec=vega.spec(agreement_map, identity=("agreement", identities[0], ea.name, eb.cid, eb.name)),
                       width="stretch", key="cmp_agreement")
    from cl.retrieval import most_changed

    moved, tied = most_changed(agree, 10)
    lowest = int(round(float(agree.min()) * 10))
    if tied > len(moved):  # many ties: say how many, show a random few, not the first by index
        kept = "none" if lowest == 0 else f"only {lowest}"
        st.markdown(f"**The neighbourhoods that changed most: {tied:,} of the {len(agree):,} images keep {kept} "
                    f"of their 10 neighbours** ({plain(test.describe())}; on average {agree.mean() * 10:.1f} of 10 kept); "
                    f"{len(moved)} of them at random:")
    else:
        st.markdown(f"**The {len(moved)} images whose neighbourhoods changed most** (over all {len(agree):,} "
                    f"{plain(test.describe())}: on average {agree.mean() * 10:.1f} of 10 neighbours kept)")
    common.image_gallery(test.images[torch.from_numpy(moved)],
                         [f"#{i} {test.classes[test.labels[i]]} · {int(round(agree[i] * 10))} of 10 kept" for i in moved],
                         ncol=10, scale=2)
    st.caption("Neighbours: the 10 most similar other test images by cosine similarity, under each model; 1 = the "
               "same 10, 0 = none in common.")
