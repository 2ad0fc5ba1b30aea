"""Demo mode (CL_DEMO=1): training caps, the runs-folder quota and its eviction order, and no
server path on any page."""

from __future__ import annotations

import os
import time

import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.testing.v1 import AppTest

from ui import demo
from ui.demo import RunFile, SessionRegistry, plan_eviction

from test_app_helpers import APP, ROOT, _ServerPagesManager, data_dir


def test_eviction_takes_the_oldest_runs_of_ended_sessions_and_never_a_live_ones():
    files = [RunFile("a", 40, 1.0, "gone"), RunFile("b", 40, 2.0, "live"), RunFile("c", 40, 3.0, None),
             RunFile("d", 40, 4.0, "gone"), RunFile("e", 40, 0.5, "live")]
    doomed, fits = plan_eviction(files, {"live"}, quota=120)
    assert doomed == ["a", "c"] and fits  # 200 -> 120: oldest ended first (a, then the unknown c)
    doomed, fits = plan_eviction(files, {"live"}, quota=100, incoming=30)
    assert doomed == ["a", "c", "d"] and fits is False  # only live runs left: 80 + 30 > 100
    assert plan_eviction(files, set(), quota=1000) == ([], True)


def test_enforce_quota_deletes_files_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_RUNS_QUOTA_MB", "0.003")  # 3,000 bytes
    registry = SessionRegistry()
    monkeypatch.setattr(demo, "SESSIONS", registry)
    registry.touch("me")
    paths = []
    for i, owner in enumerate(["old-visitor", "me", "old-visitor"]):
        p = tmp_path / f"run{i}.safetensors"
        p.write_bytes(b"x" * 1500)
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
        registry.own(owner, p)
        paths.append(p)
    deleted, fits = demo.enforce_quota(tmp_path)
    assert fits and [os.path.basename(d) for d in deleted] == ["run0.safetensors"]
    assert not paths[0].exists() and paths[1].exists() and paths[2].exists()
    _, fits = demo.enforce_quota(tmp_path, incoming=10_000)  # the live session's file must stay
    assert not fits and paths[1].exists()


def test_a_session_not_seen_for_its_ttl_has_ended():
    r = SessionRegistry(ttl=0.05)
    r.touch("s")
    assert r.live() == {"s"}
    time.sleep(0.1)
    assert r.live() == set()


def test_demo_caps(monkeypatch):
    monkeypatch.delenv("CL_APP_MAX_TRAIN_SECONDS", raising=False)
    monkeypatch.setenv("CL_MAX_TRAININGS", "8")
    monkeypatch.delenv("CL_DEMO", raising=False)
    assert demo.max_train_seconds() is None and demo.max_trainings() == 8 and demo.quota_bytes() is None
    monkeypatch.setenv("CL_DEMO", "1")
    assert demo.max_train_seconds() == demo.DEMO_TRAIN_SECONDS
    assert demo.max_trainings() == 2
    assert demo.quota_bytes() == int(demo.DEMO_QUOTA_MB * 1e6)
    monkeypatch.setenv("CL_APP_MAX_TRAIN_SECONDS", "20")
    assert demo.max_train_seconds() == 20
    monkeypatch.setenv("CL_APP_MAX_TRAIN_SECONDS", "5000")
    assert demo.max_train_seconds() == demo.DEMO_TRAIN_SECONDS


def test_the_job_registry_follows_the_demo_caps(monkeypatch):
    from ui import jobs

    monkeypatch.setenv("CL_DEMO", "1")
    monkeypatch.setenv("CL_MAX_TRAININGS", "5")
    assert jobs.max_concurrent() == 2 and jobs.max_train_seconds() == demo.DEMO_TRAIN_SECONDS


@pytest.mark.parametrize("page", ["home", "train", "embedding", "metrics", "retrieval", "compare"])
def test_no_server_path_is_shown_in_demo_mode(page, monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_DEMO", "1")
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(ROOT / "checkpoints"))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    if data_dir():
        monkeypatch.setenv("CL_DATA_DIR", data_dir())
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update({"dataset": "mnist", "model": "mnist-best"})
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    shown = _shown_text(at)
    for path in {str(ROOT), str(tmp_path), data_dir() or "/no/data/dir", "/work/", "/root/"}:
        assert path not in shown, f"{page} shows {path}"


@pytest.mark.parametrize("page", ["home", "embedding", "metrics", "retrieval"])
def test_no_server_path_is_shown_on_a_gallery_only_demo_server(page, monkeypatch, tmp_path):
    """A hosted demo without a data folder: the "train split not found" explanations name the
    folder they looked in, which must reach a visitor as <data-dir>, not the server's path."""
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_DEMO", "1")
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(ROOT / "checkpoints"))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    empty = tmp_path / "server-data-folder"
    empty.mkdir()
    monkeypatch.setenv("CL_DATA_DIR", str(empty))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update({"dataset": "cifar10", "model": "cifar10-best"})
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    shown = _shown_text(at)
    assert "test images is here" in shown  # the case under test did happen (a gallery only)
    for path in (str(empty), str(tmp_path), str(ROOT)):
        assert path not in shown, f"{page} shows {path}"
    assert "<<" not in shown and "-dir>-dir" not in shown  # no half-replaced folder names


def test_scrub_names_every_server_folder_by_role_nested_ones_included(monkeypatch, tmp_path):
    from ui import demo

    app_runs = tmp_path / "app" / "runs"  # the runs folder inside another named folder
    monkeypatch.setenv("CL_RUNS_DIR", str(app_runs))
    monkeypatch.setenv("CL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "data" / "cache"))  # the cache inside the data folder
    message = (f"cannot read {app_runs}/m.safetensors; {tmp_path}/data/cache/archives/x/test; "
               f"{tmp_path}/data/MNIST/raw")
    monkeypatch.delenv("CL_DEMO", raising=False)
    assert demo.scrub(message) == message  # a laptop shows its own paths
    monkeypatch.setenv("CL_DEMO", "1")
    assert demo.scrub(message) == ("cannot read <runs>/m.safetensors; <cache>/archives/x/test; "
                                   "<data-dir>/MNIST/raw")


def _shown_text(at) -> str:
    """Every text a visitor sees on the page: messages, captions, code, and the select boxes'
    labels and help."""
    texts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "text", "code", "json"):
        texts += [str(getattr(e, "value", "")) for e in getattr(at, kind, [])]
    texts += [str(getattr(e, "label", "")) + str(getattr(e, "help", "")) for e in at.selectbox]
    return "\n".join(texts)

