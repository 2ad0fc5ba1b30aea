"""``python -m cl measures``: the figures, the data they name, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cl.checkpoints import load_checkpoint
from cl.data import load_dataset
from cl.measures import measure

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "checkpoints" / "digits-best.safetensors"


def run(*args):
    env = {k: v for k, v in os.environ.items() if k != "CL_DATA_DIR"}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run([sys.executable, "-m", "cl", "measures", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_json_matches_the_library_and_names_its_data():
    p = run(DIGITS, "--limit", 150, "--seed", 3, "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    model, card = load_checkpoint(DIGITS)
    want = measure(model, load_dataset("digits", "test"), card["config"]["augmentation"], seed=3, limit=150)
    assert got["data"] == want["data"] and got["data"]["n_images"] == 150 and got["data"]["dataset"] == "digits"
    assert got["augmentation"] == card["config"]["augmentation"] and got["seed"] == 3
    for key in ("alignment", "uniformity", "rankme"):
        assert got[key] == pytest.approx(want[key], abs=1e-4), key
    assert got["histograms"]["same_class"] == want["histograms"]["same_class"]
    assert got["checkpoint"] == str(DIGITS)


def test_text_output_and_augmentation_choice():
    p = run(DIGITS, "--limit", 80, "--augmentation", "none")
    assert p.returncode == 0, p.stderr
    assert "80 digits test images" in p.stdout and "augmentation none" in p.stdout
    assert "alignment   0.0000" in p.stdout  # two views of "none" are the same image
    assert "RankMe" in p.stdout and "uniformity" in p.stdout


@pytest.mark.parametrize("args, says", [
    (["no-such.safetensors"], "no such checkpoint"),
    ([DIGITS, "--limit", "0"], "positive integer"),
    ([DIGITS, "--augmentation", "blur"], "invalid choice"),
    ([DIGITS, "--dataset", "cifar10"], ""),  # a 1x28x28 model on 3x32x32 images (or no CIFAR-10 here)
])
def test_bad_input_is_one_line_and_exit_2(args, says):
    p = run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], p.stderr
    assert "Traceback" not in p.stderr
