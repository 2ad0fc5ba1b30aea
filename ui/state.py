"""Everything the app keeps per browser session, in one place.

Every read and write of ``st.session_state`` goes through this module, so what a session owns
is listed here and nothing leaks between sessions: session state is per session by
construction, and the server-wide objects (all listed in :mod:`ui.shared`) are keyed by content
or by this session's id.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import streamlit as st

from cl.projection import ProjectionParams

# Widget keys (widgets own these entries; read them with :func:`widget`).
K_DATASET = "sb_dataset"
K_MODEL = "sb_model"
K_BYO_OPEN = "byo_open"  # the sidebar's "Bring your own" toggle
K_UPLOAD_MODEL = "byo_model"  # the sidebar's checkpoint uploader
K_UPLOAD_ARCHIVE = "byo_archive"  # the sidebar's image-archive uploader
K_UPLOAD_EMBEDDINGS = "byo_embeddings"  # the sidebar's uploader of an embeddings file and its images
K_COMPARE_A = "cmp_a"  # the Compare page's two model choices
K_COMPARE_B = "cmp_b"
K_VIEWS_IMAGE = "emb_views_index"  # the Embedding page's "Test image" of the augmented views

# Plain entries owned by the app.
_SESSION_ID = "session_id"
_SESSION_MODELS = "session_models"  # list of dicts: path, name, card, snapshots
_JOB_ID = "job_id"
_ACTIVE_MODEL = "active_model"  # path of the chosen model
_CONTEXT = "context"  # the sidebar's resolved choices for this run
_AUG_SEED = "aug_seed"
_PROJECTION = "projection_request"
_FLASH = "flash"
_REPLAY = "replay_frame"
_LAST_DATASET = "last_dataset"
_URL_WRITTEN = "url_written"  # the view parameters this session last put in the URL
_SESSION_DATASETS = "session_datasets"  # list of dicts: name (archive:ID), label, summary
_BYO_NOTES = "byo_notes"  # what became of the last upload of each kind: kind -> (level, text)
_BARE_RERUN = "bare_rerun"  # this session once reran a page that started without app.py
_BATCH_LINK = "batch_link"  # the Batch page's view parameters this session last put in the URL
_OWNER = "owner_key"  # this browser's key (the ce_owner cookie), or a new one
_OWNER_SET = "owner_cookie_sent"  # this session has sent the script that stores the key
_JOBS_DONE = "jobs_registered"  # ids of finished trainings this session has taken in
_VIEWED_RUN = "viewed_run"  # the run the Train page shows
_URL_AT_START = "url_at_start"  # the view parameters the URL held when this run began
_VIEWS_CLICKED = "emb_views_clicked"  # the map point this session last clicked for the augmented views
_ROOM_PRESENTED = "room_presented"  # the live room this session opened: code and secret (never in a URL)
_ROOM_VIEW = "room_view"  # the presenter's copy of its room's rows and what its browser holds
_ROOM_PHONE = "room_phone"  # the audience page: rooms joined, the last result, the canvas generation

OWNER_COOKIE = "ce_owner"
_OWNER_FORMAT = re.compile(r"[0-9a-f]{32}")

MAX_SESSION_MODELS = 20
MAX_SESSION_DATASETS = 5
MAX_REPLAYS = 3


def _get(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, default)


def _set(key: str, value: Any) -> None:
    st.session_state[key] = value


def widget(key: str, default: Any = None) -> Any:
    """The current value of a widget with ``key``."""
    return st.session_state.get(key, default)


def set_widget(key: str, value: Any) -> None:
    """Preset a widget's value (only before the widget is drawn in this run)."""
    st.session_state[key] = value


def session_id() -> str:
    sid = _get(_SESSION_ID)
    if sid is None:
        sid = uuid.uuid4().hex
        _set(_SESSION_ID, sid)
    return sid


def owner_key() -> str:
    """Who started a training, surviving a reload: the browser's ``ce_owner`` cookie (a random
    key this app set; every tab of that browser sends it), else a new key for this session,
    which :func:`remember_owner` stores in the browser when it starts a training. A copied link
    opened elsewhere has another key: it sees the run, not its Cancel."""
    key = _get(_OWNER)
    if key is None:
        try:
            cookie = st.context.cookies.get(OWNER_COOKIE)
        except Exception:  # noqa: BLE001 - no browser request (a bare script run)
            cookie = None
        if isinstance(cookie, str) and _OWNER_FORMAT.fullmatch(cookie):
            key = cookie
            _set(_OWNER_SET, True)  # the browser has it already
        else:
            key = session_id()
        _set(_OWNER, key)
    return key


def remember_owner() -> None:
    """Store this session's owner key in the browser (once): a reload or another tab of the same
    browser is then the same owner. Streamlit reads cookies but cannot set them, so a line of
    script does (``SameSite=Lax``, 30 days, the app's whole path)."""
    key = owner_key()
    if _get(_OWNER_SET) or not _OWNER_FORMAT.fullmatch(key):
        return
    _set(_OWNER_SET, True)
    st.html(f"<script>document.cookie = '{OWNER_COOKIE}={key}; Path=/; Max-Age=2592000; SameSite=Lax';</script>",
            unsafe_allow_javascript=True, width="content")


# ----------------------------------------------------------------- models trained in this session
def session_models() -> list[dict]:
    return list(_get(_SESSION_MODELS, []))


def add_session_model(entry: dict) -> None:
    models = [m for m in _get(_SESSION_MODELS, []) if m["path"] != entry["path"]]
    models.append(entry)
    models = models[-MAX_SESSION_MODELS:]  # bounded: a session lists its latest models
    for m in models[:-MAX_REPLAYS]:  # and keeps the per-epoch replay of the newest few only
        if m.get("snapshots") is not None:
            m["snapshots"] = None
    _set(_SESSION_MODELS, models)


def session_model(path: str) -> dict | None:
    for m in _get(_SESSION_MODELS, []):
        if m["path"] == path:
            return m
    return None


def active_model() -> str | None:
    return _get(_ACTIVE_MODEL)


def set_active_model(path: str | None) -> None:
    _set(_ACTIVE_MODEL, path)
    # The sidebar's selectbox follows the active model on the next run.
    if path is not None:
        st.session_state[K_MODEL] = path
    elif K_MODEL in st.session_state:
        del st.session_state[K_MODEL]


def remember_active_model(path: str) -> None:
    """Record the model the sidebar shows (the widget already holds it)."""
    _set(_ACTIVE_MODEL, path)


# ----------------------------------------------------------------- image sets uploaded in this session
def session_datasets() -> list[dict]:
    return list(_get(_SESSION_DATASETS, []))


def add_session_dataset(entry: dict) -> None:
    """Record an uploaded image set (``entry["name"]`` is its ``archive:ID`` data-set name); the
    latest :data:`MAX_SESSION_DATASETS` stay listed."""
    items = [d for d in _get(_SESSION_DATASETS, []) if d["name"] != entry["name"]]
    items.append(dict(entry))
    _set(_SESSION_DATASETS, items[-MAX_SESSION_DATASETS:])


def dataset_label(name: str) -> str:
    """How a data set is named to the visitor: an uploaded archive by its file name (from this
    session's list, else from the archive's manifest: a link or a reload); an embeddings file by its file name."""
    if name.startswith("embeddings:"):
        from . import own

        return own.label(name)
    for d in _get(_SESSION_DATASETS, []):
        if d["name"] == name:
            return f"{d['label']} (your image set)"
    if name.startswith("archive:"):
        from cl.archive import read_manifest
        from cl.errors import UserError

        try:
            return f"{read_manifest(name[len('archive:'):]).archive_name} (an uploaded image set)"
        except UserError:
            return "an uploaded image set no longer on this server"
    return name


def drop_session_dataset(name: str) -> None:
    _set(_SESSION_DATASETS, [d for d in _get(_SESSION_DATASETS, []) if d["name"] != name])


def byo_note(kind: str) -> tuple[str, str] | None:
    """The message about this session's last upload of ``kind`` (``model``, ``archive`` or ``embeddings``)."""
    note = (_get(_BYO_NOTES) or {}).get(kind)
    return None if note is None else (note[0], note[1])


def byo_note_about(kind: str) -> str | None:
    """What the note of ``kind`` is about (the uploaded model's path), when it said so."""
    note = (_get(_BYO_NOTES) or {}).get(kind)
    return note[2] if note is not None and len(note) > 2 else None


def clear_byo_note(kind: str) -> None:
    notes = dict(_get(_BYO_NOTES) or {})
    notes.pop(kind, None)
    _set(_BYO_NOTES, notes)


def set_byo_note(kind: str, level: str, text: str, about: str | None = None) -> None:
    """Record what became of an upload; an upload taken in also retires the other uploader's old
    error (it no longer applies once something was taken in)."""
    notes = dict(_get(_BYO_NOTES) or {})
    if level != "error":  # the upload was taken in (a warning only says how to use it)
        notes = {k: v for k, v in notes.items() if v[0] != "error"}
    notes[kind] = (level, text, about)
    _set(_BYO_NOTES, notes)


# ----------------------------------------------------------------- training job of this session
def job_id() -> str | None:
    return _get(_JOB_ID)


def set_job_id(value: str | None) -> None:
    _set(_JOB_ID, value)


def viewed_run() -> str | None:
    """The training run the Train page shows (its ``?run=``)."""
    return _get(_VIEWED_RUN)


def set_viewed_run(run_id: str | None) -> None:
    _set(_VIEWED_RUN, run_id)


def job_registered(job_id: str) -> bool:
    """Whether this session has taken in the finished training ``job_id`` (made it active)."""
    return job_id in (_get(_JOBS_DONE) or ())


def register_job(job_id: str) -> None:
    _set(_JOBS_DONE, [*(_get(_JOBS_DONE) or ())[-20:], job_id])


# ----------------------------------------------------------------- per-run context from the sidebar
def set_context(ctx) -> None:
    _set(_CONTEXT, ctx)


def context():
    """The sidebar's choices for this run (pages call this first)."""
    _through_app()
    ctx = _get(_CONTEXT)
    if ctx is None and not _get(_BARE_RERUN):
        # This run began bare while another session's first run was clearing the v1 flag
        # (several visitors' deep links at once on a fresh server): once, rerun through app.py.
        _set(_BARE_RERUN, True)
        st.rerun()
    if ctx is None:
        raise RuntimeError("the sidebar has not run yet (start the app with `streamlit run app.py`)")
    return ctx


def _through_app() -> None:
    """Make sure this page runs under app.py's st.navigation.

    Streamlit treats a project with a ``pages/`` folder as a v1 multipage app until the first
    ``st.navigation`` call; a server whose very first request is a page URL (a bookmark after a
    restart) would run that page file bare, without the sidebar. ``st.navigation`` clears the
    flag, so when it is still set here we clear it and rerun through app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def last_dataset() -> str | None:
    return _get(_LAST_DATASET)


def set_last_dataset(name: str) -> None:
    _set(_LAST_DATASET, name)


# ----------------------------------------------------------------- small page-level state
def aug_seed() -> int:
    return int(_get(_AUG_SEED, 0))


def set_aug_seed(value: int) -> None:
    _set(_AUG_SEED, int(value))


def reroll_augmentations() -> None:
    _set(_AUG_SEED, aug_seed() + 1)


def follow_views_click(clicked: int | None, first: int, n_images: int) -> None:
    """The Embedding page's "Test image" (:data:`K_VIEWS_IMAGE`) takes a new click on the map,
    and starts over at ``first`` when it is no image of the split shown (another data set since)."""
    if clicked is not None and _get(_VIEWS_CLICKED) != clicked:
        _set(_VIEWS_CLICKED, clicked)
        set_widget(K_VIEWS_IMAGE, clicked)
    if not 0 <= int(widget(K_VIEWS_IMAGE, first)) < n_images:
        set_widget(K_VIEWS_IMAGE, first)


def projection_request(default: ProjectionParams) -> ProjectionParams:
    """The Embedding page's view: ``default`` overridden by what the session (or a deep link,
    which may set the method and the number of points only) asked for."""
    return dataclasses.replace(default, **(_get(_PROJECTION) or {}))


def set_projection_request(request: ProjectionParams | dict) -> None:
    """Keep the page's view (``n`` ``None``: every test image), or a deep link's part of one."""
    _set(_PROJECTION, dataclasses.asdict(request) if isinstance(request, ProjectionParams) else dict(request))


def replay_frame() -> int:
    return int(_get(_REPLAY, 0))


def set_replay_frame(value: int) -> None:
    _set(_REPLAY, int(value))


def batch_link_written() -> dict:
    return dict(_get(_BATCH_LINK) or {})


def set_batch_link_written(params: dict) -> None:
    _set(_BATCH_LINK, dict(params))


def url_at_start() -> dict:
    """The view parameters the URL held when this run began (before the sidebar rewrote it)."""
    return dict(_get(_URL_AT_START) or {})


def set_url_at_start(params: dict) -> None:
    _set(_URL_AT_START, dict(params))


def url_written() -> dict:
    return dict(_get(_URL_WRITTEN) or {})


def set_url_written(params: dict) -> None:
    _set(_URL_WRITTEN, dict(params))


def push_flash(kind: str, text: str) -> None:
    """A message shown once on the next run (for example after a training finished)."""
    items = list(_get(_FLASH, []))
    items.append((kind, text))
    _set(_FLASH, items[-5:])


def pop_flash() -> list[tuple[str, str]]:
    items = list(_get(_FLASH, []))
    _set(_FLASH, [])
    return items


# ----------------------------------------------------------------- the live room
def room_presented() -> dict | None:
    """``{"code", "secret"}`` of the room this session opened: the secret that lets it hide,
    pause and close lives only here, never in a link."""
    got = _get(_ROOM_PRESENTED)
    return dict(got) if got else None


def set_room_presented(code: str | None, secret: str | None = None) -> None:
    _set(_ROOM_PRESENTED, {"code": code, "secret": secret} if code else {})  # {}: this session chose none
    _set(_ROOM_VIEW, None)


def room_chosen_here() -> bool:
    """Whether this session has opened or left a room itself (else a remembered room is restored)."""
    return _get(_ROOM_PRESENTED) is not None


ROOM_COOKIE = "ce_room"
_ROOM_COOKIE_FORMAT = re.compile(r"[A-Z0-9]{4,8}\.[A-Za-z0-9_-]{16,64}")


def room_cookie() -> tuple[str, str] | None:
    """The presenter's room as this browser remembers it (``CODE.SECRET`` in the ``ce_room``
    cookie): a presenter whose replica restarted, or who reloaded, gets its room's controls back."""
    try:
        value = st.context.cookies.get(ROOM_COOKIE)
    except Exception:  # noqa: BLE001 - no browser request (a bare script run)
        return None
    if not isinstance(value, str) or not _ROOM_COOKIE_FORMAT.fullmatch(value):
        return None
    code, secret = value.split(".", 1)
    return code, secret


def remember_room(code: str | None, secret: str | None) -> None:
    """Keep (or, with ``None``, forget) the presenter's room in this browser for a few hours;
    HttpOnly cannot be set from a script, so the cookie is as private as the browser's own tab."""
    value, age = (f"{code}.{secret}", 4 * 3600) if code and secret else ("", 0)
    st.html(f"<script>document.cookie = '{ROOM_COOKIE}={value}; Path=/; Max-Age={age}; SameSite=Strict';</script>",
            unsafe_allow_javascript=True, width="content")


def room_view() -> dict:
    """The presenter page's working copy (mutable, this session's own): ``rows`` by id, ``sent``
    (the last id its browser has) and ``bg_sent``."""
    view = _get(_ROOM_VIEW)
    if view is None:
        view = {"rows": {}, "sent": 0, "bg_sent": False}
        _set(_ROOM_VIEW, view)
    return view


def room_phone() -> dict:
    """The audience page's working copy (mutable): ``joined`` room codes, ``result`` (the last
    submission's), ``canvas`` (a counter that gives a fresh canvas after each send)."""
    phone = _get(_ROOM_PHONE)
    if phone is None:
        phone = {"joined": [], "result": None, "canvas": 0}
        _set(_ROOM_PHONE, phone)
    return phone
