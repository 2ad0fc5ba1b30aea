"""``python -m cl train ... --tensorboard DIR``, checked by TensorBoard itself: its event reader
(``EventAccumulator``) reads back every per-epoch scalar with the value the checkpoint's card holds,
and its projector plugin lists the test embeddings and serves them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from cl.checkpoints import load_checkpoint, read_card
from cl.cli import main
from cl.data import load_dataset
from cl.evaluation import embed
from cl.tensorboard_log import SCALARS

EPOCHS = 2


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One digits training with a TensorBoard run: (logdir above the run, run folder, checkpoint)."""
    logdir = tmp_path_factory.mktemp("tb")
    run_dir, checkpoint = logdir / "digits-run", logdir / "digits.safetensors"
    code = main(["train", "--dataset", "digits", "--epochs", str(EPOCHS), "--out", str(checkpoint),
                 "--tensorboard", str(run_dir), "--json"])
    assert code == 0
    return logdir, run_dir, checkpoint


@pytest.mark.slow
def test_event_reader_reads_every_scalar_the_card_holds(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, checkpoint = trained
    card = read_card(checkpoint)
    history = card["training"]["history"]
    assert len(history) == EPOCHS
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    tags = set(acc.Tags()["scalars"])

    expected = {}  # tag -> [(step, value)] from the card, as float32 (TensorBoard's scalar type)
    for row in history:
        for key, (tag, _) in SCALARS.items():
            if isinstance(row.get(key), float) and math.isfinite(row[key]):
                expected.setdefault(tag, []).append((row["epoch"], np.float32(row[key])))
    for protocol in ("paper", "standard"):
        for key in ("linear_acc", "top3_acc", "knn_acc", "precision_at_10"):
            expected[f"final/{protocol}/{key}"] = [(EPOCHS, np.float32(card["metrics"][protocol][key]))]
    for key in ("alignment", "uniformity", "rankme"):
        expected[f"final/measures/{key}"] = [(EPOCHS, np.float32(card["measures"][key]))]
    # every figure the issue names is there for every epoch
    for key in ("loss", "images_per_s", "knn_acc", "alignment", "uniformity", "rankme"):
        assert len(expected[SCALARS[key][0]]) == EPOCHS, key

    assert tags == set(expected)
    for tag, want in expected.items():
        got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)]
        assert got == want, tag
    n_scalars = sum(len(v) for v in expected.values())
    print(f"{len(tags)} tags, {n_scalars} scalars read back equal to the card")  # pytest -rP shows it
    assert "about" in "".join(acc.Tags()["tensors"])  # the note on where the figures came from


@pytest.mark.slow
def test_projector_plugin_lists_and_serves_the_test_embeddings(trained):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    logdir, run_dir, checkpoint = trained
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                    data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)))
    plugin = ProjectorPlugin(context)
    runs = Client(plugin._serve_runs).get("/runs")
    assert runs.status_code == 200 and json.loads(runs.data) == [run_dir.name]

    config = json.loads(Client(plugin._serve_config).get(f"/info?run={run_dir.name}").data)
    (embedding,) = config["embeddings"]
    assert embedding["tensorName"] == checkpoint.stem and embedding["sprite"]["imagePath"] == "sprite.png"

    test = load_dataset("digits", "test")
    model, _ = load_checkpoint(checkpoint)
    want = embed(model, test.images)
    served = Client(plugin._serve_tensor).get(f"/tensor?run={run_dir.name}&name={checkpoint.stem}&num_rows=100000")
    assert served.status_code == 200
    got = np.frombuffer(served.data, dtype=np.float32).reshape(want.shape)
    assert np.abs(got - want).max() < 1e-6  # tensors.tsv keeps 7 significant digits
    meta = Client(plugin._serve_metadata).get(f"/metadata?run={run_dir.name}&name={checkpoint.stem}&num_rows=100000")
    rows = meta.data.decode().splitlines()
    assert rows[0] == "index\tlabel\tclass\torigin" and [int(r.split("\t")[1]) for r in rows[1:]] == test.labels.tolist()
    assert [r.split("\t")[3] for r in rows[1:]] == test.origins  # where each image came from
    sprite = Client(plugin._serve_sprite_image).get(f"/sprite_image?run={run_dir.name}&name={checkpoint.stem}")
    assert sprite.status_code == 200 and sprite.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_tensorboard_folders_give_one_line_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    event = earlier / "events.out.tfevents.1.host.1.0"
    event.write_bytes(b"an earlier run")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    out = tmp_path / "m.safetensors"
    for folder, reason in ((earlier, "already holds another TensorBoard run"), (a_file, "is a file")):
        code, _, err = run(["train", "--dataset", "digits", "--epochs", "1", "--out", out, "--tensorboard", folder],
                           capsys)
        assert code == 2 and err.count("\n") == 1 and reason in err and "Traceback" not in err, err
    assert event.read_bytes() == b"an earlier run" and sorted(p.name for p in earlier.iterdir()) == [event.name]
    assert a_file.read_text() == "keep me" and not out.exists()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, _, err = run(["train", "--dataset", "digits", "--out", out, "--tensorboard", tmp_path / "new"], capsys)
    assert code == 2 and err.count("\n") == 1 and "pip install tensorboard" in err, err
    assert not out.exists() and not (tmp_path / "new").exists()
