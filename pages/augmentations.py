"""Augmentations: anchor / positive / negative grids and the augmentations side by side."""

import numpy as np
import streamlit as st
import torch

from cl.augmentations import AUGMENTATIONS, PAPER_AUGMENTATIONS
from cl.samplers import draw_negatives
from ui import cache, common, links, own, state
from ui import images as ui_images
from ui.sidebar import AUG_HELP
from ui.words import plain

ctx = state.context()
st.title("Augmentations")
if ctx.model is not None and ctx.model.own:
    own.needs_a_model("Showing augmentations")
st.caption("A contrastive model learns that an image and its augmented copy (the positive) belong together and "
           "that an image of another class (the negative) does not. What the augmentation changes is what the "
           "model learns to ignore.")
st.page_link("pages/batch.py", label="What the loss sees: one training batch, its pairs and triplets", icon=":material/grid_on:")

split = "train" if ctx.train_available else "test"
with common.user_errors():
    data = cache.load_data(ctx.dataset, split)

aug_names = list(AUGMENTATIONS)
aug_key = f"aug_name_{ctx.model.path if ctx.model else ''}"
# A link (a slide) reopens these grids: ?aug=simclr&anchors=12&zoom=2&draw=3
links.preset("aug", aug_key, aug_names)
links.preset("anchors", "aug_n", range(4, 17), int)
links.preset("zoom", "aug_scale", (2, 3, 4), int)
if (links.asked("draw") or "").isdigit():
    state.set_aug_seed(int(links.asked("draw")))
c0, c1, c2, c3 = st.columns([2, 2, 1, 1])
# Opens on the active model's own augmentation; any other can be looked at here.
chosen_aug = c0.selectbox("Augmentation", aug_names, key=aug_key,
                          index=aug_names.index(ctx.augmentation) if ctx.augmentation in aug_names else 0,
                          format_func=lambda a: AUG_HELP.get(a, a),
                          help="The active model's augmentation is selected first.")
n = c1.slider("Anchors", 4, 16, 8, key="aug_n")
scale = c2.select_slider("Zoom", [2, 3, 4], value=3, key="aug_scale")
c3.button("Re-roll", icon=":material/casino:", on_click=state.reroll_augmentations, key="aug_reroll",
          help="Draw new anchors and new random augmentations.")
seed = state.aug_seed()
links.set_view(aug=chosen_aug, anchors=n, zoom=scale, draw=seed or None)

rng = np.random.default_rng(seed)
labels = data.labels.numpy()
anchors = rng.choice(len(data), size=min(n, len(data)), replace=False)
# label-aware negatives, as in the study: an image of a different class
negatives = draw_negatives(labels, anchors, rng, "label-aware")
anchor_imgs = data.images[torch.from_numpy(anchors)]
negative_imgs = data.images[torch.from_numpy(negatives)]

st.subheader(f"Pairs with {AUG_HELP.get(chosen_aug, chosen_aug)}")
st.caption(f"{len(anchors)} anchors drawn at random from {plain(data.describe())} (draw {seed}). In the study only the "
           "positive is augmented and the anchor is just normalised; the default recipe augments both views.")
names = [data.classes[labels[a]] for a in anchors]
anchor_ids = tuple(int(i) for i in anchors)
for title, picture, caps in (
    ("Anchor", ui_images.grid_png(anchor_imgs, ncol=len(anchors), scale=scale), names),
    (f"Positive: the anchor after {chosen_aug}",
     cache.augmented_grid(ctx.dataset, split, chosen_aug, anchor_ids, seed, scale), names),
    ("Negative: an image of another class", ui_images.grid_png(negative_imgs, ncol=len(negatives), scale=scale),
     [data.classes[labels[i]] for i in negatives]),
):
    st.markdown(f"**{title}** · " + ", ".join(plain(c) for c in caps))
    st.image(picture)

st.subheader("All augmentations side by side")
st.caption(f"The same {len(anchors)} anchors from {plain(data.describe())}, one row per augmentation; the study compared "
           f"{', '.join(PAPER_AUGMENTATIONS)}.")
for name in AUGMENTATIONS:
    st.markdown(f"**{AUG_HELP.get(name, name)}**")
    st.image(cache.augmented_grid(ctx.dataset, split, name, anchor_ids, seed * 7919 + 1, scale))
