"""Killing a training run (SIGKILL, no chance to clean up) never harms the saved model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cl.checkpoints import load_checkpoint, read_card

ROOT = Path(__file__).resolve().parents[2]


def _run_cl(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cl", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_sigkill_during_training_leaves_previous_checkpoint_intact(tmp_path):
    out = tmp_path / "model.safetensors"
    first = _run_cl("train", "--dataset", "digits", "--epochs", "1", "--threads", "1", "--no-eval", "--out", str(out))
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    before = out.read_bytes()
    card_before = read_card(out)

    second = _run_cl("train", "--dataset", "digits", "--epochs", "200", "--threads", "1", "--seed", "7",
                     "--out", str(out))
    time.sleep(8)  # well inside 200 epochs of training
    assert second.poll() is None, "the long run ended before it could be killed"
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=60)

    assert out.read_bytes() == before
    assert read_card(out) == card_before
    model, _ = load_checkpoint(out)  # still loads
    # nothing else under the final name or looking like a checkpoint
    others = [p.name for p in tmp_path.iterdir() if p.name != "model.safetensors"]
    assert all(name.startswith(".") and name.endswith(".part") for name in others), others
