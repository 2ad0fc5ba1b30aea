"""Embedding space: t-SNE / UMAP / PCA of every test image, image tooltips, selection."""

from dataclasses import replace

import numpy as np
import streamlit as st

from cl.data import SPECS, gallery_origins
from cl.maptrust import map_neighbors
from cl.maptrust import words as trust_words
from cl.projection import ProjectionParams
from ui import cache, charts, common, links, measures, selection, state, vega, words

METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
TRUST_HELP = ("Trustworthiness (Venna & Kaski): are points drawn close together truly close in the model's space? "
              "Continuity: do truly close points stay close on the map? Both are 1 for a perfect map and about 0.5 "
              "for points placed at random. Neighbours: the 10 most similar images by cosine similarity, as "
              "Retrieval ranks them.")

ctx = state.context()
st.title("Embedding space")
common.require_model(ctx)
m = ctx.model
st.caption(common.model_line(ctx))
n_total = int(ctx.status.get("n_test", 0))
# A collapsed model's map still looks like an ordinary cloud: say why, in numbers (issue 29).
with common.user_errors():
    collapse_note = measures.collapse_note(m, ctx.dataset)
if collapse_note:
    st.info(collapse_note, icon=":material/info:")

# A shipped model brings its t-SNE, UMAP and PCA of the test gallery (seed 0, default parameters):
# its default view is that t-SNE, drawn at once without PyTorch, and any other setting is
# computed (which loads the images and the model) and cached for everyone.
shipped = (cache.shipped_layouts(m.path, ctx.dataset, n_total)
           if m.dataset == ctx.dataset else None)  # a model trained here gets its map when training ends
test = None


def test_split():
    """The test images (loaded on first need: a shipped view draws without them)."""
    global test, n_total
    if test is None:
        with common.user_errors():
            test = cache.load_data(ctx.dataset, "test")
        n_total = len(test)
    return test


if shipped is None:
    test_split()
n_default = len(shipped["rows"]) if shipped else n_total
default = ProjectionParams("tsne" if shipped or n_total <= 2000 else "pca", n=n_default)
view = state.projection_request(default)
view = replace(view, n=min(view.n, n_total) if view.n else n_total)  # None: every test image

shipped_view = bool(shipped) and view.method in shipped and view.is_shipped(n_default)
with st.expander("Projection settings" + (": the shipped view" if shipped_view else ""),
                 expanded=not shipped_view), st.form("projection_form", border=False):
    c1, c2, c3 = st.columns([1, 1, 1])
    method = c1.selectbox("Method", list(METHOD_NAMES), index=list(METHOD_NAMES).index(view.method),
                          format_func=METHOD_NAMES.get, key="emb_method")
    n = c2.number_input(f"Points (of {n_total:,} test images)", 3, n_total, view.n, key=f"emb_n_{n_total}",
                        help="All test images by default; fewer is faster for t-SNE and UMAP.")
    seed = c3.number_input("Seed", 0, 2**31 - 1, view.seed, key="emb_seed")
    c4, c5, c6 = st.columns(3)
    perplexity = c4.slider("t-SNE perplexity", 5.0, 100.0, view.perplexity, key="emb_perp")
    n_neighbors = c5.slider("UMAP neighbours", 5, 100, view.n_neighbors, key="emb_nn")
    min_dist = c6.slider("UMAP min. distance", 0.0, 0.99, view.min_dist, key="emb_md")
    if st.form_submit_button("Compute projection", type="primary", icon=":material/scatter_plot:"):
        view = ProjectionParams(method, n=n, seed=seed, perplexity=perplexity, n_neighbors=n_neighbors,
                                min_dist=min_dist)
        state.set_projection_request(replace(view, n=None if n >= n_total else view.n))
links.set_view(method=view.method, points=view.n if view.n < n_total else None)
shipped_view = bool(shipped) and view.method in shipped and view.is_shipped(n_default)
if n_total > 3000 and view.method != "pca" and not shipped_view:
    st.caption(f"{METHOD_NAMES[view.method]} of {view.n:,} points takes up to a minute on a small CPU; "
               "the result is cached for everyone.")

label = f"{METHOD_NAMES[view.method]} of {view.n:,} {words.plain(ctx.name)} test images"
if shipped_view:
    idx, xy = shipped["rows"], shipped[view.method]
    labels, thumbs = shipped["labels"], shipped["thumbs"]
    st.caption(f"{label} (seed 0): computed once for this model on its "
               "test gallery; open the projection settings to compute another view.")
else:
    test_split()
    labels, thumbs = test.labels.numpy(), cache.thumbnails(ctx.dataset, "test")
    with common.user_errors():
        cache.embeddings(m.path, m.cid, ctx.dataset, "test")  # checks the model fits the data
    with st.status(f"Computing the {label} ...", expanded=False) as status:
        with common.user_errors():
            idx, xy = cache.projection(m.path, m.cid, ctx.dataset, view,
                                       _progress=lambda msg: status.update(label=f"{label}: {msg}"))
        status.update(label=f"{label} (seed {view.seed})", state="complete")

# How far to trust this map (cl.maptrust): stored with a shipped layout, else computed once per map.
trust = shipped["trust"].get(view.method) if shipped_view else None
if trust is None:
    with st.spinner("Comparing each point's neighbours on the map with its neighbours in the model's space "
                    "(once per map) ..."), common.user_errors():
        if shipped_view:  # a layout file from before the figures were stored
            trust = cache.map_trust(m.path, m.cid, ctx.dataset, view, shipped_on=n_total)
        else:
            trust = cache.map_trust(m.path, m.cid, ctx.dataset, view)

links.preset("color", "emb_color", ("class", "predicted", "correct", "kept"))
color_by = st.segmented_control("Colour by", ["class", "predicted", "correct", "kept"], default="class",
                                key="emb_color",
                                # short labels: the four fit one line on a 390 px phone, so the map stays on its first screen
                                format_func={"class": "class", "predicted": "predicted", "correct": "correct?",
                                             "kept": "kept"}.get,
                                help="**class**: each image's true class. **predicted**: the class the linear probe gives "
                                     "it. **correct?**: whether the probe is right. **kept**: neighbours kept, how many of "
                                     "each image's 10 nearest neighbours in the model's space are also among its 10 "
                                     "nearest on the map (where the map can be trusted).") or "class"
links.set_view(color=None if color_by == "class" else color_by)
pred = None
if color_by not in ("class", "kept"):
    with st.spinner(f"Fitting the linear probe on the {words.plain(ctx.name)} train embeddings (once per model, then cached "
                    "for everyone) ..."), common.user_errors():
        pred, how = cache.predictions(m.path, m.cid, ctx.dataset)
    st.caption(f"Predictions: {how}.")

as_images = st.toggle("Images as points", key="emb_images",
                      help="Draw each test image itself at its position instead of a dot. The browser fetches the "
                           "thumbnails once and keeps them.")
classes = list(test.classes) if test is not None else list(SPECS[ctx.dataset].classes)
# where each point's image came from, for the tooltip: the test split's, or the shipped gallery's (the layout's order)
origins = [test.origins[i] for i in idx] if test is not None else list(gallery_origins(ctx.dataset)[:len(idx)])
df = charts.scatter_frame(xy, idx, labels, classes, pred, thumbs, trust["kept"] if color_by == "kept" else None,
                          origins if len(origins) == len(idx) else None)
if as_images:  # every point's image in the chart itself (one message, not a request per point)
    from ui import images as ui_images

    if shipped_view:
        from cl.layouts import gallery_images

        pictures = gallery_images(ctx.dataset)[:len(idx)]  # the layout's points, in its order
    else:
        pictures = test.images.numpy()[np.asarray(idx)]
    df = charts.with_point_images(df, ui_images.point_images(pictures))
chart = vega.spec(charts.scatter, df, color_by, classes, METHOD_NAMES[view.method], as_images=as_images)
# Above the chart: a tapped point's image and class. Touch has no hover, and on a phone a list below
# the chart is a screen away from the finger that tapped.
picked_box = st.container()
event = st.vega_lite_chart(spec=chart, on_select="rerun", selection_mode=["pick", "brush"], key="emb_scatter",
                           width="stretch")
st.markdown(trust_words(trust, METHOD_NAMES[view.method]), help=TRUST_HELP)  # under the map: a phone sees the map first
where = words.plain(test.describe() if test is not None else f"{ctx.name} test split, {n_total:,} images")
st.caption(f"{len(df):,} of {n_total:,} points ({where}). Hover a point for its image; click a point or "
           "drag a rectangle to list images below; double-click to clear."
           + (f" Neighbours kept: how many of each image's {trust['k']} nearest neighbours in the model's own space "
              f"(cosine similarity, among these {trust['n_points']:,} points) are also among its {trust['k']} nearest "
              "on the map." if color_by == "kept" else ""))

chosen = charts.selected_indices(event, df)


def true_vs_map(index: int) -> None:
    """One image's nearest neighbours in the model's space beside its nearest on the map."""
    at = np.flatnonzero(np.asarray(idx) == index)
    if not len(at):
        return
    pos = int(at[0])
    points = np.asarray(idx)
    true = points[np.asarray(trust["neighbors"][pos])]
    near = points[map_neighbors(xy, pos, trust["k"])]
    both = set(true.tolist()) & set(near.tolist())
    st.markdown(f"**Image #{index}: its {trust['k']} nearest neighbours in the model's space and on the map** "
                f"({len(both)} of {trust['k']} in both, marked ✓)")
    left, right = st.columns(2)
    for col, members, head in ((left, true, "In the model's space (cosine similarity): the truth"),
                               (right, near, f"On the {METHOD_NAMES[view.method]} map: what the picture suggests")):
        with col:
            st.caption(head)
            common.image_gallery(test.images[torch.from_numpy(members.astype(np.int64))],
                                 [f"{'✓ ' if i in both else ''}#{i} {test.classes[labels[i]]}" for i in members],
                                 ncol=5, scale=2)
# The selection: the map's (a click or a box), else the one a link carried; narrowed by class and
# file name; its images, a csv and a link that reopens it (ui.selection).
if len(chosen):
    state.set_widget("emb_link_sel", None)  # the map's own selection replaces a link's
elif links.asked("sel"):
    state.set_widget("emb_link_sel", links.asked("sel"))
if links.asked("cls") is not None:
    state.set_widget("emb_sel_classes", [int(k) for k in links.asked("cls").split(".")
                                         if k.isdigit() and int(k) < len(classes)])
if links.asked("q") is not None:
    state.set_widget("emb_sel_name", links.asked("q"))
with st.expander("Select by class or file name", expanded=bool(state.widget("emb_sel_classes") or
                                                              state.widget("emb_sel_name"))):
    f1, f2 = st.columns(2)
    picked_classes = f1.multiselect("Classes", list(range(len(classes))), format_func=lambda k: classes[k],
                                    key="emb_sel_classes", placeholder="every class",
                                    help="Keep only images of these classes (of the map's selection, or of every "
                                         "point when nothing is selected on the map).")
    name_part = f2.text_input("File name contains", key="emb_sel_name",
                              help="Keep only images whose file (its path in your folder or zip, or set/split/index "
                                   "for a built-in set) contains this text; upper and lower case alike.")
base = chosen
if not len(base) and state.widget("emb_link_sel"):
    carried = selection.decode(str(state.widget("emb_link_sel")), n_total)
    base = carried[np.isin(carried, idx)] if carried is not None else base
from_map_or_link = len(base) > 0
if not from_map_or_link and (picked_classes or name_part.strip()):
    base = np.asarray(idx, dtype=np.int64)
selected = np.zeros(0, dtype=np.int64)
if len(base):
    test_split()
    selected = selection.narrow(base, test.labels.numpy(), test.origins, picked_classes, name_part)
links.set_view(sel=selection.encode(base) if from_map_or_link else None,
               cls=".".join(str(k) for k in sorted(picked_classes)) or None, q=name_part.strip() or None)
if len(chosen):
    import torch

    labels = test.labels.numpy()
    with picked_box:
        first = int(chosen[0])
        said = f"#{first} {words.plain(test.origins[first])}: **{words.plain(test.classes[labels[first]])}**"
        if pred is not None and pred[first] >= 0 and pred[first] != labels[first]:
            said += f", the probe says {words.plain(test.classes[pred[first]])}"
        if len(chosen) > 1:
            said += f" (and {len(chosen) - 1:,} more selected: see below the map)"
        p1, p2 = st.columns([1, 4], vertical_alignment="center")
        from ui import images as ui_images

        p1.image(ui_images.to_array(test.images[first], 3), width=84)
        p2.markdown(said)
    true_vs_map(first)
if len(base):
    import torch

    labels = test.labels.numpy()
    shown = selected[:60]
    st.subheader(f"Selected: {len(selected):,} image(s)" + (" (first 60 shown)" if len(selected) > 60 else ""))
    caps = []
    for i in shown:
        text = f"{test.origins[i]} {test.classes[labels[i]]}"
        if pred is not None and pred[i] >= 0 and pred[i] != labels[i]:
            text += f" → {test.classes[pred[i]]}"
        caps.append(text)
    common.image_gallery(test.images[torch.from_numpy(shown)], caps, ncol=10, scale=2)
    if len(selected):
        counts = np.bincount(labels[selected], minlength=len(test.classes))
        st.caption("Classes in the selection: " + words.class_counts(test.classes, counts) + ".")
        sel_pred = pred
        if sel_pred is None:
            with st.spinner("Fitting the linear probe for the predicted classes (once per model) ..."), common.user_errors():
                sel_pred, _how = cache.predictions(m.path, m.cid, ctx.dataset)
        st.download_button(f"Download the {len(selected):,} selected images as csv", key="emb_sel_csv",
                           data=selection.csv_bytes(df, selected, test.origins, test.classes, labels, sel_pred),
                           file_name="selection.csv", mime="text/csv", icon=":material/download:")
        st.caption(f"csv: file, class, class predicted by the linear probe, map coordinates ({METHOD_NAMES[view.method]}, "
                   f"seed {view.seed}) and test index; {words.plain(test.describe())}. This page's address now "
                   "reopens the selection: copy it from the browser.")
    else:
        st.caption("No image of the selection matches the class and file-name filters.")


def augmented_views_section() -> None:
    """One image's K fresh augmented views, embedded and placed on this map by the method's own
    out-of-sample rule (cl.placement), drawn as thumbnails joined to the original."""
    from cl.catalog import AUGMENTATIONS
    from cl.placement import exact_query, place_views
    from ui import images as ui_images

    test_split()
    clicked = int(chosen[0]) if len(chosen) else None
    state.follow_views_click(clicked, int(idx[0]), len(test))
    own = m.config.get("augmentation") if m.config.get("augmentation") in AUGMENTATIONS else "none"
    c1, c2, c3, c4 = st.columns([1, 1.3, 1, 1])
    index = int(c1.number_input(f"Test image (0-{len(test) - 1:,})", 0, len(test) - 1, key=state.K_VIEWS_IMAGE,
                                help="Or click a point on the map."))
    aug = c2.selectbox("Augmentation", AUGMENTATIONS, index=AUGMENTATIONS.index(own), key=f"emb_views_aug_{m.cid}",
                       format_func=lambda a: f"{a} (the model's own)" if a == own else a)
    k = int(c3.slider("Views", 4, 32, 16, key="emb_views_k"))
    seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="emb_views_seed"))
    with st.spinner("Embedding the views and placing them on the map ..."), common.user_errors():
        net, _card = cache.model(m.path, m.cid)
        emb = cache.embeddings(m.path, m.cid, ctx.dataset, "test")
        placer = cache.placer(m.path, m.cid, ctx.dataset, view, shipped_view, _reference=emb[idx], _coords=xy)
        placed = place_views(net, placer, test.images[index], k, aug, seed)
    where_in = np.flatnonzero(np.asarray(idx) == index)
    original = xy[where_in[0]] if len(where_in) else placer.place(emb[index:index + 1])[0]
    lab = int(test.labels[index])
    # which class each view's 10 nearest map points mostly belong to
    near, _d = exact_query(emb[idx], placed.embeddings, min(10, len(idx)))
    point_labels = np.asarray(test.labels.numpy())[np.asarray(idx)]
    majority = np.array([np.bincount(point_labels[r], minlength=len(classes)).argmax() for r in near])
    moved = int((majority != lab).sum())
    scale = 2 if test.size <= 32 else 1
    title = f"{k} '{aug}' views of test image #{index} ({classes[lab]}) on the {METHOD_NAMES[view.method]} map"
    st.vega_lite_chart(spec=vega.spec(charts.views_map, df, original, placed.xy,
                                      ui_images.data_urls(placed.views, scale),
                                      ui_images.data_url(test.images[index], scale), classes,
                                      METHOD_NAMES[view.method], title), width="stretch")
    how = {"tsne": "openTSNE's transform (each view optimised against the fixed map)",
           "umap": "umap-learn's transform", "pca": "the map's PCA projection"}[view.method]
    st.caption(f"Red frame: the original, test image #{index} ({words.plain(classes[lab])})"
               f"{'' if len(where_in) else ', not among the map points: placed the same way'}. "
               f"Views embedded by {m.name} and placed by {how} in {placed.seconds:.2f} s. "
               f"{moved} of {k} views land among another class (the majority of their 10 nearest map points).")
    common.image_gallery(placed.views, [f"view {i}: near {classes[c]}" for i, c in enumerate(majority)],
                         ncol=8, scale=2)


st.subheader("Where an image's augmentations land")
if m.own:
    st.caption("Not offered for an embeddings file: placing augmented views needs the model that made the vectors.")
elif st.toggle("Show an image's augmented views on the map", key="emb_views",
               help="Fresh augmented views of one image, embedded by the model and placed on this map. Pick the image "
                    "by clicking a point or by its number."):
    augmented_views_section()

snap = m.replay()
if snap and snap.get("embeddings") and snap.get("dataset") == ctx.dataset:
    test_split()
    labels = test.labels.numpy()
    with st.expander(f"Replay: the embedding after each training epoch ({len(snap['epochs'])} epochs)", expanded=False):
        replay_method = st.radio("Layout", ["PCA", "t-SNE"], horizontal=True, key="emb_replay_method",
                                 help="PCA: each epoch's own projection, instant. t-SNE: each epoch's map starts from "
                                      "the next epoch's, so the animation morphs (computed once, a few seconds per "
                                      "epoch).")
        key = f"{m.cid}-{len(snap['epochs'])}"
        if replay_method == "t-SNE":
            with st.spinner(f"t-SNE of {len(snap['epochs'])} epochs, each started from the next ..."):
                frames = cache.snapshot_tsne(key, snap)
        else:
            frames = cache.snapshot_projection(key, snap)
        sidx = np.asarray(snap["indices"])
        epochs = list(snap["epochs"])

        def draw(k: int) -> None:
            sdf = charts.scatter_frame(frames[k], sidx, labels, test.classes, None, thumbs)
            st.vega_lite_chart(spec=vega.spec(charts.scatter, sdf, "class", test.classes, replay_method, height=420,
                                              selectable=False, title=f"Epoch {epochs[k]}: {replay_method} of "
                                                                      f"{len(sidx):,} {ctx.name} test images"),
                               width="stretch")

        def play() -> None:
            k = state.replay_frame()
            draw(min(k, len(epochs) - 1))
            if k < len(epochs) - 1:
                state.set_replay_frame(k + 1)

        if st.toggle("Play", key="emb_play", on_change=state.set_replay_frame, args=(0,),
                     help="Step through the epochs, one a second."):
            st.fragment(play, run_every=1.0)()
        else:
            epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key="emb_epoch")
            draw(epochs.index(epoch))
        st.caption("PCA: each epoch's own, axes flipped to agree with the last epoch. t-SNE: the last epoch's map, and "
                   "each earlier one started from its successor, so points move only as their neighbours change.")
        path = [h for h in m.typed_card.training.history if "alignment" in h]
        if path:  # the same training as a path through the alignment-uniformity plane
            from ui.measures import alignment_path

            st.vega_lite_chart(spec=vega.spec(alignment_path, path, f"{ctx.name} test images, a fixed sample"),
                               width="stretch")
