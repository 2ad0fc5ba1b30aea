"""One workflow makes a model: the card's command replays to the card's configuration, whoever made it."""

from __future__ import annotations

import shlex
import uuid
from dataclasses import asdict, replace

import pytest

from cl import training
from cl.checkpoints import read_card
from cl.cli import build_parser, main
from cl.errors import CheckpointError, ConfigError
from cl.training import TrainConfig, resolve_config
from cl.workflow import MACHINE_FIELDS, config_from_args, open_model, train_command


def replay(command: str) -> TrainConfig:
    """The resolved config a ``python -m cl train ...`` line asks for, parsed by the real CLI parser."""
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "cl", "train"], command
    if "--out" not in words:
        words += ["--out", "x.safetensors"]
    return resolve_config(config_from_args(build_parser().parse_args(words[3:])))


def same_model_settings(a, b) -> bool:
    """Whether two configs (resolved, or a card's as TrainConfig) ask for the same model: every
    field but the machine's own."""
    def model_fields(c) -> dict:
        return {k: v for k, v in asdict(c).items() if k not in MACHINE_FIELDS}
    return model_fields(a) == model_fields(b)


CONFIGS = [
    TrainConfig(dataset="digits"),
    TrainConfig(dataset="mnist", recipe="paper", augmentation="fer", loss="triplet"),
    TrainConfig(dataset="cifar10", recipe="paper", augmentation="simclr", loss="pairwise", max_per_class=300),
    TrainConfig(dataset="mnist", augmentation="simclr", loss="triplet", mining="batch-hard", negatives="random"),
    TrainConfig(dataset="fashion-mnist", loss="ntxent", temperature=0.25, lr=1.234567e-3, time_budget=12.5),
    TrainConfig(dataset="digits", loss="contrastive", margin=0.75, weight_decay=0.0, optimizer="sgd", encoder_width=8),
    TrainConfig(dataset="digits", augment_once=True, augment_anchor=False, views=1, precision="fp32", seed=7),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.dataset}-{c.recipe}-{c.loss}")
def test_command_replays_to_the_same_config(config):
    resolved = resolve_config(config)
    assert same_model_settings(replay(train_command(config)), resolved)


def test_a_card_replays_after_the_recipe_defaults_change(monkeypatch):
    original = resolve_config(TrainConfig(dataset="digits"))
    command = train_command(original)
    changed = dict(training.DEFAULT_RECIPE["digits"], epochs=3, lr=0.02, views=1, encoder_width=8)
    monkeypatch.setitem(training.DEFAULT_RECIPE, "digits", changed)
    # a command with only the user's choices would now mean another model ...
    assert replay("python -m cl train --dataset digits").epochs == 3
    # ... the card's command does not
    assert same_model_settings(replay(command), original)


def test_command_quotes_odd_data_set_names(tmp_path):
    folder = tmp_path / "my images (v2).zip"
    config = replace(resolve_config(TrainConfig(dataset="digits")), dataset=f"folder:{folder}")
    words = shlex.split(train_command(config))
    assert words[words.index("--dataset") + 1] == f"folder:{folder}"


def test_cli_made_card_replays(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--no-eval", "--lr", "0.004",
                 "--out", str(out)]) == 0
    card = read_card(out)
    assert card["made_by"] == "cli" and card["command"].endswith("--out m.safetensors")
    assert same_model_settings(replay(card["command"]), TrainConfig(**card["config"]))
    assert card["config"]["lr"] == 0.004 and card["config"]["epochs"] == 1


def test_app_made_card_replays(tmp_path):
    from ui import jobs

    config = TrainConfig(dataset="digits", augmentation="fer", loss="triplet", epochs=1, batch_size=64)
    job = jobs.start(f"test-{uuid.uuid4().hex}", config, tmp_path, knn_per_epoch=False, snapshots=False)
    assert jobs.wait(job, 120), "the training did not end"
    view = job.view()
    assert view["status"] == "done", view["message"]
    card = read_card(job.out)
    assert card["made_by"] == "app"
    saved = TrainConfig(**card["config"])
    # the settings the app's form cannot show (views, width, optimiser) are in the command too
    for flag in ("--views", "--encoder-width", "--optimizer", "--weight-decay"):
        assert flag in card["command"]
    assert same_model_settings(replay(card["command"]), saved)
    assert set(card["metrics"]) == {"paper", "standard"}


def test_open_model_checks_the_data_fits(tmp_path):
    out = tmp_path / "d.safetensors"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--no-eval", "--out", str(out)]) == 0
    opened = open_model(out)
    assert opened.dataset == "digits" and len(opened.data) > 0
    with pytest.raises(CheckpointError, match=r"d.safetensors: the model takes 1x28x28 .* cifar10 has 3x32x32"):
        open_model(out, dataset="cifar10")  # the shipped CIFAR-10 gallery stands in for a missing test split


def test_negative_weight_decay_is_refused():
    with pytest.raises(ConfigError, match="weight decay"):
        resolve_config(TrainConfig(dataset="digits", weight_decay=-0.1))


def test_the_config_walks_straight_down_make_model():
    """scripts/trace_calls.py: under sys.setprofile, every function of cl/ handed the config during
    one digits training through make_model is entered once (resolved once, not again below)."""
    import runpy
    from pathlib import Path

    trace = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "trace_calls.py"))["trace"]
    entered = trace()
    assert entered[:2] == ["cl.workflow.make_model", "cl.training.resolve_config"]
    assert "cl.training.train" in entered and "cl.workflow.train_command" in entered
    assert len(entered) == len(set(entered)), entered


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_data_set_name_walks_straight_down_to_the_tensors(split):
    """scripts/trace_calls.py: loading a split as the app does hands the data set's name (or its
    source object) to each function of cl/ once: the name is resolved to a source once."""
    import runpy
    from pathlib import Path

    trace_data = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "trace_calls.py"))["trace_data"]
    entered = trace_data("digits", split)
    assert entered[0] == "cl.data.load_dataset" and entered[-1] == "cl.data.DigitsSource.load"
    assert entered.count("cl.data.data_source") == 1
    assert len(entered) == len(set(entered)), entered
