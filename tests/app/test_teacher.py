"""The app as a teacher meets it: the right model after a reload or a copied link, real upload
limits, one place that says what will be trained, a visible model order, no stale advice, plain
words, a map for a new model, and short no-data messages (AppTest on the shipped checkpoints)."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit.testing.v1.app_test as app_test_module
import tomllib
from streamlit.testing.v1 import AppTest

from test_app_helpers import APP, ROOT, _ServerPagesManager, data_dir

CKPT = ROOT / "checkpoints"
TIMEOUT = 180


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_DATA_DIR", data_dir() or str(tmp_path / "no-data"))
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("CL_DEMO", "CL_APP_LIST_RUNS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def visit(page: str = "", **params) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.query_params.update(params)
        at.run()
    assert not at.exception, at.exception
    return at


def model_box(at: AppTest):
    return next(w for w in at.sidebar.selectbox if w.label == "Model")


def shown(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader")
    return "\n".join(str(e.value) for k in kinds for e in at.get(k))


def a_run(runs: Path, dataset: str = "digits") -> Path:
    """A model saved in the runs folder as the Train page saves one (same workflow, no evaluation)."""
    from cl.training import TrainConfig, resolve_config
    from cl.workflow import make_model
    from ui.jobs import run_filename

    config = resolve_config(TrainConfig(dataset=dataset, epochs=1))
    out = runs / run_filename(config)
    runs.mkdir(parents=True, exist_ok=True)
    assert make_model(config, out, evaluate=False, made_by="app").saved
    return out


# ------------------------------------------------------------------ 2. nothing lost on reload
def test_a_model_trained_in_the_app_reopens_from_its_link(env, monkeypatch):
    run = a_run(env / "runs")
    at = visit("embedding", model=f"run:{run.stem}")
    assert model_box(at).value == str(run.resolve())
    assert at.query_params["model"] == f"run:{run.stem}", "the link keeps naming it"
    # a reload (a new session with the same URL) opens it again, also in demo mode ...
    monkeypatch.setenv("CL_DEMO", "1")
    again = visit("metrics", dataset="digits", model=f"run:{run.stem}")
    assert model_box(again).value == str(run.resolve())
    # ... where another visitor without the link is not offered it
    other = visit("", dataset="digits")
    assert not any(run.stem in label for label in model_box(other).options)
    # a removed file: a message and the data set's best model, never a traceback
    run.unlink()
    gone = visit("", model=f"run:{run.stem}")
    assert "unknown model" in shown(gone)
    assert model_box(gone).value.endswith("digits-best.safetensors")


def test_on_a_laptop_earlier_runs_are_listed(env):
    run = a_run(env / "runs")
    at = visit("", dataset="digits")
    assert any(run.stem in label and "runs folder" in label for label in model_box(at).options)


@pytest.mark.parametrize("bad", ["run:../../etc/passwd", "upload:", "run:x/y", "nonsense:abc"])
def test_a_link_id_never_reaches_outside_the_apps_folders(bad):
    at = visit("", model=bad)
    assert "unknown model" in shown(at)


# ------------------------------------------------------------------ 3. upload limits that hold
def test_every_uploader_states_a_limit_the_server_accepts(monkeypatch):
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server_mb = config["server"]["maxUploadSize"]
    for demo_mode in (False, True):
        if demo_mode:
            monkeypatch.setenv("CL_DEMO", "1")
        at = visit("retrieval")
        at.sidebar.toggle(key="byo_open").set_value(True).run()
        uploaders = at.get("file_uploader")
        assert len(uploaders) >= 3, "retrieval's image, the sidebar's model and image set"
        for u in uploaders:
            limit = u.proto.max_upload_size_mb
            assert 1 <= limit <= server_mb, (u.proto.label, limit, server_mb)
            # the help or the page's text names the same limit
            assert f"{limit} MB" in (u.proto.help + shown(at)), (u.proto.label, limit)


# ------------------------------------------------------------------ 5. one truth about training
def test_the_train_page_says_once_what_will_be_trained():
    at = visit("train")
    assert [s.label for s in at.sidebar.selectbox] == ["Data set", "Model"], "no training choices in the sidebar"
    text = shown(at)
    assert text.count("Will train") == 1
    from cl.training import TrainConfig, resolve_config

    recipe = resolve_config(TrainConfig(dataset="digits"))
    will = next(m.value for m in at.markdown if "Will train" in m.value)
    assert f"loss **{recipe.loss}" in will and f"augmentation **{recipe.augmentation}" in will
    at.selectbox(key="tr_loss_default").set_value("triplet").run()
    will = next(m.value for m in at.markdown if "Will train" in m.value)
    assert "loss **triplet" in will


# ------------------------------------------------------------------ 7. defaults and order
def test_an_unknown_model_link_falls_back_to_the_data_sets_best_model():
    at = visit("", dataset="mnist", model="no-such-model")
    assert model_box(at).value.endswith("mnist-best.safetensors")


def test_the_model_list_is_in_a_visible_order():
    at = visit("", dataset="mnist")
    stems = [label.split(" (")[0] for label in model_box(at).options]
    mnist = [s for s in stems if s.startswith("mnist-")]
    assert mnist[0] == "mnist-best"
    study = [f"mnist-{a}-{loss}" for a in ("none", "fer", "simclr") for loss in ("pairwise", "triplet")]
    assert mnist[1:7] == study, "the study's six models in its table order"
    assert mnist[7:] == sorted(mnist[7:]), "then the outlook models by name"
    assert stems.index(mnist[-1]) < min(stems.index(s) for s in stems if not s.startswith("mnist-")), \
        "models of the data set in use come first"


def test_advice_to_switch_data_set_goes_once_it_is_followed():
    at = visit("", dataset="digits")
    path = str((CKPT / "cifar10-best.safetensors").resolve())
    from cl.checkpoints import read_card

    at.session_state["session_models"] = [{"path": path, "card": read_card(path), "snapshots": None, "uploaded": True}]
    at.session_state["byo_notes"] = {"model": ("warning", "cifar10-best is loaded, but it takes 3x32x32 images; "
                                               "choose cifar10", path)}
    at.run()
    assert "choose cifar10" in shown(at)
    at.sidebar.selectbox(key="sb_dataset").set_value("cifar10").run()
    assert model_box(at).value == path
    assert "choose cifar10" not in shown(at)


# ------------------------------------------------------------------ 6. words
def test_each_metric_help_says_what_it_measures():
    at = visit("metrics", dataset="digits", model="digits-best")
    helps = [m.proto.help for m in at.get("metric")][:4]
    assert len(set(helps)) == 4, "four different explanations, not one repeated data sentence"
    from ui.words import GLOSSARY

    for term in ("fer", "1x28x28", "paper protocol", "standard protocol", "kNN-30", "Precision@10", "linear probe",
                 "SupCon", "bf16", "complete"):
        assert len(GLOSSARY[term].split()) >= 6, term
    home = visit("")
    glossary = next(e for e in home.expander if "Words used in this app" in e.label)
    words = "\n".join(m.value for m in glossary.markdown)
    for term in ("paper protocol", "kNN-30", "SupCon", "bf16", "complete"):
        assert f"**{term}**" in words, term


def test_visitors_see_no_exception_names_or_mode_codes():
    import io

    from PIL import Image

    from cl.errors import UserError
    from cl.images import decode_image_bytes, prepare_image

    with pytest.raises(UserError) as err:
        decode_image_bytes(b"not an image at all", name="notes.txt")
    assert "Error" not in str(err.value) and "notes.txt" in str(err.value)
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    steps = prepare_image(decode_image_bytes(buf.getvalue()), 1, 28).steps
    assert not any("RGBA" in s for s in steps), steps


# ------------------------------------------------------------------ 8. a map for a new model
def test_a_new_model_opens_on_its_tsne_map(env):
    from cl.training import TrainConfig
    from ui import jobs

    job = jobs.start("teacher-map", TrainConfig(dataset="digits", epochs=1), env / "runs", knn_per_epoch=False,
                     snapshots=False)
    assert jobs.wait(job, 240)
    assert job.view()["status"] == "done", job.view()["message"]
    from cl.layouts import load_layout

    xy = load_layout(job.out, "tsne")
    assert xy is not None and xy.shape == (540, 2), "the t-SNE of the digits test images, saved beside the model"
    at = visit("embedding", model=f"run:{job.out.stem}")
    assert model_box(at).value == str(job.out.resolve())
    assert at.selectbox(key="emb_method").value == "tsne"
    assert "computed once for this model" in shown(at)
    settings = next(e for e in at.expander if "Projection settings" in e.label)
    assert not settings.proto.expanded, "opens on the map, settings closed"


# ------------------------------------------------------------------ 9. no data folder
def test_without_data_the_sidebar_says_briefly_what_can_be_done(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path / "nothing-here"))
    for demo_mode in (False, True):
        if demo_mode:
            monkeypatch.setenv("CL_DEMO", "1")
        at = visit("", dataset="mnist")
        side = "\n".join(str(e.value) for k in ("caption", "warning", "error", "info") for e in at.sidebar.get(k))
        assert "gallery of 2,000 test images" in side
        assert "raw" not in side and "nothing-here" not in side and "<<" not in side
        assert len(side) < 700, "a phone's sidebar is not filled with paths"


def test_scrub_leaves_words_alone_when_the_data_folder_is_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CL_DEMO", "1")
    monkeypatch.setenv("CL_DATA_DIR", "data")
    from ui import demo

    folder = str((tmp_path / "data").resolve())
    text = f"not found: expected {folder}/MNIST/raw; pass --data-dir or set CL_DATA_DIR. The data set."
    out = demo.scrub(text)
    assert out == "not found: expected <data-dir>/MNIST/raw; pass --data-dir or set CL_DATA_DIR. The data set."


# ------------------------------------------------------------------ the mechanism, live
def test_training_measures_alignment_and_uniformity_within_its_time_share(env, monkeypatch):
    from cl.training import TrainConfig
    from ui import jobs

    job = jobs.start("teacher-measures", TrainConfig(dataset="digits", epochs=3), env / "runs", snapshots=False)
    assert jobs.wait(job, 900) and job.view()["status"] == "done", job.view()["message"]
    history = job.view()["history"]
    measured = [h for h in history if "alignment" in h]
    train_s = sum(h["seconds"] for h in history if "seconds" in h) or job.view()["card"]["training"]["seconds"]
    spent = sum(h["measure_seconds"] for h in measured)
    # within the share, up to one measurement's cost (the budget is checked before measuring)
    assert spent <= jobs.MEASURE_SHARE * train_s + max((h["measure_seconds"] for h in measured), default=0)
    # with the whole time allowed every epoch is measured, and the figures are the measures module's
    monkeypatch.setattr(jobs, "MEASURE_SHARE", 10.0)
    job = jobs.start("teacher-measures-2", TrainConfig(dataset="digits", epochs=2), env / "runs", snapshots=False)
    assert jobs.wait(job, 900) and job.view()["status"] == "done"
    rows = [h for h in job.view()["history"] if "alignment" in h]
    assert [h["epoch"] for h in rows] == [1, 2]
    assert all(0 <= h["alignment"] <= 4 and -4 <= h["uniformity"] <= 0 and 1 <= h["rankme"] for h in rows)
    at = visit("train")
    at.session_state["job_id"] = job.id
    at.run()
    assert any("Alignment and uniformity per epoch" in c.proto.spec for c in at.get("vega_lite_chart"))


def test_the_model_list_reads_each_card_once_and_follows_changes(tmp_path, monkeypatch):
    import os
    import shutil

    from cl.checkpoints import read_card, rewrite_card
    from ui import models

    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(CKPT / "digits-best.safetensors", folder / "a.safetensors")
    calls = []
    monkeypatch.setattr(models, "read_card", lambda p: calls.append(p) or read_card(p))
    first, _ = models._entries_in(folder, "shipped")
    again, _ = models._entries_in(folder, "shipped")
    assert len(first) == len(again) == 1 and len(calls) == 1, "one read for two listings"
    card = read_card(folder / "a.safetensors")
    rewrite_card(folder / "a.safetensors", {**card, "name": "renamed"})
    st = os.stat(folder / "a.safetensors")
    os.utime(folder / "a.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed, _ = models._entries_in(folder, "shipped")
    assert changed[0].name == "renamed" and len(calls) == 2
    (folder / "b.safetensors").write_bytes(b"not a checkpoint")
    entries, problems = models._entries_in(folder, "shipped")
    assert len(entries) == 1 and len(problems) == 1


def test_a_confusion_cell_highlights_its_images_on_the_map():
    at = visit("metrics", dataset="digits", model="digits-best")
    spec = next((c.proto.spec for c in at.get("vega_lite_chart") if "Where they lie on the model" in c.proto.spec), None)
    assert spec is not None, "the most confused pair's images on the model's t-SNE"
    import json

    data = json.loads(spec)
    values = next(iter(data["datasets"].values())) if data.get("datasets") else None
    if values is None:  # Streamlit sends the data beside the spec, as Arrow
        chart = next(c for c in at.get("vega_lite_chart") if "Where they lie on the model" in c.proto.spec)
        import pyarrow as pa

        raw = chart.proto.datasets[0].data.data if chart.proto.datasets else chart.proto.data.data
        values = pa.ipc.open_stream(raw).read_all().to_pandas().to_dict("records")
    picked = [v for v in values if v["picked"] != "other test images"]
    assert picked and len(picked) < len(values)
    # the highlighted points are exactly the images the gallery lists (true class = the pair's first)
    true_class = picked[0]["picked"].split(" ")[0]
    assert all(v["class"] == true_class for v in picked)


def test_neighbour_agreement_against_a_loop():
    import numpy as np

    from cl.retrieval import neighbour_agreement

    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8)).astype(np.float32)
    b = a + rng.normal(scale=0.5, size=a.shape).astype(np.float32)
    got = neighbour_agreement(a, b, k=5)

    def knn(z, i, k):
        u = z / np.linalg.norm(z, axis=1, keepdims=True)
        sim = u @ u[i]
        sim[i] = -np.inf
        return set(np.argsort(-sim, kind="stable")[:k])

    expected = [len(knn(a, i, 5) & knn(b, i, 5)) / 5 for i in range(len(a))]
    assert np.allclose(got, expected)
    assert np.allclose(neighbour_agreement(a, a, k=5), 1.0)
    assert 0 < got.mean() < 1


def test_compare_colours_the_map_by_neighbourhood_agreement():
    at = visit("compare", dataset="mnist", model="mnist-best")  # beside another MNIST model by default
    assert "Where the two models agree" in [s.value for s in at.subheader]
    assert any("neighbours" in c.proto.spec and "agreement" in c.proto.spec for c in at.get("vega_lite_chart"))
    assert "changed most" in shown(at)


def test_tsne_replay_frames_morph_instead_of_jumping():
    import numpy as np

    from cl.projection import ProjectionParams, project, tsne_sequence

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6, size=(5, 16))
    base = (centres[rng.integers(0, 5, 300)] + rng.normal(size=(300, 16))).astype(np.float32)
    frames = [base + rng.normal(scale=0.3, size=base.shape).astype(np.float32) for _ in range(3)]
    seq = tsne_sequence(frames, n_iter=300, n_iter_step=80)
    assert [f.shape for f in seq] == [(300, 2)] * 3
    step = np.abs(seq[0] - seq[1]).mean()  # a morph: the frame started from its successor
    independent = project(frames[0], ProjectionParams("tsne", seed=1), n_iter=300)  # a frame computed on its own
    jump = np.abs(independent - seq[1]).mean()
    assert step < 0.5 * jump, (step, jump)
    again = tsne_sequence(frames, n_iter=300, n_iter_step=80)
    assert all(np.allclose(a, b) for a, b in zip(seq, again, strict=True)), "deterministic"
