"""The sidebar shared by every page: data set, augmentation, loss and the active model.

:func:`render` runs in ``app.py`` before the page; it stores a :class:`Context` through
:mod:`ui.state` and pages read it with :func:`ui.state.context`.

Its "Bring your own" panel takes a checkpoint or an image archive in (each becomes this session's
model or data set on every page) and gives the active model and its embeddings back as downloads.
Uploads are handled in the uploaders' callbacks, which run before the next script run: the model
and data-set selectors can then follow the upload before they are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from cl import study
from cl.checkpoints import Card
from cl.data import SPECS, dataset_spec
from cl.errors import UserError

from . import cache, common, demo, jobs, links, models, own, state

AUG_HELP = {
    "none": "none: the positive is the image itself (paper)",
    "fer": "fer: pad, rotate and scale (paper)",
    "simclr": "simclr: crop, flip, colour jitter, blur (paper)",
    "affine": "affine: small rotation, scale, shift (ours)",
    "crop": "crop: SupCon's crop, flip, jitter (ours)",
}
LOSS_HELP = {
    "pairwise": "pairwise: cosine embedding loss (paper)",
    "triplet": "triplet: margin 1 (paper)",
    "contrastive": "contrastive: Hadsell margin loss",
    "ntxent": "ntxent: SimCLR's NT-Xent",
    "supcon": "supcon: supervised contrastive",
}
FALLBACK_DATASET = "digits"
METHODS = ("tsne", "umap", "pca")


@dataclass
class Context:
    dataset: str  # the data set in use (may differ from the requested one: see notes)
    requested: str
    augmentation: str  # the active model's (its card's config); "none" without a model
    loss: str  # the active model's; "" without a model
    status: dict
    model: models.ModelEntry | None
    models: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def name(self) -> str:
        """The data set as a person names it in a sentence: an uploaded image set or embeddings file
        by its file name."""
        if own.is_own(self.dataset):
            return own.label(self.dataset).removesuffix(" (your embeddings)")
        return jobs.display_name(self.dataset)

    @property
    def spec(self):
        return dataset_spec(self.dataset)  # also an uploaded image set (archive:ID)

    @property
    def train_available(self) -> bool:
        return self.status.get("n_train", 0) > 0

    @property
    def test_available(self) -> bool:
        return self.status.get("n_test", 0) > 0


def _sync_job() -> None:
    """Follow this browser's training: adopt a running one this session did not start (a reload,
    another tab), and take a finished one in once: it becomes this session's active model."""
    job = jobs.get(state.job_id())
    if job is None or (not job.alive and state.job_registered(job.id)):
        mine = [j for j in jobs.owned(state.owner_key()) if j.alive]
        if mine:
            job = mine[0]
            state.set_job_id(job.id)
    if job is None or job.alive or state.job_registered(job.id):
        return
    state.register_job(job.id)
    if job.session != state.owner_key():
        return  # someone else's training, watched through its link: it is theirs to use
    view = job.view()
    if view["status"] == "done":
        state.add_session_model({"path": view["out"], "card": view["card"], "snapshots": None})
        state.set_active_model(view["out"])
        state.push_flash("success", f"Training finished: {view['message']}. It is now the active model.")
    elif view["status"] == "cancelled":
        state.push_flash("info", f"Training {view['status']}: {view['message']}")
    else:
        state.push_flash("error", f"Training failed: {view['message']}")


def _select(label: str, key: str, options: list, default, **kw):
    if state.widget(key) not in options:
        state.set_widget(key, default if default in options else options[0])
    return st.selectbox(label, options, key=key, **kw)


# Shipped models of a data set in the order the app lists them: its best model, the study's six
# scenarios in the study's table order, then the outlook models by name.
STUDY_ORDER = tuple(f"{aug}-{loss}" for aug in study.ROWS for loss in study.COLS)
SOURCE_ORDER = {"session": 0, "shipped": 1, "runs": 2}


def model_order(entry: models.ModelEntry, dataset: str) -> tuple:
    """Sort key of the model list: models of the data set in use first; then this session's models
    (newest first: the caller lists them so), the shipped ones (best, the study's scenarios, the
    outlook), earlier runs."""
    within: tuple = (0, 0, "")
    if entry.source == "shipped":
        stem = Path(entry.path).stem
        suffix = stem[len(entry.dataset) + 1:] if stem.startswith(entry.dataset + "-") else stem
        if suffix == "best":
            within = (0, 0, "")
        elif suffix in STUDY_ORDER:
            within = (1, STUDY_ORDER.index(suffix), "")
        else:
            within = (2, 0, suffix)
    return (not entry.trained_on(dataset), SOURCE_ORDER[entry.source], within)


def _mtime(entry: models.ModelEntry) -> float:
    try:
        return Path(entry.path).stat().st_mtime
    except OSError:
        return 0.0


def _model_options(ctx_dataset: str, channels: int, size: int):
    shipped, problems = models.shipped_models()
    session = [e for e in (models.session_entry(r) for r in reversed(state.session_models())) if e is not None]
    runs = []
    if models.list_runs_enabled():
        known = {str(Path(e.path).resolve()) for e in session}
        runs, more = models.runs_models()
        runs = sorted((e for e in runs if e.path not in known), key=_mtime, reverse=True)  # newest first
        problems += more
    everything = session + shipped + runs
    usable = [e for e in everything if models.compatible(e, channels, size)]
    usable.sort(key=lambda e: model_order(e, ctx_dataset))  # stable: keeps newest-first within a group
    return usable, problems


def _apply_link(params: dict[str, str]) -> None:
    """Preset the sidebar from a deep link (before its widgets are drawn). Unknown names get a
    short message and leave the data set's default view (its best model)."""
    dataset, name = params.get("dataset"), params.get("model")
    if dataset is not None and own.is_own(dataset):
        if own.path_of(dataset) is None:
            state.push_flash("info", "The link names an embeddings file that is no longer on this server (uploads are kept "
                                     "while there is room); upload it again under \"Bring your own\". Showing "
                                     f"{FALLBACK_DATASET} meanwhile.")
            dataset = None
        else:
            state.add_session_dataset({"name": dataset, "label": own.label(dataset), "summary": ""})
        name = None  # an embeddings file is its own model
    elif dataset is not None and dataset not in SPECS:
        uploaded = _uploaded_set(dataset)
        if uploaded is not None:
            dataset = uploaded
        else:
            if dataset.startswith(UPLOAD_PREFIXES):
                state.push_flash("info", "The link names an uploaded image set that is no longer on this server "
                                         "(uploads are kept while there is room); upload it again under \"Bring your "
                                         f"own\". Showing {FALLBACK_DATASET} meanwhile.")
            else:
                state.push_flash("info", f"The link names an unknown data set {dataset!r}; showing the default view "
                                         f"({FALLBACK_DATASET}). Known: {', '.join(SPECS)}.")
            dataset = None
            name = None  # the model was chosen for that data set
    entry = None
    if name is not None:
        entry = models.entry_for_link(name)
        if entry is None:
            state.push_flash("info", f"The link names an unknown model {name!r}: it is not on this server (a model trained "
                                     f"or uploaded elsewhere, or removed since); showing "
                                     f"{dataset or FALLBACK_DATASET} with its best model.")
        elif entry.source != "shipped":
            # a model trained or uploaded in the app: this session lists it from now on
            state.add_session_model({"path": entry.path, "card": entry.card, "snapshots": None,
                                     "uploaded": entry.uploaded})
    if dataset is None and entry is not None:
        dataset = entry.dataset if entry.dataset in SPECS else _uploaded_set(entry.dataset)
    if dataset is not None:
        state.set_widget(state.K_DATASET, dataset)
        if entry is None:
            state.set_active_model(None)  # the data set's default model, not the previous choice
    if entry is not None:
        state.set_active_model(entry.path)
    if "method" in params or "points" in params:  # the Embedding page's projection
        request = {"method": params["method"]} if params.get("method") in METHODS else {}
        if str(params.get("points", "")).isdigit() and int(params["points"]) >= 3:
            request["n"] = int(params["points"])
        state.set_projection_request(request)


UPLOAD_PREFIXES = ("upload:", "archive:")  # an uploaded image set in a link: upload:ID (archive:ID still read)


def _uploaded_set(name: str) -> str | None:
    """The data-set name (``archive:ID``) of an uploaded image set a link names (``upload:ID``),
    while its files are on this server; it joins this session's list. ``None`` otherwise."""
    if not name.startswith(UPLOAD_PREFIXES):
        return None
    from cl.archive import read_manifest

    archive_id = name.split(":", 1)[1]
    try:
        m = read_manifest(archive_id)
    except UserError:
        return None
    dataset = f"archive:{m.id}"
    state.add_session_dataset({"name": dataset, "label": m.archive_name, "summary": m.describe()})
    return dataset


def _link_params(ctx: Context) -> dict[str, str | None]:
    # An uploaded image set by its id (upload:ID), like an uploaded model: reopened while its files exist.
    dataset = ctx.dataset if ctx.dataset in SPECS or own.is_own(ctx.dataset) else (
        "upload:" + ctx.dataset.split(":", 1)[1] if ctx.dataset.startswith("archive:") else None)
    model = models.link_id(ctx.model) if ctx.model is not None and not ctx.model.own else None
    return {"dataset": dataset, "model": model}


# ----------------------------------------------------------------- bring your own
dataset_label = state.dataset_label  # the pages name it through the sidebar too


def _shape_of(name: str) -> tuple[int, int] | None:
    try:
        spec = dataset_spec(name)
    except UserError:
        return None
    return spec.channels, spec.size


def _on_model_upload() -> None:
    """A checkpoint was uploaded: validate it as the CLI does; make it the active model when it
    fits the data set in use, otherwise say which data sets it fits. A refused file changes nothing."""
    upload = state.widget(state.K_UPLOAD_MODEL)
    if upload is None:  # the file was removed from the uploader: its message goes too
        state.clear_byo_note("model")
        return
    try:
        path, card = models.save_uploaded_checkpoint(upload.getvalue(), upload.name)
    except UserError as err:
        state.set_byo_note("model", "error", demo.scrub(f"Cannot use this model: {err}"))
        return
    except Exception:  # noqa: BLE001 - a hostile file must never surface as a traceback
        state.set_byo_note("model", "error", f"Cannot use this model: {upload.name} could not be read as a "
                                             f"checkpoint.")
        return
    state.add_session_model({"path": path, "card": card, "snapshots": None, "uploaded": True})
    typed = Card.from_dict(card)
    shape = (int(typed.encoder_spec.in_channels), int(typed.encoder_spec.image_size))
    current = state.last_dataset() or FALLBACK_DATASET
    name = typed.name or upload.name
    if _shape_of(current) == shape:
        state.set_active_model(path)
        state.set_byo_note("model", "success", f"{name} is now the active model on every page.", about=path)
        return
    fits = [n for n in [*SPECS, *(d["name"] for d in state.session_datasets())] if _shape_of(n) == shape]
    have = _shape_of(current)
    state.set_byo_note("model", "warning", about=path, text=(
        f"{name} is loaded, but it takes {shape[0]}x{shape[1]}x{shape[1]} images (trained on "
        f"{typed.data.dataset or '?'}) and {dataset_label(current)} has "
        + (f"{have[0]}x{have[1]}x{have[1]}" if have else "another shape")
        + (f". Choose {' or '.join(dataset_label(n) for n in fits)} under Data set to use it."
           if fits else ". No data set here has that shape.")))


def _on_archive_upload() -> None:
    """An image archive was uploaded: check and extract it (cl.archive) and switch to it."""
    from cl.archive import ArchiveLimits, extract_archive

    upload = state.widget(state.K_UPLOAD_ARCHIVE)
    if upload is None:
        state.clear_byo_note("archive")
        return
    limits = ArchiveLimits.demo() if demo.enabled() else ArchiveLimits()
    try:
        extracted = extract_archive(upload.getvalue(), name=upload.name, limits=limits)
    except UserError as err:
        state.set_byo_note("archive", "error", demo.scrub(f"Cannot use this archive: {err}"))
        return
    except Exception:  # noqa: BLE001 - any failure to read an upload becomes one message
        state.set_byo_note("archive", "error", f"Cannot use this archive: {upload.name} could not be read as a "
                                               f"zip file.")
        return
    m = extracted.manifest
    state.add_session_dataset({"name": extracted.dataset, "label": m.archive_name, "summary": m.describe()})
    state.set_widget(state.K_DATASET, extracted.dataset)
    state.set_byo_note("archive", "success", about=extracted.dataset,
                       text=f"{m.describe()}. It is now the data set: train a model on it on "
                            f"the Train page, or explore it with a model of its shape (3x32x32).")


def _on_embeddings_upload() -> None:
    """An embeddings file (and perhaps a zip of its images) was uploaded: check it
    (cl.own_embeddings), keep it and make it the data set. A refused upload changes nothing."""
    files = state.widget(state.K_UPLOAD_EMBEDDINGS) or []
    if not files:
        state.clear_byo_note("embeddings")
        return
    try:
        dataset, what = own.take_upload(list(files))
    except UserError as err:
        state.set_byo_note("embeddings", "error", demo.scrub(f"Cannot use these embeddings: {err}"))
        return
    except Exception:  # noqa: BLE001 - a hostile file must never surface as a traceback
        state.set_byo_note("embeddings", "error", "Cannot use these embeddings: the files could not be read.")
        return
    state.add_session_dataset({"name": dataset, "label": own.label(dataset), "summary": what})
    state.set_widget(state.K_DATASET, dataset)
    state.set_byo_note("embeddings", "success", about=dataset,
                       text=f"{what}. It is now the data set: its map, probes and neighbours are on the Embedding, "
                            f"Metrics and Retrieval pages (no model needed).")


def _note(kind: str) -> None:
    note = state.byo_note(kind)
    if note is not None:
        level, text = note
        {"success": st.success, "warning": st.warning, "error": st.error}.get(level, st.info)(text)


def _bring_your_own(dataset: str, model: models.ModelEntry | None, test_available: bool) -> None:
    from cl.archive import ArchiveLimits

    limits = ArchiveLimits.demo() if demo.enabled() else ArchiveLimits()
    # A toggle, not an expander: an expander's content is always on the page (its uploaders
    # would be found by anything looking for "the" uploader), and a toggle keeps its state when
    # an upload redraws the sidebar.
    if st.toggle("Bring your own, take it with you", key=state.K_BYO_OPEN,
                 help="Upload a model or an image set; download the active model and its embeddings."):
        # Each uploader states and enforces its own limit (never above the server's, which would
        # answer a larger file with HTTP 413); the bytes are checked again when they arrive.
        model_mb = common.upload_limit_mb(models.max_upload_model_bytes())
        archive_mb = common.upload_limit_mb(limits.max_archive_bytes)
        st.file_uploader("A model (.safetensors from `python -m cl train`)", key=state.K_UPLOAD_MODEL,
                         on_change=_on_model_upload, max_upload_size=model_mb,
                         help=f"Checked like the command line loads it; at most {model_mb} MB. "
                              f"Pickles are never loaded.")
        st.file_uploader("An image set (.zip)", key=state.K_UPLOAD_ARCHIVE, on_change=_on_archive_upload,
                         max_upload_size=archive_mb,
                         help=f"One folder per class, or train/ and test/ each with class folders; at least "
                              f"{limits.min_classes} classes, {limits.min_per_class()} images each (5 train and 5 "
                              f"test each with train/ and test/). At most {archive_mb} MB, "
                              f"{limits.max_images:,} images; other files are skipped.")
        emb_limits = own.limits()
        emb_mb = common.upload_limit_mb(max(emb_limits.max_file_bytes, emb_limits.max_images_bytes))
        # what the uploader lets through caps what the help may promise (server.maxUploadSize)
        file_mb, zip_mb = (min(emb_mb, b // 2**20) for b in (emb_limits.max_file_bytes, emb_limits.max_images_bytes))
        st.file_uploader("Embeddings made elsewhere (.npz or .parquet), with a .zip of their images if you have it",
                         key=state.K_UPLOAD_EMBEDDINGS, on_change=_on_embeddings_upload, accept_multiple_files=True,
                         type=["npz", "parquet", "zip"], max_upload_size=emb_mb,
                         help="An `embeddings` matrix (N x D); optional `labels`, `classes` and `origins` (each row's "
                              "image path inside the zip), as `python -m cl export --format npz` writes. At most "
                              f"{emb_limits.max_rows:,} rows, {emb_limits.max_dim:,} dimensions, "
                              f"{file_mb:,} MB (the zip {zip_mb:,} MB). Maps, probes and neighbours work on it; "
                              "what needs a model (augmented views, a new query image, training) does not.")
        _downloads(dataset, model, test_available)
    # Below the panel, shown even when it is closed: what became of an upload stays in sight.
    _note("model")
    _note("archive")
    _note("embeddings")


def _downloads(dataset: str, model: models.ModelEntry | None, test_available: bool) -> None:
    """The active model's checkpoint and its test embeddings as downloads (made on click)."""
    if model is None or model.own:  # an embeddings file: the person has it already
        return
    st.caption("Take it with you")
    path = model.path
    st.download_button("Model checkpoint", data=lambda: Path(path).read_bytes(),
                       file_name=f"{jobs.file_part(model.name)}.safetensors", mime="application/octet-stream",
                       key="byo_dl_model", on_click="ignore", icon=":material/download:", width="stretch")
    _onnx_download(model)
    if not test_available:
        return
    from cl.archive import cache_dir

    st.caption("Embeddings of the test split: projector (TensorBoard Embedding Projector files), npz (NumPy "
               "arrays) or csv (one row per image); the model's card and the data's provenance come along as "
               "export.json.")
    safe = jobs.file_part(dataset)  # the image set's own file name, never "archive:ID" (nor a ":")
    # A row that wraps (not three columns): on a phone's narrow sidebar each button keeps its whole label.
    row = st.container(horizontal=True, wrap=True, gap="small")
    for fmt in ("projector", "npz", "csv"):
        def build(path=path, fmt=fmt, dataset=dataset) -> bytes:  # runs only when clicked
            from cl.workflow import export_zip

            return export_zip(path, dataset, "test", fmt, cache_dir() / "exports")

        row.download_button(fmt, data=build, file_name=f"{jobs.file_part(model.name)}-{safe}-test-{fmt}.zip",
                            mime="application/zip", key=f"byo_dl_{fmt}", on_click="ignore", icon=":material/download:",
                            width="content",
                            help=f"The {dataset_label(dataset)} test embeddings as {fmt} files in a zip.")


def _onnx_download(model: models.ModelEntry) -> None:
    """The encoder as ONNX (cl.onnx_export), built on click: a zip of NAME.onnx and export.json."""
    from cl.errors import UserError
    from cl.onnx_export import INSTALL_HINT, require_exporter

    try:
        require_exporter()
        missing = None
    except UserError:
        missing = INSTALL_HINT

    def build(path=model.path) -> bytes:  # runs only when clicked: the export takes a few seconds
        from cl.archive import cache_dir
        from cl.onnx_export import onnx_zip

        return onnx_zip(path, cache_dir() / "exports")

    st.download_button("Model as ONNX", data=build, file_name=f"{jobs.file_part(model.name)}-onnx.zip", mime="application/zip",
                       key="byo_dl_onnx", on_click="ignore", icon=":material/download:", width="stretch",
                       disabled=missing is not None,
                       help=f"Needs ONNX: {missing}" if missing else
                       "The encoder for ONNX Runtime and other tools (batch axis free), with its preprocessing in "
                       "the model's metadata and export.json: pixels * 2/255 - 1, channels first.")


def _training_note(job_id: str) -> None:
    """The sidebar's line about this session's running training; when it ends, a full run takes
    the model in (whichever page is open)."""
    job = jobs.get(job_id)
    if job is None or not job.alive:
        st.rerun()
    v = job.view()
    p = v["progress"]
    where = f"epoch {p.get('epoch', 0)}/{p.get('epochs', '?')}" if p else v["status"]
    st.info(f"Training {dataset_label(v['config'].dataset)} in the background: {where}.",
            icon=":material/hourglass_top:")
    st.page_link("pages/train.py", label="Watch it on the Train page", icon=":material/monitoring:",
                 query_params={"run": v["run"]})


def render() -> Context:
    demo.SESSIONS.touch(state.owner_key())  # a live visitor's trained models stay under the quota
    link = links.capture()
    _sync_job()
    if state.url_at_start().get("new"):
        _apply_link(link)
    sb = st.sidebar
    with sb:
        st.markdown("### Contrastive Explorer")
        mine = [d["name"] for d in state.session_datasets()
                if _shape_of(d["name"]) is not None or own.path_of(d["name"]) is not None]
        for d in state.session_datasets():  # an image set the cache no longer holds
            if d["name"] not in mine:
                state.drop_session_dataset(d["name"])
        shapes = {n: _shape_of(n) for n in [*SPECS, *mine]}
        # Labels made now, not in format_func: it may be called outside this session's run.
        labels = {n: dataset_label(n) if shape is None else f"{dataset_label(n)} ({shape[0]}x{shape[1]}x{shape[1]})"
                  for n, shape in shapes.items()}
        requested = _select("Data set", state.K_DATASET, list(shapes), FALLBACK_DATASET, format_func=labels.get,
                            help="digits is bundled with scikit-learn and always works offline. Your own image "
                                 "sets and embeddings files (uploaded below) are listed too.")
        notes: list[str] = []
        status = cache.status(requested)
        dataset = requested
        if status.get("n_train", 0) == 0 and status.get("n_test", 0) == 0:
            st.error(f"{dataset_label(requested)} is not on this server; showing {FALLBACK_DATASET} instead.",
                     icon=":material/cloud_off:")
            dataset = FALLBACK_DATASET
            status = cache.status(dataset)
            notes.append(f"{requested} unavailable; using {dataset}")
        elif own.is_own(dataset):
            st.caption(f"{dataset_label(dataset)}: {status['n_test']:,} rows, "
                       + ("with their images" if status.get("images") else "no images") + "; no model, its vectors only")
        elif status.get("n_train", 0) == 0:
            # What the visitor can do; where the files go is the Train page's and the CLI's business.
            st.caption(f"{dataset_label(dataset)}: a gallery of {status['n_test']:,} test images is here, enough to "
                       f"explore the shipped models on every page. Training needs the train split (see the Train page).")
        else:
            partial = "" if status.get("train_complete", True) else " (partial)"
            st.caption(f"{dataset_label(dataset)}: {status['n_train']:,} train{partial} / {status['n_test']:,} test "
                       f"images here")

        for kind in ("archive", "embeddings"):
            if state.byo_note_about(kind) not in (None, dataset):
                state.clear_byo_note(kind)  # "it is now the data set": another one is, the note is stale
        if own.is_own(dataset):  # an embeddings file is its own and only model
            own_entry = own.entry(dataset)
            usable, problems = ([own_entry] if own_entry is not None else []), []
        else:
            spec = dataset_spec(dataset)
            usable, problems = _model_options(dataset, spec.channels, spec.size)
        model = None
        if usable:
            by_path = {e.path: e for e in usable}
            paths = list(by_path)
            active = state.active_model()
            default = active if active in by_path else paths[0]
            if state.last_dataset() != dataset:
                # a new data set: prefer the best model trained on it over the previous choice
                if active in by_path and not by_path[active].trained_on(dataset) and usable[0].trained_on(dataset):
                    default = paths[0]
                state.set_widget(state.K_MODEL, default)
            chosen = _select("Model", state.K_MODEL, paths, default, format_func=lambda p: by_path[p].label,
                             help="Every page shows this model. Listed: models trained or uploaded in this session, "
                                  "then the shipped ones (each data set's best model first, then the study's six "
                                  f"models and the outlook models); only models whose input shape fits {dataset} "
                                  "are offered.")
            model = by_path[chosen]
            state.remember_active_model(chosen)
            model_note = state.byo_note("model")
            if model_note is not None and state.byo_note_about("model") is not None and \
                    (state.byo_note_about("model") == chosen) == (model_note[0] == "warning"):
                # "choose another data set to use it": done; "X is now the active model": no longer so
                state.clear_byo_note("model")
            cross = "" if model.dataset == dataset else f"; used here on {dataset_label(dataset)}"
            st.caption(f"{model.train_note()}{cross}")
        else:
            st.info(f"No model fits {dataset_label(dataset)} yet. Train one on the Train page (one epoch on digits takes "
                    f"seconds).", icon=":material/model_training:")
        if problems:
            with st.expander(f"{len(problems)} checkpoint file(s) skipped"):
                for p in problems:
                    st.caption(p)

        _bring_your_own(dataset, model, status.get("n_test", 0) > 0)

        job = jobs.get(state.job_id())
        if job is not None and job.alive:
            st.fragment(_training_note, run_every=2.0)(job.id)

    state.set_last_dataset(dataset)
    mc = model.config if model is not None else {}
    ctx = Context(dataset, requested, str(mc.get("augmentation") or "none"), str(mc.get("loss") or ""), status,
                  model, usable, notes)
    state.set_context(ctx)
    links.write(_link_params(ctx))
    return ctx
