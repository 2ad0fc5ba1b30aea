"""Small helpers shared by pages: guards, error display, image rows."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from cl.errors import UserError

from . import demo
from .words import plain

if TYPE_CHECKING:  # torch is imported only by pages that show images
    import torch


def require_model(ctx) -> None:
    """Stop the page with guidance when no model fits the chosen data set."""
    if ctx.model is None:
        st.info(f"No model fits {plain(ctx.name)} yet. Train one first (one short epoch on digits is enough to "
                f"look around), or choose another data set in the sidebar.", icon=":material/model_training:")
        st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
        st.stop()
    if not ctx.test_available:
        st.error(f"The {plain(ctx.name)} test split is not available here: {ctx.status.get('test_error', '')}")
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
    from . import state

    cross = ("" if m.dataset == ctx.dataset else
             f" (trained on {state.dataset_label(m.dataset)}, applied to {state.dataset_label(ctx.dataset)})")
    return f"Model **{plain(m.name)}**{plain(cross)}: {plain(m.train_note())}."


def image_gallery(images: torch.Tensor, captions: list[str], ncol: int = 10, scale: int = 3) -> None:
    """Small images with captions in rows that wrap to the screen: at most ``ncol`` on a wide page,
    as many as fit on a phone (fixed-size images in one flowing list, not columns, which a phone
    stacks one per row at full width)."""
    from . import images as ui_images  # imports torch: pages that show no images start without it

    if not len(captions):
        return
    if images.shape[-1] == 0:  # an embeddings file without its images: the captions say which rows, one a line
        st.caption("\n".join(f"- {plain(c)}" for c in captions))
        return
    captions = [plain(c) for c in captions]  # image captions are Markdown; these carry the person's names
    side = int(images.shape[-1]) * scale
    arrays = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    st.image(ui_images.gallery_pngs(arrays[:len(captions)], scale), caption=list(captions), width=max(side, 56))
    del ncol  # the page's width decides how many fit in a row


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def upload_limit_mb(own_limit_bytes: int) -> int:
    """The size limit an uploader states and enforces: its own limit, but never more than the
    server accepts (``server.maxUploadSize``; a larger file would fail with HTTP 413)."""
    from streamlit import config

    server_mb = int(config.get_option("server.maxUploadSize"))
    return max(1, min(own_limit_bytes // 2**20, server_mb))
