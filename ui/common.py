"""Small helpers shared by pages: guards, error display, image rows."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from cl.errors import UserError

from . import demo

if TYPE_CHECKING:  # torch is imported only by pages that show images
    import torch


def require_model(ctx) -> None:
    """Stop the page with guidance when no model fits the chosen data set."""
    if ctx.model is None:
        st.info(f"No model fits {ctx.dataset} yet. Train one first (one short epoch on digits is enough to "
                f"look around), or choose another data set in the sidebar.", icon=":material/model_training:")
        st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
        st.stop()
    if not ctx.test_available:
        st.error(f"The {ctx.dataset} test split is not available here: {ctx.status.get('test_error', '')}")
        st.stop()


@contextmanager
def user_errors(prefix: str = ""):
    """Show a cl UserError as a message (never a traceback) and stop the page."""
    try:
        yield
    except UserError as err:
        st.error(demo.scrub(f"{prefix}{err}"), icon=":material/error:")
        st.stop()


def model_line(ctx) -> str:
    m = ctx.model
    cross = "" if m.dataset == ctx.dataset else f" (trained on {m.dataset}, applied to {ctx.dataset})"
    return f"Model **{m.name}**{cross}: {m.train_note()}."


def image_gallery(images: torch.Tensor, captions: list[str], ncol: int = 10, scale: int = 3) -> None:
    """A grid of small images with captions (Streamlit columns, wrapping every ``ncol``)."""
    from . import images as ui_images  # imports torch: pages that show no images start without it

    n = len(captions)
    for start in range(0, n, ncol):
        cols = st.columns(ncol)
        for j, i in enumerate(range(start, min(start + ncol, n))):
            with cols[j]:
                st.image(ui_images.to_array(images[i], scale), caption=captions[i], width="stretch")


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"
