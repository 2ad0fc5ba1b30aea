"""Train: recipe and hyperparameters, start and cancel, live progress, loss curve, kNN per epoch."""

import importlib.util
from pathlib import Path

import streamlit as st

from cl.catalog import AUGMENTATIONS, LOSSES
from cl.checkpoints import Card
from cl.errors import UserError
from cl.training import TrainConfig, resolve_config
from ui import accuracy, cache, charts, demo, jobs, links, models, own, state, vega
from ui.measures import show_alignment_path
from ui.sidebar import AUG_HELP, LOSS_HELP, dataset_label

ENCODER_WORDS = {"paper": "study's encoder", "convnet": "small ConvNet encoder"}

ctx = state.context()
st.title("Train")
if ctx.model is not None and ctx.model.own:
    own.needs_a_model("Training")
st.caption(f"Trains a new model on **{dataset_label(ctx.dataset)}** (change the data set in the sidebar). It runs in the "
           "background: every other page keeps working, and the model becomes the active one when it is done.")

# ------------------------------------------------------------------ data availability / download
def download_panel(name: str, live: bool = False) -> None:
    dl = jobs.download(name)
    if dl is None:
        return
    v = dl.view()
    if v["status"] == "running":
        mb, total = v["bytes"] / 2**20, v["expected"] / 2**20
        st.progress(v["fraction"], text=f"Downloading {name} with torchvision: {mb:,.1f} of about {total:,.0f} MB "
                                         f"({v['elapsed']:.0f} s)")
    elif v["status"] == "done":
        st.success(f"{name} {v['message']}", icon=":material/download_done:")
        cache.forget_status()
        if live:  # the download just ended: a full run picks the new data up
            st.rerun()
    else:
        st.error(f"Could not download {name}: {v['message']}", icon=":material/cloud_off:")


if ctx.requested != ctx.dataset or not ctx.train_available:
    missing = ctx.requested
    st.warning(f"The {dataset_label(missing)} train split is not on this server, so it cannot be trained here yet. "
               + ("This demo trains on the data sets it has: digits always works."
                  if demo.enabled() else
                  "With internet access it can be downloaded below; offline, copy its files into the data folder "
                  "(`python -m cl datasets` on the command line lists where each data set is expected), or use "
                  "digits, which needs no file."), icon=":material/cloud_off:")
    running = jobs.download(missing)
    if missing in jobs.DOWNLOAD_FILES and not demo.enabled():  # a demo trains on what the server has
        st.button(f"Download {missing} (needs internet)", key="tr_download", icon=":material/download:",
                  disabled=running is not None and running.status == "running",
                  on_click=jobs.start_download, args=(missing,))
    if running is not None:
        if running.status == "running":
            st.fragment(download_panel, run_every=1.0)(missing, live=True)
        else:
            download_panel(missing)
    if not ctx.train_available:
        st.stop()

# ------------------------------------------------------------------ settings
job = jobs.get(state.job_id())
busy = job is not None and job.alive and job.session == state.owner_key()

left, right = st.columns([1, 1])
with left:
    # The same default as `python -m cl train`: our recipe with its own augmentation and loss.
    recipe = st.radio("Recipe", ["paper", "default"], index=1, horizontal=True, key="tr_recipe",
                      format_func={"paper": "paper (the study's settings)", "default": "default (ours)"}.get,
                      help="paper: the study's encoder, SGD, batch 1,024, positives augmented once. "
                           "default: a small ConvNet, SupCon (positives: the batch's images of the same class; "
                           "one or two views per image, by data set), AdamW with warm-up and cosine decay, bf16 "
                           "where the CPU computes it natively.")
    # The recipe decides unless the visitor picks: one place says what will be trained ("Will train").
    aug_choice = st.selectbox("Augmentation", [None, *AUGMENTATIONS], key=f"tr_aug_{recipe}",
                              format_func=lambda a: "the recipe's choice" if a is None else AUG_HELP.get(a, a),
                              help="What makes a positive: an augmented copy of the image. The study compared "
                                   "none, fer and simclr.")
    loss_choice = st.selectbox("Loss", [None, *LOSSES], key=f"tr_loss_{recipe}",
                               format_func=lambda x: "the recipe's choice" if x is None else LOSS_HELP.get(x, x),
                               help="What pulls positives together and pushes the rest apart. The study compared "
                                    "pairwise (cosine) and triplet.")
try:
    base = TrainConfig(dataset=ctx.dataset, recipe=recipe, augmentation=aug_choice, loss=loss_choice)
    defaults = resolve_config(base)
except UserError as err:
    st.error(str(err))
    st.stop()
with right:
    st.markdown(f"**Will train:** the {ENCODER_WORDS.get(defaults.encoder, defaults.encoder)}, loss "
                f"**{LOSS_HELP.get(defaults.loss, defaults.loss)}**, augmentation "
                f"**{AUG_HELP.get(defaults.augmentation, defaults.augmentation)}**, "
                f"{'one view' if defaults.views == 1 else 'two views'} per image, optimiser {defaults.optimizer}, on "
                f"{ctx.status['n_train']:,} {dataset_label(ctx.dataset)} train images"
                + ("" if ctx.status.get("train_complete", True) else " (partial split)")
                + ". Change the augmentation and loss on the left, the rest in the form below.")

sig = f"{ctx.dataset}-{recipe}-{defaults.loss}-{defaults.augmentation}"
with st.form("train_form", border=True):
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 500, int(defaults.epochs), key=f"tr_epochs_{sig}")
    batch = c2.number_input("Batch size", 2, 4096, int(defaults.batch_size), step=32, key=f"tr_batch_{sig}")
    lr = c3.number_input("Learning rate", 1e-5, 10.0, float(defaults.lr), format="%.4f", key=f"tr_lr_{sig}")
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed")
    c5, c6, c7 = st.columns(3)
    budget = c5.number_input("Time budget (s, 0 = none)", 0, 24 * 3600, 0, step=30, key="tr_budget",
                             help="Stop cleanly after this many seconds of training and save what was learned.")
    knn = c6.checkbox("Measure every epoch", True, key="tr_knn",
                      help="kNN-30 accuracy on the test split (paper protocol split), and alignment, uniformity and "
                           "effective rank on a fixed sample of 256 test images when they fit in 3 % of the time.")
    snaps = c7.checkbox("Keep each epoch for the replay", True, key="tr_snaps",
                        help="Records the embedding of up to 1,000 test images after every epoch, so the Embedding "
                             "page can replay the training.")
    tb_missing = importlib.util.find_spec("tensorboard") is None
    tb = st.checkbox("Write a TensorBoard log", False, key="tr_tb", disabled=demo.enabled() or tb_missing,
                     help="Not on this demo server." if demo.enabled() else
                     "Needs TensorBoard: pip install tensorboard." if tb_missing else
                     f"Per-epoch scalars and the test embeddings for the projector, in a run folder under "
                     f"`{jobs.tensorboard_dir(models.runs_dir())}`.")
    submitted = st.form_submit_button("Start training", type="primary", disabled=busy, icon=":material/play_arrow:")

if submitted and not busy:
    config = TrainConfig(dataset=ctx.dataset, recipe=recipe, augmentation=defaults.augmentation, loss=defaults.loss,
                         epochs=int(epochs), batch_size=int(batch), lr=float(lr), seed=int(seed),
                         time_budget=float(budget) if budget else None)
    try:
        job = jobs.start(state.owner_key(), config, models.runs_dir(), knn_per_epoch=knn, snapshots=snaps,
                         checkpoints_dir=models.checkpoints_dir(), tensorboard=tb)
        state.set_job_id(job.id)
        state.set_viewed_run(job.run_id)
        busy = True
    except UserError as err:
        st.warning(demo.scrub(str(err)), icon=":material/block:")
if busy:
    state.remember_owner()  # a reload or another tab of this browser keeps its Cancel


def running_caption() -> None:
    limit_s = jobs.max_train_seconds()
    st.caption(f"Trainings running on this server: {len(jobs.running())} of at most {jobs.max_concurrent()}. "
               f"Models are saved to `{demo.show_path(models.runs_dir())}`, never over the shipped checkpoints."
               + (f" This server stops every training after {limit_s:,.0f} s and saves what it learned." if limit_s else "")
               + (" Demo server: trained models are kept while your session lasts (disk quota "
                  f"{demo.quota_bytes() / 1e6:,.0f} MB; the oldest models of visitors who left go first)."
                  if demo.enabled() and demo.quota_bytes() else ""))


# While any training runs the count follows it (another visitor's may end at any moment).
(st.fragment(running_caption, run_every=2.0) if jobs.running() else running_caption)()


# ------------------------------------------------------------------ live monitor

def _cancel(job_id: str) -> None:
    jobs.cancel(job_id)


STATUS_LABEL = {"queued": "Starting", "loading": "Loading data", "training": "Training", "evaluating": "Evaluating",
                "saving": "Saving", "mapping": "Drawing its map", "done": "Finished", "cancelled": "Cancelled",
                "failed": "Failed", "interrupted": "Interrupted"}


def monitor(run_id: str, live: bool = False) -> None:
    v = jobs.lookup(run_id, models.runs_dir())
    if v is None:
        return
    if live and not v["alive"]:
        st.rerun()  # it just ended: a full run shows the result and makes the model active
    c = v["config"]
    p = v["progress"]
    mine = v["owner"] == jobs.owner_hash(state.owner_key())
    st.subheader(f"Run: {dataset_label(c.dataset)}, {c.augmentation}, {c.loss} ({c.recipe} recipe)")
    st.caption(f"Run `{v['run']}`: this page's link reopens it while its file exists, from a reload, another tab "
               f"or another computer." + ("" if mine or not v["alive"] else " Started by another visitor: only they "
                                                                              "can cancel it."))
    if p:
        done = (p["epoch"] - 1) * p["steps"] + p["step"]
        total = max(1, p["epochs"] * p["steps"])
        frac = 1.0 if v["status"] == "done" else min(1.0, done / total)
        st.progress(frac, text=f"epoch {p['epoch']}/{p['epochs']} · step {p['step']}/{p['steps']} · "
                               f"loss {p['loss']:.4f} · {p['images_per_s']:,.0f} images/s · {p['elapsed']:.0f} s")
    else:
        st.progress(0.0, text=v["message"] or v["status"])
    label = STATUS_LABEL.get(v["status"], v["status"])
    msg = f"**{label}**: {v['message']}" if v["message"] else f"**{label}**"
    if v["status"] in ("failed", "interrupted"):
        st.error(msg, icon=":material/error:")
    elif v["status"] == "cancelled":
        st.info(msg, icon=":material/stop_circle:")
    elif v["status"] == "done":
        st.success(msg, icon=":material/check_circle:")
    else:
        st.markdown(msg)
    if v["alive"] and mine and v["here"]:
        st.button("Cancel training", key="tr_cancel", on_click=_cancel, args=(v["id"],), icon=":material/stop:",
                  disabled=v["cancel_requested"],
                  help="Stops after the current step; nothing is saved and earlier models stay as they are.")
    if v["train_note"]:
        st.caption(f"Training on {v['train_note']}; kNN and the replay use {v['test_note']}.")
    g1, g2 = st.columns(2)
    if v["losses"]:
        with g1:
            st.vega_lite_chart(spec=vega.spec(charts.loss_curve, v["losses"], f"Training loss ({c.loss}) per step"),
                               width="stretch")
    if any("knn_acc" in h for h in v["history"]):
        with g2:
            n_knn = next((int(h["knn_scored"]) for h in v["history"] if h.get("knn_scored")), None)
            st.vega_lite_chart(spec=vega.spec(charts.epoch_metric, v["history"], "knn_acc", "kNN-30 accuracy per epoch",
                                              "kNN-30 accuracy", n_knn), width="stretch")
            st.caption(accuracy.knn_curve_caption(n_knn, v["test_note"]))
    measured = [h for h in v["history"] if "alignment" in h]
    card = Card.from_dict(v["card"]) if v["card"] else None
    final = card.measures if card is not None and v["status"] == "done" else None
    if final and "alignment" in final:  # the finished model's own point, measured for its card
        measured = measured + [{"epoch": len(v["history"]), "alignment": final["alignment"],
                                "uniformity": final["uniformity"], "rankme": final.get("rankme"),
                                "measured_on": final.get("n_images", 0)}]
    if measured:
        show_alignment_path(measured, f"{dataset_label(c.dataset)} test images")
    if v["status"] == "done" and card is not None:
        name = dataset_label(c.dataset)
        cols = st.columns(4)
        paper, standard = card.figures("paper").summary(), card.figures("standard").summary()
        for col, label, r, key in ((cols[0], "Linear probe (paper)", paper, "linear_acc"),
                                   (cols[1], "Top-3 (paper)", paper, "top3_acc"),
                                   (cols[2], "kNN-30 (paper)", paper, "knn_acc"),
                                   (cols[3], "Linear probe (standard)", standard, "linear_acc")):
            accuracy.metric(col, label, r, key)
        flagged = accuracy.warnings_text([paper, standard])
        if flagged:
            st.warning(flagged, icon=":material/warning:")
        st.caption(f"Paper protocol: probe fitted on {paper.get('n_fit', 0):,} and scored on "
                   f"{paper.get('n_test', 0):,} {name} test images. Standard protocol: fitted on "
                   f"{standard.get('n_fit', 0):,} {name} train images, scored on {standard.get('n_test', 0):,} "
                   f"test images. Saved as `{demo.show_path(v['out'])}`. Reproduce with `{v['card'].get('command', '')}`.")
        if v.get("tensorboard"):
            st.caption(f"TensorBoard run: `{v['tensorboard']}`. See it with "
                       f"`tensorboard --logdir {Path(v['tensorboard']).parent}`.")
        model_link = {"model": f"run:{v['run']}"}
        l1, l2, l3 = st.columns(3)
        l1.page_link("pages/embedding.py", label="See its embedding space", icon=":material/scatter_plot:",
                     query_params=model_link)
        l2.page_link("pages/metrics.py", label="Its metrics", icon=":material/leaderboard:", query_params=model_link)
        l3.page_link("pages/retrieval.py", label="Retrieve with it", icon=":material/image_search:",
                     query_params=model_link)


# What this page shows: the run a link names (a reload, a copied link), else the one this session
# watched or started; its id goes into the URL so the address bar always reopens it.
asked = links.asked("run")
if asked:
    state.set_viewed_run(asked)
shown = state.viewed_run() or (job.run_id if job is not None else None)
view = jobs.lookup(shown, models.runs_dir()) if shown else None
if asked and view is None:
    st.info(f"The link names a training run ({asked!r}) that is not on this server: it ran elsewhere, or its files "
            f"were removed since. Start a new one above.", icon=":material/link_off:")
    state.set_viewed_run(None)
if view is not None:
    links.set_view(run=view["run"])
    st.divider()
    if view["alive"]:
        st.fragment(monitor, run_every=1.0)(view["run"], live=True)
    else:
        monitor(view["run"])
