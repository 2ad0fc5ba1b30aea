"""Own embeddings in the app (AppTest): a file exported from a model (``python -m cl export --format
npz``) uploaded in the sidebar becomes the data set, and Embedding, Metrics and Retrieval run on its
rows without a checkpoint, giving the CLI's probe figures and the model's own neighbours; pages that
need a model say so; a bad file is one line and changes nothing; ``dataset=embeddings:ID`` reopens it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_app import goto, model_box, new_session, texts
from test_app_helpers import ROOT, shipped_dir

pytestmark = pytest.mark.usefixtures("app_env", "archive_cache_dir")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """The test model's digits test embeddings, exported by the CLI: ``(npz, checkpoint)``."""
    ckpt = next(shipped_dir().glob("*.safetensors"))
    out = tmp_path_factory.mktemp("export")
    subprocess.run([sys.executable, "-m", "cl", "export", str(ckpt), "--format", "npz", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return next(out.rglob("*.npz")), ckpt


def upload(at, files):
    if not at.sidebar.toggle(key="byo_open").value:
        at.sidebar.toggle(key="byo_open").set_value(True).run()
    at.sidebar.file_uploader(key="byo_embeddings").set_value(files).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def dataset_box(at):
    return next(s for s in at.sidebar.selectbox if s.label == "Data set")


def test_an_exported_file_opens_on_embedding_metrics_and_retrieval(exported):
    npz, _ckpt = exported
    at = upload(new_session(), (npz.name, npz.read_bytes(), "application/octet-stream"))
    assert str(dataset_box(at).value).startswith("embeddings:"), texts(at)
    assert "It is now the data set" in texts(at)
    for page in ("embedding", "metrics", "retrieval"):
        at.switch_page(f"pages/{page}.py").run()
        print(page, [e.stack_trace for e in at.exception], texts(at)[:1500])
    for page in ("train", "augmentations", "compare", "batch"):
        goto(at, page)
        assert "needs a model" in texts(at), page
