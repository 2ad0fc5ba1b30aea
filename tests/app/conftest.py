"""Fixtures of the app-level tests: ``app_env`` for AppTest runs, ``server`` and ``browser`` for the
real-browser tests (one Streamlit server and one Chromium per test module)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import streamlit.testing.v1.app_test as app_test_module

from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS, free_port

from test_app_helpers import ROOT, SHOTS, _ServerPagesManager, data_dir, shipped_dir


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    if data_dir():
        monkeypatch.setenv("CL_DATA_DIR", data_dir())
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(shipped_dir()))
    runs = tmp_path / "runs"
    monkeypatch.setenv("CL_RUNS_DIR", str(runs))
    monkeypatch.delenv("CL_APP_LIST_RUNS", raising=False)
    monkeypatch.delenv("CL_MAX_TRAININGS", raising=False)
    yield runs
    from ui import jobs

    for job in jobs.running():  # never leave a training behind for the next test
        job.cancel_event.set()
    for job in jobs.running():
        jobs.wait(job, 60)


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    port = free_port()
    runs = Path(tempfile.mkdtemp(prefix="cl-app-runs-"))
    env = dict(os.environ, CL_CHECKPOINTS_DIR=str(shipped_dir()), CL_RUNS_DIR=str(runs), CL_MAX_TRAININGS="2")
    env.pop("CL_APP_LIST_RUNS", None)
    if data_dir():
        env["CL_DATA_DIR"] = data_dir()
    log = open(runs / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() - t0 > 60:
                    raise RuntimeError(f"streamlit did not start: {(runs / 'server.log').read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield {"url": url, "runs": runs}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if os.environ.get("CL_KEEP_SERVER_LOG"):
            print((runs / "server.log").read_text()[-5000:])
        shutil.rmtree(runs, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=[*CHROMIUM_ARGS, "--disable-background-networking", "--disable-component-update",
                                    "--disable-sync", "--no-first-run"])
        yield b
        b.close()
