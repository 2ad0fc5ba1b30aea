"""Shipped checkpoints: small, loadable, and their cards' metrics re-measure within 0.005."""

from __future__ import annotations

from pathlib import Path

import pytest

from cl.checkpoints import load_checkpoint, read_card
from cl.data import load_dataset
from cl.evaluation import evaluate_model

CKPT = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = sorted(CKPT.glob("*.safetensors"))
# A sample that covers the paper encoder, our encoder, grey and colour data; all of them are
# checked for size and card completeness.
SAMPLE = ["digits-best", "mnist-simclr-triplet", "cifar10-none-pairwise", "mnist-best"]


def test_expected_checkpoints_are_shipped():
    names = {p.stem for p in SHIPPED}
    expected = {f"{d}-{a}-{loss}" for d in ("mnist", "cifar10") for a in ("none", "fer", "simclr")
                for loss in ("pairwise", "triplet")} | {"digits-best", "mnist-best", "fashion-mnist-best", "cifar10-best"}
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_card_is_complete_and_file_small(path):
    assert path.stat().st_size < 5_000_000
    card = read_card(path)
    assert card["command"].startswith("python -m cl train")
    assert card["config"]["seed"] == 0
    data = card["data"]
    for key in ("dataset", "split", "n_images", "complete", "source"):
        assert key in data
    if data["dataset"] in ("mnist", "cifar10"):
        assert data["complete"] is False and data["n_images"] < data["n_full"]
    for protocol in ("paper", "standard"):
        m = card["metrics"][protocol]
        assert m["dataset"] == data["dataset"] and m["split"] == "test" and m["n_test"] > 0


@pytest.mark.parametrize("name", SAMPLE)
def test_card_metrics_reproduce(name, data_dir):
    path = CKPT / f"{name}.safetensors"
    if not path.exists():
        pytest.fail(f"{path} is not shipped")
    model, card = load_checkpoint(path)
    dataset = card["data"]["dataset"]
    test = load_dataset(dataset, "test", data_dir, download=False, allow_gallery=False)
    assert len(test) == card["test_data"]["n_images"]
    got = evaluate_model(model, test, "paper", seed=0)
    want = card["metrics"]["paper"]
    for key in ("linear_acc", "top3_acc", "knn_acc"):
        assert abs(got[key] - want[key]) <= 0.005, (key, got[key], want[key])
