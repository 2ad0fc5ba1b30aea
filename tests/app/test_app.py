"""The Streamlit app through streamlit.testing's AppTest: every page, training through the Train
page, cancelling, the session and server caps, hostile uploads, offline fallback, and several
sessions side by side.

The app is driven like a browser would: widgets are set, buttons clicked, the script rerun. A
training runs in a background thread, so tests poll by rerunning (what the page's
``st.fragment(run_every=...)`` does in a browser).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from ui.words import plain

from test_app_helpers import APP, hostile_files, odd_valid_files, shipped_dir, wait_for

# app_env (tests/app/conftest.py): the shipped models, a fresh runs folder, no training left behind
pytestmark = pytest.mark.usefixtures("app_env")

PAGES = ["home", "train", "augmentations", "embedding", "metrics", "retrieval", "compare"]
TIMEOUT = 180


def new_session() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "subheader", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}: {[b.label for b in at.button]}"
    return found[0]


def model_box(at: AppTest):
    boxes = [s for s in at.sidebar.selectbox if s.label == "Model"]
    return boxes[0] if boxes else None


def start_training(at: AppTest, epochs: int) -> None:
    goto(at, "train")
    epochs_box = [n for n in at.number_input if n.label == "Epochs"][0]
    epochs_box.set_value(epochs)
    button(at, "Start training").click().run()
    assert not at.exception, [e.message for e in at.exception]


def poll_until(at: AppTest, predicate, timeout: float = TIMEOUT) -> AppTest:
    def check():
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        return predicate(at)

    wait_for(check, timeout, interval=1.0)
    return at


# ---------------------------------------------------------------------------------------- pages
def test_every_page_renders_with_its_key_widgets():
    at = new_session()
    # the sidebar, shared by every page
    # data set and model only: what will be trained is chosen on the Train page, in one place
    assert [s.label for s in at.sidebar.selectbox] == ["Data set", "Model"]
    assert model_box(at).value.endswith("digits-fer-triplet.safetensors")
    assert "Contrastive Explorer" in at.title[0].value
    assert at.table, "the overview lists the data sets"

    goto(at, "train")
    assert {"Epochs", "Batch size", "Learning rate", "Seed"} <= {n.label for n in at.number_input}
    assert at.radio(key="tr_recipe").value == "default", "the same default recipe as `python -m cl train`"
    assert at.selectbox(key="tr_aug_default").value is None, "the recipe's own augmentation by default"
    assert at.selectbox(key="tr_loss_default").value is None, "the recipe's own loss by default"
    button(at, "Start training")

    goto(at, "augmentations")
    assert len(at.image) == 3 + 5, "anchor/positive/negative rows plus one row per augmentation"
    assert "digits train, 1,257 images" in texts(at)
    seed_caption = texts(at)
    button(at, "Re-roll").click().run()
    assert not at.exception and texts(at) != seed_caption, "re-roll draws new anchors"

    goto(at, "embedding")
    assert at.selectbox(key="emb_method").value == "tsne"
    charts = at.get("vega_lite_chart")
    assert charts, "the scatter is drawn"
    assert "540 of 540 points" in texts(at), "all test points, named"
    at.selectbox(key="emb_method").set_value("pca")
    button(at, "Compute projection").click().run()
    assert not at.exception
    assert "PCA 1" in at.get("vega_lite_chart")[0].proto.spec
    at.button_group(key="emb_color").set_value("correct").run()
    assert not at.exception
    assert "linear probe fitted on 1,257 digits train images" in texts(at)

    goto(at, "metrics")
    assert [m.label for m in at.metric][:4] == ["Linear probe accuracy", "Top-3 accuracy", "kNN-30 accuracy",
                                                "Precision@10"]
    assert "scored on 108 digits test images" in texts(at)
    assert "scored on 540 digits test images" in texts(at)
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 2 and any(c.key == "met_cm_paper" for c in charts), "per-class bars and the confusion matrix"
    at.radio(key="met_protocol").set_value("standard").run()
    assert not at.exception

    goto(at, "retrieval")
    assert at.file_uploader, "upload widget"
    assert at.number_input(key="ret_index_digits").value == 0
    assert "Top 10 neighbours" in texts(at)
    # the query, then the ten neighbours as one list of images that wraps to the screen
    assert sum(len(im.captions) or 1 for im in at.image) >= 11, "query plus ten neighbours"
    button(at, "Random image").click().run()
    assert not at.exception

    goto(at, "compare")
    assert len(at.dataframe) >= 2, "the paper table and the checkpoint table"
    assert at.dataframe[0].value.shape[0] == 12, "all 12 scenarios of the study"
    assert at.selectbox(key="cmp_a").value.endswith("digits-fer-triplet.safetensors")


def test_first_request_to_a_page_url_still_runs_through_app(monkeypatch):
    """A fresh server whose first request is /augmentations runs that page bare (Streamlit's v1
    pages/ behaviour); the app reruns it through app.py so the sidebar is there."""
    monkeypatch.setattr(app_test_module, "PagesManager", PagesManager)  # the real flag handling
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/augmentations.py").run()
    assert not at.exception
    assert at.title[0].value == "Augmentations"
    assert [s.label for s in at.sidebar.selectbox][:2] == ["Data set", "Model"]


# ---------------------------------------------------------------------------------------- training
def test_training_on_digits_through_the_train_page_feeds_every_page(app_env):
    runs = app_env
    shipped_before = sorted(p.name for p in shipped_dir().iterdir())
    at = new_session()
    start_training(at, epochs=1)
    assert "Training digits in the background" in "\n".join(i.value for i in at.sidebar.info) or \
        "Training" in texts(at)
    # the rest of the app keeps working while the model trains
    goto(at, "augmentations")
    goto(at, "train")
    poll_until(at, lambda a: any("Training finished" in s.value for s in a.success))
    saved = list(runs.glob("*.safetensors"))
    # the Train page's defaults are the command line's default recipe (cl.training.resolve)
    from cl.checkpoints import read_card
    from cl.training import TrainConfig, resolve_config

    cli_default = resolve_config(TrainConfig(dataset="digits"))
    assert len(saved) == 1 and saved[0].name.startswith(f"digits-{cli_default.augmentation}-{cli_default.loss}-")
    trained = read_card(saved[0])["config"]
    for key in ("recipe", "augmentation", "loss", "encoder", "encoder_width", "batch_size", "lr", "optimizer"):
        assert trained[key] == getattr(cli_default, key), key
    assert sorted(p.name for p in shipped_dir().iterdir()) == shipped_before, "shipped folder untouched"
    assert not list(runs.glob("*.part")) and not list(runs.glob(".*"))
    progress = [p.proto.text for p in at.get("progress")]
    assert progress and "epoch 1/1" in progress[0] and "images/s" in progress[0]
    assert at.get("vega_lite_chart"), "loss curve"
    # how far to trust the run's figures: the kNN curve's title fits, its images and band are said,
    # each final accuracy carries its interval and count (digits: 20 % of 540 test images scored)
    assert any('"kNN-30 accuracy per epoch"' in c.proto.spec for c in at.get("vega_lite_chart"))
    assert "108 images per point; the band is each point's 95 % interval" in texts(at)
    assert sum("· 108 images" in c.value for c in at.caption) >= 3
    assert model_box(at).value == str(saved[0]), "the new model is the active model"
    assert "trained this session" in model_box(at).format_func(model_box(at).value)

    name = saved[0].stem
    for page in ("embedding", "metrics", "retrieval"):
        goto(at, page)
        assert f"Model **{plain(name)}**" in texts(at), page  # a name shown as typed: its marks escaped
        if page == "embedding":  # the per-epoch replay of a model trained in this session
            at.toggle(key="emb_play").set_value(True).run()
            assert not at.exception
            assert any("Epoch 1: PCA of 540 digits test images" in c.proto.spec for c in at.get("vega_lite_chart"))
    goto(at, "compare")
    assert any(name in str(v) for v in at.dataframe[1].value["model"])

    # another session sees neither the job nor this session's model (on a laptop the runs
    # folder is listed, as the user's own earlier runs; in demo mode it is not: tests/app/test_teacher.py)
    other = new_session()
    assert model_box(other).value != str(saved[0])
    assert "trained this session" not in model_box(other).format_func(str(saved[0]))
    assert at.session_state["job_id"] is not None
    assert "job_id" not in other.session_state


def test_cancel_keeps_earlier_models_and_writes_nothing(app_env):
    runs = app_env
    runs.mkdir(parents=True)
    earlier = runs / "earlier.safetensors"
    earlier.write_bytes((shipped_dir() / "digits-fer-triplet.safetensors").read_bytes())
    digest = hashlib.sha256(earlier.read_bytes()).hexdigest()
    at = new_session()
    start_training(at, epochs=200)
    poll_until(at, lambda a: any(b.label == "Cancel training" for b in a.button), timeout=60)
    button(at, "Cancel training").click().run()
    poll_until(at, lambda a: any("cancelled" in i.value.lower() for i in a.info), timeout=120)
    records = [p for p in runs.iterdir() if p.name.endswith(".run.json")]
    assert sorted(p.name for p in runs.iterdir() if p not in records) == ["earlier.safetensors"], \
        "no new or half-written model"
    assert len(records) == 1 and json.loads(records[0].read_text())["status"] == "cancelled", \
        "the run's record says what became of it"
    assert hashlib.sha256(earlier.read_bytes()).hexdigest() == digest
    assert model_box(at).value.endswith("digits-fer-triplet.safetensors"), "active model unchanged"


def test_one_training_per_session_and_a_server_wide_cap(app_env, monkeypatch):
    from cl.training import TrainConfig
    from ui import jobs

    monkeypatch.setenv("CL_MAX_TRAININGS", "1")
    a = new_session()
    start_training(a, epochs=200)
    poll_until(a, lambda s: any(b.label == "Cancel training" for b in s.button), timeout=60)
    start = button(a, "Start training")
    assert start.disabled, "one training per session: the button is disabled while one runs"
    with pytest.raises(jobs.CapacityError, match="already training"):
        jobs.start(a.session_state["session_id"], TrainConfig(dataset="digits", epochs=1), app_env)

    b = new_session()
    start_training(b, epochs=1)
    assert any("limit 1" in w.value for w in b.warning), [w.value for w in b.warning]
    assert "job_id" not in b.session_state or b.session_state["job_id"] is None
    for page in PAGES:  # b stays fully usable
        goto(b, page)

    button(a, "Cancel training").click().run()
    poll_until(a, lambda s: not jobs.running(), timeout=120)


def test_sessions_do_not_leak_state_while_one_trains(app_env):
    trainer = goto(new_session(), "train")
    trainer.selectbox(key="tr_aug_default").set_value("simclr").run()
    trainer.selectbox(key="tr_loss_default").set_value("pairwise").run()
    start_training(trainer, epochs=200)
    others = [new_session() for _ in range(3)]
    for i, s in enumerate(others):
        goto(s, "train")
        assert s.selectbox(key="tr_aug_default").value is None, "the recipe's own, not another session's choice"
        assert s.selectbox(key="tr_loss_default").value is None
        assert not any("in the background" in x.value for x in s.sidebar.info)
        s.selectbox(key="tr_loss_default").set_value(["triplet", "ntxent", "supcon"][i]).run()
        assert s.selectbox(key="tr_loss_default").value == ["triplet", "ntxent", "supcon"][i]
        for page in ("embedding", "retrieval", "train"):
            goto(s, page)
        assert not s.get("progress"), "no other session's progress bar"
    trainer.run()
    assert trainer.selectbox(key="tr_loss_default").value == "pairwise", "no other session's choice reached it"
    ids = {s.session_state["session_id"] for s in others + [trainer]}
    assert len(ids) == 4
    button(goto(trainer, "train"), "Cancel training").click().run()


# ---------------------------------------------------------------------------------------- uploads
def test_hostile_uploads_give_a_message_and_odd_images_give_neighbours():
    at = goto(new_session(), "retrieval")
    for name, data, mime in hostile_files():
        at.file_uploader(key="ret_upload").set_value((name, data, mime)).run()
        assert not at.exception, (name, [e.message for e in at.exception])
        errors = [e.value for e in at.error]
        assert errors and "Cannot use this file" in errors[0], (name, errors)
        assert "neighbours of your image" not in texts(at), name
    for name, data, mime in odd_valid_files():
        at.file_uploader(key="ret_upload").set_value((name, data, mime)).run()
        assert not at.exception, (name, [e.message for e in at.exception])
        assert not at.error, (name, [e.value for e in at.error])
        if name == "tiny.png":  # one white pixel: blank as the model sees it, its neighbours are no matches
            assert "is blank as the model sees it" in texts(at) and "Top 10 neighbours of your image" not in texts(at)
        else:
            assert "Top 10 neighbours of your image" in texts(at), name
        assert "Preprocessing" in texts(at)
    # the shown preprocessing says what happened to a dark-on-light drawing
    at.file_uploader(key="ret_upload").set_value(("drawn.png", odd_valid_files()[-2][1], "image/png")).run()
    at.file_uploader(key="ret_upload").set_value(hostile_files()[0]).run()
    assert "Cannot use this file" in at.error[0].value


def test_an_oversized_upload_is_refused_before_decoding():
    at = goto(new_session(), "retrieval")
    from cl.images import MAX_BYTES

    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BYTES + 1024 * 1024)
    at.file_uploader(key="ret_upload").set_value(("huge.png", big, "image/png")).run()
    assert not at.exception
    assert f"over the {MAX_BYTES // 2**20} MB limit" in at.error[0].value


# ---------------------------------------------------------------------------------------- offline
def test_missing_data_gives_guidance_and_falls_back_to_digits(monkeypatch, tmp_path):
    from cl.data import dataset_status

    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CL_DATA_DIR", str(empty))
    missing = [n for n in ("fashion-mnist", "mnist", "cifar10") if dataset_status(n, empty)["n_train"] == 0]
    if not missing:
        pytest.skip("every data set is installed system-wide here")
    name = missing[0]
    at = new_session()
    at.sidebar.selectbox(key="sb_dataset").set_value(name).run()
    assert not at.exception
    side = "\n".join([e.value for e in at.sidebar.error] + [c.value for c in at.sidebar.caption])
    # briefly, what the visitor can do; the folder details are the command line's
    assert name in side and ("not on this server" in side or "test images is here" in side)
    goto(at, "train")
    assert "not on this server" in texts(at) and "python -m cl datasets" in texts(at)
    # offline, the download fails with a message saying what to do (no traceback, no hang)
    button(at, f"Download {name} (needs internet)").click().run()
    poll_until(at, lambda a: any(f"Could not download {name}" in e.value for e in a.main.error), timeout=120)
    assert "copy the files" in "\n".join(e.value for e in at.main.error)
    if at.sidebar.error:  # nothing at all: the app falls back to digits everywhere
        assert "showing digits instead" in "\n".join(e.value for e in at.sidebar.error)
        goto(at, "embedding")
        assert "digits test" in texts(at)


def test_an_unwritable_runs_folder_is_reported_before_training(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CL_RUNS_DIR", str(blocker / "runs"))
    at = new_session()
    start_training(at, epochs=1)
    assert any("cannot save models in" in w.value and "CL_RUNS_DIR" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    from ui import jobs

    assert not jobs.running()


def test_runs_folder_never_points_at_the_shipped_checkpoints(monkeypatch):
    from ui import models

    monkeypatch.setenv("CL_RUNS_DIR", str(shipped_dir()))
    assert models.runs_dir().resolve() != shipped_dir().resolve()


def test_first_page_renders_without_importing_torch():
    """The Overview page (data sets, shipped models) must not wait for `import torch` (2-3 s and
    ~500 MB): checked in a fresh interpreter, since this one has imported torch already."""
    import subprocess
    import sys

    # An import hook records which thread imports torch first: app.py starts a background
    # thread ("import-torch") once the page is drawn, so only that thread may do it.
    code = (
        "import sys, threading\n"
        "first = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' and not first:\n"
        "            first.append(threading.current_thread().name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(APP)!r}, default_timeout=120).run()\n"
        "assert not at.exception, [e.message for e in at.exception]\n"
        "assert 'Data sets on this machine' in [s.value for s in at.subheader]\n"
        "print('FIRST-IMPORT', first[0] if first else 'none')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=APP.parent)
    assert p.returncode == 0, p.stderr[-2000:]
    last = p.stdout.strip().splitlines()[-1]
    # both background threads start after the page is drawn (the second computes the active
    # model's test embeddings ahead for Retrieval, ui/cache.py); neither may be the page's own
    assert last in ("FIRST-IMPORT none", "FIRST-IMPORT import-torch", "FIRST-IMPORT warm-test-embeddings"), \
        p.stdout[-500:]
