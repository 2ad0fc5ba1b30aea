"""benchmarks.paper_baseline: the study's pipeline as the bench's baseline, as one command and as the two
whole commands (`--no-eval --out`, then `--evaluate`) that the bench times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.paper_baseline import build_tuples, pil_images
from cl.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "benchmarks.paper_baseline", *args, "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_two_commands_give_the_same_model_and_metrics_as_one(tmp_path):
    common = ["--dataset", "digits", "--loss", "triplet", "--augmentation", "none", "--epochs", "1"]
    one = _run(*common)
    saved = tmp_path / "m.pt"
    trained = _run(*common, "--no-eval", "--out", str(saved))
    assert "metrics" not in trained and saved.is_file()
    assert trained["epoch_losses"] == one["epoch_losses"]  # same seed, same training
    state = torch.load(saved, weights_only=True)  # a plain state dict, loadable without unpickling code
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    evaluated = _run("--dataset", "digits", "--evaluate", str(saved))
    assert evaluated["metrics"]["linear_acc"] == one["metrics"]["linear_acc"]
    assert evaluated["metrics"]["knn_acc"] == one["metrics"]["knn_acc"]
    assert evaluated["metrics"]["n_test"] == 108  # 20 % of the 540 digits test images


def test_bad_files_and_data_sets_get_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a state dict")
    cases = {("--dataset", "digits", "--evaluate", str(tmp_path / "missing.pt")): "No such file",
             ("--dataset", "digits", "--evaluate", str(junk)): "not an encoder state dict",
             ("--dataset", "nope", "--epochs", "1"): "unknown data set"}
    for args, reason in cases.items():
        p = subprocess.run([sys.executable, "-m", "benchmarks.paper_baseline", *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], p.stderr


def test_triplets_are_one_per_anchor_with_a_negative_of_another_class():
    train = load_dataset("digits", "train")
    images = pil_images(train)
    tuples = build_tuples(images, "triplet", "none", 1, 28)
    assert len(tuples) == len(train)  # under 5,000 per class: every image is an anchor once
    # build_tuples walks the classes in order of first appearance, each class's images in order:
    # that gives every anchor's label, and so the label of each normalised image
    classes = list(dict.fromkeys(y for _, y in images))
    anchor_labels = [y for c in classes for _, y in images if y == c]
    label_of = {anchor.numpy().tobytes(): y for (anchor, _, _), y in zip(tuples, anchor_labels, strict=True)}
    assert len(label_of) > 0.95 * len(tuples)  # (a few digits images are exact duplicates)
    for anchor, positive, negative in tuples:
        assert torch.equal(anchor, positive)  # no augmentation: the positive is the anchor
        a, n = label_of.get(anchor.numpy().tobytes()), label_of.get(negative.numpy().tobytes())
        assert a is not None and n is not None and a != n

