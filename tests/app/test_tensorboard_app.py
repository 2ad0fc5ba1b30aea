"""The Train page's "Write a TensorBoard log" option, driven through Streamlit's AppTest, read back
with TensorBoard's own event reader."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from test_app_helpers import APP, shipped_dir, wait_for

pytest.importorskip("tensorboard")


class _ServerPagesManager(PagesManager):
    """As in tests/app/test_app.py: behave like a server after its first ``st.navigation`` call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.slow
def test_train_page_writes_a_tensorboard_run_the_event_reader_reads(monkeypatch, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cl.checkpoints import read_card
    from ui import jobs

    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(shipped_dir()))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CL_DEMO", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=180)
    _run(at)
    at.switch_page("pages/train.py")
    _run(at)
    [n for n in at.number_input if n.label == "Epochs"][0].set_value(1)
    box = at.checkbox(key="tr_tb")
    assert not box.disabled
    box.check()
    [b for b in at.button if b.label == "Start training"][0].click()
    _run(at)
    try:
        wait_for(lambda: any("Training finished" in s.value for s in _run(at).success), 300, interval=1.0)
    finally:
        for job in jobs.running():
            job.cancel_event.set()
    (model,) = (tmp_path / "runs").glob("*.safetensors")
    run_dir = jobs.tensorboard_dir(tmp_path / "runs") / model.stem
    assert any(f"tensorboard --logdir {run_dir.parent}" in c.value for c in at.caption)

    history = read_card(model)["training"]["history"]
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, np.float32(e.value)) for e in acc.Scalars("train/loss")] == [(1, np.float32(history[0]["loss"]))]
    assert [np.float32(e.value) for e in acc.Scalars("test/knn30_accuracy")] == [np.float32(history[0]["knn_acc"])]
    assert (run_dir / "projector_config.pbtxt").is_file() and (run_dir / "sprite.png").is_file()
