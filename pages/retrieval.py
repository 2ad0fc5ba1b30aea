"""Retrieval: nearest neighbours of a test image, an uploaded image, a drawing or a photo.

The upload, the drawing (streamlit-drawable-canvas) and the camera photo all become image bytes
and go through the same preparation (:func:`cl.retrieval.prepare_query`) and the same display."""

import numpy as np
import streamlit as st
import torch

from cl.errors import UserError
from cl.images import MAX_BYTES as MAX_IMAGE_BYTES
from cl.retrieval import NeighborIndex, SimilarityScale, embed_one, fmt_match, ink_share, is_blank, prepare_query
from ui import cache, common, state
from ui import images as ui_images
from ui import measures as shape
from ui.words import class_counts, plain

ctx = state.context()
st.title("Retrieval")
common.require_model(ctx)
m = ctx.model
with common.user_errors():
    test = cache.load_data(ctx.dataset, "test")
    emb = cache.embeddings(m.path, m.cid, ctx.dataset, "test")
    net = None if m.own else cache.model(m.path, m.cid)[0]  # an embeddings file has no network
index = NeighborIndex(emb, test.labels.numpy())
labels = test.labels.numpy()


@st.cache_data(max_entries=8, show_spinner=False)
def similarity_scale(path: str, cid: str, dataset: str) -> SimilarityScale:
    """Each test image's similarity to its nearest other test image: what a neighbour's match is
    measured against (once per model and data set, for everyone)."""
    return SimilarityScale(cache.embeddings(path, cid, dataset, "test"))


scale = similarity_scale(m.path, m.cid, ctx.dataset)
st.caption(f"{common.model_line(ctx)} Neighbours are searched among {plain(test.describe())} by cosine similarity.")
card_measures = shape.from_card(m.card, ctx.dataset)
if card_measures is not None and shape.is_collapsed(card_measures):
    st.warning(f"This model has collapsed ({shape.COLLAPSE_TEXT}): every test image lands on nearly the same "
               "direction, so every similarity is close to 1 and the neighbours below depend on differences far "
               "smaller than the images' own.", icon=":material/warning:")

k = st.slider("Neighbours (k)", 1, 50, 10, key="ret_k")


def show_neighbours(hits, query_label: int | None) -> None:
    hits = scale.rate(hits)
    imgs = test.images[torch.tensor([h.index for h in hits], dtype=torch.long)]
    caps = [f"{test.classes[h.label]} · {fmt_match(h.percentile)} · {test.origins[h.index]}" for h in hits]
    common.image_gallery(imgs, caps, ncol=min(10, max(5, len(hits))), scale=3)
    if hits:
        sims = [h.similarity for h in hits]
        st.caption(f"**Match**: how this neighbour's similarity compares with {plain(scale.describe())}; 50 % = as close "
                   "as a typical test image is to its nearest neighbour, near 0 % = a poor match. These neighbours' "
                   f"cosine similarities: {min(sims):.3f} to {max(sims):.3f} (this model's cosines alone do not tell "
                   "good matches from bad).")
    if query_label is not None and hits:
        same = sum(h.label == query_label for h in hits)
        st.caption(f"{same} of {len(hits)} neighbours share the query's class ({plain(test.classes[query_label])}).")
    else:
        counts = np.bincount([h.label for h in hits], minlength=len(test.classes))
        st.caption("Neighbours by class: " + class_counts(test.classes, counts) + ".")


INDEX_KEY = f"ret_index_{ctx.dataset}"  # one per data set: their sizes differ


def _random_query() -> None:
    state.set_widget(INDEX_KEY, int(np.random.default_rng().integers(len(test))))


# An embeddings file has its rows only: a new image would need the model that made them.
tabs = st.tabs(["A test image"] if m.own else ["A test image", "Your own image", "Draw", "Photo"])
tab_test = tabs[0]
with tab_test:
    c1, c2 = st.columns([3, 1])
    i = int(c1.number_input(f"Test image index (0 to {len(test) - 1:,})", 0, len(test) - 1, 0, key=INDEX_KEY))
    c2.button("Random image", on_click=_random_query, key="ret_random", icon=":material/casino:")
    q1, q2 = st.columns([1, 5])
    with q1:
        query_caption = plain(f"query #{i} {test.origins[i]}: {test.classes[labels[i]]}")
        if test.size:
            st.image(ui_images.to_array(test.images[i], 4), caption=query_caption)
        else:  # an embeddings file without its images
            st.markdown(query_caption)
    with q2:
        hits = index.query(emb[i], k=k, exclude=i)
        st.markdown(f"**Top {len(hits)} neighbours** (class · match · image; the query is excluded)")
        show_neighbours(hits, int(labels[i]) if ctx.status.get("labelled", True) else None)


def query_panel(data: bytes, name: str, invert: str, what: str) -> None:
    """Prepare image bytes like an upload, show original, what the model sees, the steps, and
    the neighbours of ``what`` ("your image", "your drawing", "your photo")."""
    prepared = None
    try:
        if len(data) > MAX_IMAGE_BYTES:
            raise UserError(f"{name}: {len(data) / 2**20:.1f} MB is over the {MAX_IMAGE_BYTES // 2**20} MB limit for an image")
        prepared = prepare_query(data, test.channels, test.size, ctx.dataset,
                                 invert={"auto": "auto", "yes": True, "no": False}[invert])
    except UserError as err:
        st.error(f"Cannot use this file: {err}", icon=":material/broken_image:")
    except Exception:  # noqa: BLE001 - hostile files must never surface as a traceback
        st.error(f"Cannot use this file: {name} could not be read as an image.", icon=":material/broken_image:")
    if prepared is None:
        return
    u1, u2, u3 = st.columns([1, 1, 2])
    with u1:
        preview = ui_images.bytes_preview(data)
        if preview is not None:
            st.image(preview, caption=f"{what}: {prepared.original_size[0]}x{prepared.original_size[1]} "
                                      f"{prepared.original_mode}")
    with u2:
        st.image(ui_images.to_array(prepared.tensor, 4),
                 caption=f"what the model sees: {test.size}x{test.size}, "
                         f"{'grey' if test.channels == 1 else 'colour'}")
    with u3:
        st.markdown("**Preprocessing**")
        steps = prepared.steps or ["none: already in the right format"]
        st.markdown("\n".join(f"1. {s}" for s in steps))
        st.caption(f"Inverted: {'yes' if prepared.inverted else 'no'} (setting: {invert}).")
    hits = index.query(embed_one(net, prepared.tensor), k=k)
    if is_blank(prepared.tensor):
        # the model embeds a blank like any image, so it has neighbours; they are not matches
        st.warning(f"{what[0].upper() + what[1:]} is blank as the model sees it ({ink_share(prepared.tensor):.1%} of "
                   "its pixels differ from the background): its nearest neighbours are only whatever the model puts "
                   "near an empty picture and say nothing about the image.", icon=":material/block:")
        with st.expander(f"Show the {len(hits)} neighbours anyway"):
            show_neighbours(hits, None)
        return
    st.markdown(f"**Top {len(hits)} neighbours of {what}** among {plain(test.describe())}")
    show_neighbours(hits, None)


if m.own:
    st.caption("Not offered for an embeddings file: searching with a new image (upload, drawing, photo) needs the "
               "model that made the vectors.")
    st.stop()
tab_upload, tab_draw, tab_photo = tabs[1:]
INVERT_HELP = "Digits in these data sets are light strokes on black; auto inverts dark-on-light images."
FORMAT_NOTE = (f"it is converted to the {plain(ctx.name)} format ({test.channels} channel{'s' if test.channels > 1 else ''}, "
               f"{test.size}x{test.size}) and searched against the test images")

with tab_upload:
    image_limit_mb = common.upload_limit_mb(MAX_IMAGE_BYTES)  # stated and enforced by the widget
    st.markdown(f"Upload a photo or drawing; {FORMAT_NOTE}. Any image type; at most {image_limit_mb} MB.")
    upload = st.file_uploader("Image file", key="ret_upload", max_upload_size=image_limit_mb,
                              help="PNG, JPEG, GIF (first frame), BMP, TIFF, WebP; SVG and other vector formats "
                                   "are not supported.")
    invert = st.radio("Invert colours", ["auto", "yes", "no"], horizontal=True, key="ret_invert", help=INVERT_HELP)
    if upload is not None:
        query_panel(upload.getvalue(), upload.name, invert, "your image")

with tab_draw:
    st.markdown(f"Draw with the mouse or a finger, dark on light; {FORMAT_NOTE}. The search runs when you lift "
                "the pen; the canvas's toolbar undoes and clears.")
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # noqa: BLE001 - missing or failing to register: the page still works
        st.info("Drawing is not available on this server (the streamlit-drawable-canvas package is missing); "
                "upload an image instead.", icon=":material/draw:")
    else:
        d1, d2 = st.columns([1, 2])
        with d1:
            width = st.slider("Pen width", 4, 40, 18, key="ret_pen")
            canvas = st_canvas(stroke_width=int(width), stroke_color="#000000", background_color="#ffffff",
                               height=280, width=280, drawing_mode="freedraw", return_image_data=True,
                               update_streamlit=True, key="ret_canvas")
        with d2:
            drawing = ui_images.canvas_png(canvas.image_data if canvas is not None else None)
            if drawing is None:
                st.caption("Nothing drawn yet.")
        if drawing is not None:
            query_panel(drawing, "drawing.png", state.widget("ret_invert", "auto"), "your drawing")

with tab_photo:
    st.markdown(f"Take a photo with this device's camera; {FORMAT_NOTE}; the photo is not saved on the server.")
    photo = st.camera_input("Photo", key="ret_camera")
    if photo is not None:
        query_panel(photo.getvalue(), "photo.jpg", state.widget("ret_invert", "auto"), "your photo")
