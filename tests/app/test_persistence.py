"""Nothing a person makes is lost (issue 28), through AppTest and the library: a training's record
and an interrupted run, an uploaded image set reopened by its link, the split of an image set as
a function of its images, the upload that stays active, and the views a slide links to.
The reload mid-training and the upload-then-reload in a real browser: tests/app/test_persistence_browser.py.
"""

from __future__ import annotations

import json
import random
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_app import goto, model_box, new_session, texts
from test_byo_app import colour_zip, sidebar_notes, upload

pytestmark = pytest.mark.usefixtures("app_env", "archive_cache_dir")


def open_page(page: str, **params):
    """A fresh session that opens ``page?params`` (a reload or a copied link)."""
    from streamlit.testing.v1 import AppTest

    from test_app_helpers import APP

    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update(params)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


# ----------------------------------------------------------------------------- a training's record
def running_record(runs: Path, age_s: float) -> str:
    """The record a training writes while it runs, last rewritten ``age_s`` seconds ago."""
    from cl.training import TrainConfig, resolve_config
    from ui import jobs

    runs.mkdir(parents=True, exist_ok=True)
    config = resolve_config(TrainConfig(dataset="digits", epochs=5))
    job = jobs.Job("abc123", "someone", config, runs / jobs.run_filename(config), status="training",
                   progress={"epoch": 2, "epochs": 5, "step": 3, "steps": 10, "loss": 1.25, "images_per_s": 900.0,
                             "elapsed": 4.0, "global_step": 13})
    job.losses = [(1, 1, 2.0), (13, 2, 1.25)]
    jobs.save_record(job)
    path = jobs.record_path(job.out)
    rec = json.loads(path.read_text())
    rec["updated"] = time.time() - age_s
    path.write_text(json.dumps(rec))
    return job.run_id


def test_a_run_left_running_by_a_stopped_server_says_it_was_interrupted(app_env):
    run = running_record(app_env, age_s=600)
    at = open_page("train", run=run)
    assert any("Interrupted" in e.value and "server stopped" in e.value for e in at.error), texts(at)
    assert not any(b.label == "Cancel training" for b in at.button)
    assert at.query_params["run"] == run, "the URL keeps naming the run"
    assert any("epoch 2/5" in p.proto.text for p in at.get("progress")), "its last progress stays readable"


def test_a_run_another_replica_still_writes_is_shown_live_without_cancel(app_env):
    run = running_record(app_env, age_s=1)
    at = open_page("train", run=run)
    assert not at.error, [e.value for e in at.error]
    assert "**Training**" in texts(at) and "Started by another visitor" in texts(at)
    assert not any(b.label == "Cancel training" for b in at.button)


def test_a_link_to_an_unknown_run_says_so(app_env):
    at = open_page("train", run="digits-none-supcon-20200101-000000-abcdef")
    assert any("not on this server" in i.value for i in at.info), texts(at)


# ----------------------------------------------------------------------------- uploaded image sets
def test_an_uploaded_image_set_reopens_from_its_link_with_its_name(app_env, archive_cache_dir):
    at = new_session()
    upload(at, "byo_archive", "my photos.zip", colour_zip())
    dataset = at.sidebar.selectbox(key="sb_dataset").value
    assert dataset.startswith("archive:")
    goto(at, "retrieval")
    link = dict(at.query_params)
    assert link["dataset"] == "upload:" + dataset.split(":", 1)[1], link

    again = open_page("retrieval", **{k: v for k, v in link.items()})  # a reload, a copied link
    box = again.sidebar.selectbox(key="sb_dataset")
    assert box.value == dataset, "the uploaded set is the data set again"
    assert box.format_func(box.value).startswith("my photos.zip"), box.format_func(box.value)
    assert "archive:" not in sidebar_notes(again)
    assert not [i.value for i in again.info if "unknown" in i.value]


def test_a_link_to_an_image_set_no_longer_here_says_so(app_env):
    at = open_page("retrieval", dataset="upload:0123456789abcdef")
    assert any("no longer on this server" in i.value for i in at.info), texts(at)
    assert at.sidebar.selectbox(key="sb_dataset").value == "digits"


def test_run_names_are_portable_and_use_the_image_sets_own_name(archive_cache_dir):
    from cl.archive import extract_archive
    from cl.training import TrainConfig
    from ui import jobs

    ex = extract_archive(colour_zip(), name="my photos.zip")
    name = jobs.run_filename(TrainConfig(dataset=ex.dataset, augmentation="none", loss="supcon"))
    assert name.startswith("my-photos-none-supcon-") and ":" not in name, name
    assert ":" not in jobs.file_part("archive:7ef42959f70bf41b-none-supcon"), "an old run's name, made portable"


# ----------------------------------------------------------------------------- the split of an image set
def write_folder(root: Path, per_class: int = 25) -> list[Path]:
    rng = random.Random(3)
    files = []
    for c, cls in enumerate(("cats", "dogs", "owls")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            name = rng.choice(["img", "IMG_", "photo-", "Z"]) + f"{rng.randint(0, 999)}_{i}.png"
            Image.new("RGB", (20 + i, 16), (60 * c + i, 7 * i, 250 - 9 * i)).save(root / cls / name)
            files.append(root / cls / name)
    return files


def test_a_folder_and_its_zip_give_the_same_split_and_the_same_images(tmp_path, archive_cache_dir):
    from cl.data import clear_cache, load_dataset

    folder = tmp_path / "my set"
    files = write_folder(folder)
    random.Random(0).shuffle(files)  # a zip tool's order is not the folder's
    archive = tmp_path / "my set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f"my set/{f.parent.name}/{f.name}")
    clear_cache()
    for split in ("train", "test"):
        a = load_dataset(f"folder:{folder}", split)
        b = load_dataset(f"folder:{archive}", split)
        assert len(a) == len(b) == (60 if split == "train" else 15)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images), split
    # the rule itself, computed by hand: per class the 20 % of paths with the smallest SHA-256
    import hashlib

    from cl.data import split_by_path

    paths = sorted(f"{f.parent.name}/{f.name}" for f in files)
    labels = np.array([("cats", "dogs", "owls").index(p.split("/")[0]) for p in paths])
    by_hand = set()
    for c in range(3):
        own = [p for p, lab in zip(paths, labels, strict=True) if lab == c]
        by_hand |= set(sorted(own, key=lambda p: hashlib.sha256(p.encode()).hexdigest())[:round(0.2 * len(own))])
    mask = split_by_path(paths, labels, 3)
    assert {p for p, m in zip(paths, mask, strict=True) if m} == by_hand


# ----------------------------------------------------------------------------- the upload stays active
def test_a_cli_model_uploaded_then_its_image_set_stays_the_active_model(app_env, archive_cache_dir, tmp_path):
    import shutil

    from cl.archive import extract_archive
    from cl.checkpoints import read_card, rewrite_card

    data = colour_zip()
    ex = extract_archive(data, name="my photos.zip")
    cifar = Path(__file__).resolve().parents[2] / "checkpoints" / "cifar10-best.safetensors"
    # an older run of the app on that image set, in the runs folder
    app_env.mkdir(parents=True, exist_ok=True)
    older = app_env / "my-photos-none-supcon-20260101-000000-aaaaaa.safetensors"
    shutil.copy(cifar, older)
    card = read_card(older)
    card["data"] = {**card["data"], "dataset": ex.dataset, "source": f"archive my photos.zip (sha256 {ex.manifest.id})"}
    rewrite_card(older, card)
    # the model trained at home by the CLI on the same zip (its card names folder:PATH.zip)
    home = tmp_path / "home.safetensors"
    shutil.copy(cifar, home)
    card = read_card(home)
    card["name"] = "home-photos"
    card["data"] = {**card["data"], "dataset": "folder:/home/me/my photos.zip",
                    "source": f"archive my photos.zip (sha256 {ex.manifest.id})"}
    rewrite_card(home, card)

    at = new_session()
    upload(at, "byo_archive", "broken.zip", b"PK\x03\x04" + b"\0" * 100)
    assert "Cannot use this archive" in sidebar_notes(at)
    upload(at, "byo_model", "home.safetensors", home.read_bytes())
    upload(at, "byo_archive", "my photos.zip", data)
    box = model_box(at)
    assert "home-photos" in box.format_func(box.value), box.format_func(box.value)
    assert "Cannot use this archive" not in sidebar_notes(at), "the old error no longer applies"


# ----------------------------------------------------------------------------- views a slide links to
def test_the_study_tab_has_a_link():
    at = open_page("study", study_tab="CIFAR-10")
    assert at.session_state["study_tab"] == "CIFAR-10", "the CIFAR-10 grid is the open tab"
    assert any("of the cifar10 test gallery" in c.value for c in at.caption), "its pictures are drawn"


def test_the_embedding_points_and_colouring_have_a_link():
    at = open_page("embedding", dataset="digits", method="pca", points="300", color="correct")
    assert at.session_state["emb_color"] == "correct"
    assert "300 of 540 points" in texts(at) and "Predictions: linear probe" in texts(at), texts(at)[:1500]
    assert at.query_params["points"] == "300" and at.query_params["color"] == "correct"
    assert at.query_params["method"] == "pca"


def test_the_augmented_views_settings_have_a_link():
    at = open_page("augmentations", dataset="digits", aug="simclr", anchors="12", zoom="2", draw="3")
    assert at.session_state["aug_n"] == 12 and at.session_state["aug_scale"] == 2
    assert "Pairs with simclr" in texts(at) and "(draw 3)" in texts(at), texts(at)[:1500]
    assert {k: at.query_params[k] for k in ("aug", "anchors", "zoom", "draw")} == \
        {"aug": "simclr", "anchors": "12", "zoom": "2", "draw": "3"}


def test_a_link_to_a_run_saved_under_an_old_name_still_opens(app_env):
    import shutil

    from ui import models

    app_env.mkdir(parents=True, exist_ok=True)
    cifar = Path(__file__).resolve().parents[2] / "checkpoints" / "cifar10-best.safetensors"
    old = app_env / "archive:7ef42959f70bf41b-none-supcon-20261201-101010-abcdef.safetensors"
    shutil.copy(cifar, old)
    entry = models.entry_for_link(f"run:{old.stem}")
    assert entry is not None and Path(entry.path).name == old.name
    assert models.link_id(entry) == f"run:{old.stem}"
    assert models.entry_for_link("run:../archive:7ef42959f70bf41b") is None, "never a path outside the runs folder"


def test_the_quota_counts_and_removes_a_runs_record_and_replay_with_it(tmp_path, monkeypatch):
    import os

    from ui import demo
    from ui.demo import SessionRegistry

    monkeypatch.setenv("CL_RUNS_QUOTA_MB", "0.004")  # 4,000 bytes
    registry = SessionRegistry()
    monkeypatch.setattr(demo, "SESSIONS", registry)
    registry.touch("me")
    for i, owner in enumerate(["old-visitor", "me"]):
        p = tmp_path / f"run{i}.safetensors"
        p.write_bytes(b"x" * 1000)
        (tmp_path / f"run{i}.run.json").write_bytes(b"{}" + b" " * 500)
        (tmp_path / f"run{i}.replay.npz").write_bytes(b"z" * 600)
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
        registry.own(owner, p)
    assert sum(f.size for f in demo.run_files(tmp_path)) == 2 * 2102, "a run counts with its record and replay"
    deleted, fits = demo.enforce_quota(tmp_path, incoming=1000)
    assert fits and [os.path.basename(d) for d in deleted] == ["run0.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.replay.npz", "run1.run.json", "run1.safetensors"]


def test_upload_notes_that_no_longer_apply_go_away(app_env, tmp_path):
    from test_byo_app import home_model

    at = new_session()
    upload(at, "byo_archive", "my photos.zip", colour_zip())
    assert "It is now the data set" in sidebar_notes(at)
    at.sidebar.selectbox(key="sb_dataset").set_value("digits").run()
    assert "It is now the data set" not in sidebar_notes(at), "another data set is in use: the note is stale"
    upload(at, "byo_model", "home-model.safetensors", home_model(tmp_path))
    assert "home-model is now the active model" in sidebar_notes(at)
    box = model_box(at)
    before = box.value
    box.select_index(1 if box.index == 0 else 0).run()
    assert model_box(at).value != before
    assert "is now the active model" not in sidebar_notes(at), "another model is active: the note is stale"


def test_a_finished_run_reads_back_from_its_files_after_a_restart(app_env, monkeypatch):
    from cl.training import TrainConfig
    from ui import jobs

    job = jobs.start("someone", TrainConfig(dataset="digits", epochs=2), app_env)
    assert jobs.wait(job, 600) and job.view()["status"] == "done", job.view()["message"]
    run = job.run_id
    monkeypatch.setattr(jobs, "_JOBS", {})  # a new server process: nothing in memory
    at = open_page("train", run=run)
    assert any("Finished" in s.value for s in at.success), texts(at)
    assert [m.label for m in at.metric][:1] == ["Linear probe (paper)"]
    specs = " ".join(c.proto.spec for c in at.get("vega_lite_chart"))
    assert "kNN-30 accuracy per epoch" in specs and "Training loss" in specs
    emb = open_page("embedding", model=f"run:{run}")
    assert any("Replay: the embedding after each training epoch (2 epochs)" in e.label for e in emb.expander), \
        "the replay was saved with the run"
