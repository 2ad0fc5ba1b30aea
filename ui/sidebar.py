"""The sidebar shared by every page: data set, augmentation, loss and the active model.

:func:`render` runs in ``app.py`` before the page; it stores a :class:`Context` through
:mod:`ui.state` and pages read it with :func:`ui.state.context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from cl.catalog import AUGMENTATIONS, LOSSES
from cl.data import SPECS

from . import cache, demo, jobs, links, models, state

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
    augmentation: str
    loss: str
    status: dict
    model: models.ModelEntry | None
    models: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def spec(self):
        return SPECS[self.dataset]

    @property
    def train_available(self) -> bool:
        return self.status.get("n_train", 0) > 0

    @property
    def test_available(self) -> bool:
        return self.status.get("n_test", 0) > 0


def _sync_job() -> None:
    """Register a finished training of this session (once) and make it the active model."""
    job = jobs.get(state.job_id())
    if job is None or job.alive or job.consumed:
        return
    view = job.view()
    job.consumed = True
    if view["status"] == "done":
        with job.lock:
            snaps, job.snapshot_data = job.snapshot_data, None  # the session keeps the only copy
        state.add_session_model({"path": view["out"], "card": view["card"], "snapshots": snaps})
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


def _model_options(ctx_dataset: str, aug: str, loss: str, channels: int, size: int):
    shipped, problems = models.shipped_models()
    session = [e for e in (models.session_entry(r) for r in reversed(state.session_models())) if e is not None]
    runs = []
    if models.list_runs_enabled():
        known = {e.path for e in session}
        runs, more = models.runs_models()
        runs = [e for e in runs if e.path not in known]
        problems += more
    everything = session + shipped + runs
    usable = [e for e in everything if models.compatible(e, channels, size)]

    def rank(e: models.ModelEntry):
        c = e.config
        return (e.dataset != ctx_dataset, e.source != "session",
                c.get("augmentation") != aug or c.get("loss") != loss, e.source == "runs", e.name)

    usable.sort(key=rank)
    return usable, problems


def _apply_link(params: dict[str, str]) -> None:
    """Preset the sidebar from a deep link (before its widgets are drawn). Unknown names get a
    short message and leave the default view."""
    dataset, name = params.get("dataset"), params.get("model")
    if dataset is not None and dataset not in SPECS:
        state.push_flash("info", f"The link names an unknown data set {dataset!r}; showing the default view "
                                 f"({FALLBACK_DATASET}). Known: {', '.join(SPECS)}.")
        dataset = None
        name = None  # the model was chosen for that data set
    entry = None
    if name is not None:
        shipped = {Path(e.path).stem: e for e in models.shipped_models()[0]}
        entry = shipped.get(name)
        if entry is None:
            state.push_flash("info", f"The link names an unknown model {name!r}; showing "
                                     f"{dataset or FALLBACK_DATASET} with its default model.")
    if dataset is None and entry is not None:
        dataset = entry.dataset if entry.dataset in SPECS else None
    if dataset is not None:
        state.set_widget(state.K_DATASET, dataset)
    if entry is not None:
        c = entry.config
        if c.get("augmentation") in AUGMENTATIONS:
            state.set_widget(state.K_AUGMENTATION, c["augmentation"])
        if c.get("loss") in LOSSES:
            state.set_widget(state.K_LOSS, c["loss"])
        state.set_active_model(entry.path)
    if "method" in params:
        state.set_projection_request({"method": params["method"]} if params["method"] in METHODS else {})


def _link_params(ctx: "Context") -> dict[str, str | None]:
    m = ctx.model
    shipped = m is not None and m.source == "shipped"
    return {"dataset": ctx.dataset, "model": Path(m.path).stem if shipped else None}


def render() -> Context:
    demo.SESSIONS.touch(state.session_id())  # a live session's trained models stay under the quota
    _sync_job()
    link = links.requested()
    if links.is_new(link):
        _apply_link(link)
    sb = st.sidebar
    with sb:
        st.markdown("### Contrastive Explorer")
        requested = _select("Data set", state.K_DATASET, list(SPECS), FALLBACK_DATASET,
                            format_func=lambda n: f"{n} ({SPECS[n].channels}x{SPECS[n].size}x{SPECS[n].size})",
                            help="digits is bundled with scikit-learn and always works offline.")
        notes: list[str] = []
        status = cache.status(requested)
        dataset = requested
        if status.get("n_train", 0) == 0 and status.get("n_test", 0) == 0:
            st.error(f"{requested} is not available here. {status.get('test_error') or status.get('train_error', '')}",
                     icon=":material/cloud_off:")
            st.caption(f"Showing {FALLBACK_DATASET} instead. The Train page can try a download when online.")
            dataset = FALLBACK_DATASET
            status = cache.status(dataset)
            notes.append(f"{requested} unavailable; using {dataset}")
        elif status.get("n_train", 0) == 0:
            st.warning(f"{requested}: only a test gallery is here ({status['n_test']:,} images), so training "
                       f"and the standard protocol are unavailable. {status.get('train_error', '')}",
                       icon=":material/warning:")
        else:
            partial = "" if status.get("train_complete", True) else " (partial)"
            st.caption(f"{dataset}: {status['n_train']:,} train{partial} / {status['n_test']:,} test images here")

        aug = _select("Augmentation", state.K_AUGMENTATION, list(AUGMENTATIONS), "fer",
                      format_func=lambda a: AUG_HELP.get(a, a),
                      help="Makes the positive of each anchor. The study compared none, fer and simclr.")
        loss = _select("Loss", state.K_LOSS, list(LOSSES), "triplet", format_func=lambda l: LOSS_HELP.get(l, l),
                       help="The study compared pairwise (cosine) and triplet.")

        spec = SPECS[dataset]
        usable, problems = _model_options(dataset, aug, loss, spec.channels, spec.size)
        model = None
        if usable:
            by_path = {e.path: e for e in usable}
            paths = list(by_path)
            active = state.active_model()
            default = active if active in by_path else paths[0]
            if state.last_dataset() != dataset:
                # a new data set: prefer the best model trained on it over the previous choice
                if active in by_path and by_path[active].dataset != dataset and usable[0].dataset == dataset:
                    default = paths[0]
                state.set_widget(state.K_MODEL, default)
            chosen = _select("Model", state.K_MODEL, paths, default, format_func=lambda p: by_path[p].label,
                             help="Shipped checkpoints, models trained in this session; only models whose "
                                  f"input shape fits {dataset} are listed.")
            model = by_path[chosen]
            state.remember_active_model(chosen)
            cross = "" if model.dataset == dataset else f"; used here on {dataset}"
            st.caption(f"{model.train_note()}{cross}")
        else:
            st.info(f"No model fits {dataset} yet. Train one on the Train page (one epoch on digits takes "
                    f"seconds).", icon=":material/model_training:")
        if problems:
            with st.expander(f"{len(problems)} checkpoint file(s) skipped"):
                for p in problems:
                    st.caption(p)

        job = jobs.get(state.job_id())
        if job is not None and job.alive:
            v = job.view()
            p = v["progress"]
            where = f"epoch {p.get('epoch', 0)}/{p.get('epochs', '?')}" if p else v["status"]
            st.info(f"Training {v['config'].dataset} in the background: {where}.", icon=":material/hourglass_top:")

    state.set_last_dataset(dataset)
    ctx = Context(dataset, requested, aug, loss, status, model, usable, notes)
    state.set_context(ctx)
    links.write(_link_params(ctx))
    return ctx
