"""Overview: what the app shows, which data sets are here, which models exist."""

import pandas as pd
import streamlit as st

from cl.data import SPECS
from ui import cache, demo, jobs, models, state
from ui.words import GLOSSARY, glossary_markdown

ctx = state.context()

st.title("Contrastive Explorer")
st.markdown(
    "How do the **augmentation** and the **data set** change what a contrastive encoder learns, for a "
    "**pairwise** and a **triplet** loss? This app retraces a small study (2 data sets x 3 augmentations x 2 "
    "losses) and lets you look inside: train a model, see its augmented pairs, its embedding space, its "
    "metrics and confusions, and which images it thinks are alike, including one you upload.")

cols = st.columns(3)
cols[0].page_link("pages/train.py", label="Train a model", icon=":material/model_training:")
cols[0].caption("Live loss, images/s and kNN accuracy per epoch; cancel any time.")
cols[1].page_link("pages/embedding.py", label="Explore the embedding space", icon=":material/scatter_plot:")
cols[1].caption("t-SNE, UMAP or PCA of every test image; hover for the picture.")
cols[2].page_link("pages/retrieval.py", label="Find similar images", icon=":material/image_search:")
cols[2].caption("Nearest neighbours of a test image or of your own upload.")

st.subheader("Data sets on this machine")
rows = []
for name, spec in SPECS.items():
    s = cache.status(name)
    rows.append({
        "data set": name,
        "format": f"{spec.channels}x{spec.size}x{spec.size}",
        "train images here": s.get("n_train", 0),
        "of (full split)": spec.n_train_full,
        "test images here": s.get("n_test", 0),
        "of (full test)": spec.n_test_full,
        "available": "yes" if s.get("available") else ("test gallery only" if s.get("n_test") else "no"),
        # What the visitor can do; where the files go is for the command line (`python -m cl datasets`).
        "note": ("train split not here: explore only" if s.get("n_test") and not s.get("n_train") else
                 "not here" if not s.get("n_test") else
                 "" if s.get("train_complete", True) else "partial train split"),
    })
# A static table: four rows need no grid, and a grid's toolbar covers the heading on a phone.
st.table(pd.DataFrame(rows).set_index("data set"))
st.caption("Counts are what this server holds; a partial split is always named as such. "
           + GLOSSARY["1x28x28"] + " digits ships with scikit-learn and works offline.")

st.subheader("Models")
shipped, problems = models.shipped_models()
st.markdown(f"- **{len(shipped)}** shipped checkpoint(s) in `{demo.show_path(models.checkpoints_dir())}`"
            + (f" ({len(problems)} unreadable file(s) skipped)" if problems else ""))
st.markdown(f"- **{len(state.session_models())}** model(s) trained in this session, "
            f"saved under `{demo.show_path(models.runs_dir())}`")
st.markdown(f"- trainings running on this server: **{len(jobs.running())}** of at most {jobs.max_concurrent()}")
if ctx.model is not None:
    st.success(f"Active model: **{ctx.model.name}**, {ctx.model.train_note()}.", icon=":material/check_circle:")
else:
    st.info("No model yet for the chosen data set: start on the Train page.", icon=":material/info:")

with st.expander("Words used in this app", icon=":material/menu_book:"):
    st.markdown(glossary_markdown())
