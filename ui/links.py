"""Deep links: each view lives in the URL's query string, so a link or a reload reopens it.

    /embedding?dataset=mnist&model=mnist-best&method=tsne

``dataset`` and ``model`` (a shipped checkpoint's file stem) belong to every page and are
written by the sidebar; a page adds its own view parameters (the Embedding page: ``method``)
with :func:`set_view`. Models trained or uploaded in a session have no name another visitor
could open, so their links carry the data set only.

The sidebar applies the URL only when it differs from what this session last wrote there
(a fresh visit, a pasted link, the browser's back button), so the URL never fights the widgets.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from . import state

SHARED = ("dataset", "model")
# page url path -> its own view parameters (the Train page: the run it shows; the Study page: its
# tab; the Embedding page: the projection, the points, the colouring and the selection (ui.selection);
# Augmentations: its grid)
PAGE_VIEW = {"embedding": ("method", "points", "color", "sel", "cls", "q"), "train": ("run",), "study": ("tab",),
             "augmentations": ("aug", "anchors", "zoom", "draw")}
KNOWN = SHARED + tuple(p for ps in PAGE_VIEW.values() for p in ps)


def page_link_url(page: str, **params) -> str:
    """A relative URL that opens ``page`` (its url path: ``embedding``, ``study``; ``""`` for the
    Overview) with ``params``, e.g. ``embedding?dataset=mnist&model=mnist-best&method=tsne``."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{page}?{query}" if query else (page or "./")


def requested() -> dict[str, str]:
    """The view parameters in the URL now (unknown keys ignored)."""
    return {k: str(st.query_params[k]) for k in KNOWN if k in st.query_params}


def capture() -> dict[str, str]:
    """Called first in every run (the sidebar): the URL's view parameters now, kept for the page
    (:func:`asked`), and whether they are a new link rather than this session's own writing."""
    params = requested()
    new = is_new(params)
    state.set_url_at_start({"params": params, "new": new})
    return params


def asked(name: str, only_new: bool = True) -> str | None:
    """The value of view parameter ``name`` the URL held when this run began: only when it came
    from outside this session (a link, a reload, the back button) unless ``only_new`` is False."""
    got = state.url_at_start()
    if only_new and not got.get("new"):
        return None
    return (got.get("params") or {}).get(name)


def preset(name: str, key: str, options, convert=str) -> None:
    """Preset widget ``key`` from a new link's parameter ``name`` (before the widget is drawn);
    a value not among ``options`` is ignored."""
    raw = asked(name)
    if raw is None:
        return
    try:
        value = convert(raw)
    except (TypeError, ValueError):
        return
    if value in options:
        state.set_widget(key, value)


def is_new(params: dict[str, str]) -> bool:
    """Whether the URL holds something this session did not write itself."""
    return bool(params) and params != state.url_written()


def write(params: dict[str, str | None]) -> None:
    """Make the URL's view parameters exactly ``params`` (``None`` values dropped); other query
    parameters are left alone. Writes only on a change (each write is a browser history step)."""
    want = {k: str(v) for k, v in params.items() if v is not None}
    now = requested()
    if now != want:
        # Drop only what this session wrote before (and the shared keys): a page's own parameters
        # that another page happens to name alike (the Batch page's ``anchors``) stay.
        for k in (*SHARED, *state.url_written()):
            if k in st.query_params and k not in want:
                del st.query_params[k]
        for k, v in want.items():
            if st.query_params.get(k) != v:
                st.query_params[k] = v
    state.set_url_written(want)


def set_view(**params) -> None:
    """A page adds its own view parameters to the shared ones the sidebar wrote this run."""
    write({**state.url_written(), **params})
