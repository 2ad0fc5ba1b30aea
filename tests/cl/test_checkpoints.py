"""Checkpoints: exact round trips, atomic writes, and refusal of anything foreign or hostile."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from cl.checkpoints import FORMAT, check_compatible, load_checkpoint, read_card, save_checkpoint
from cl.encoder import ConvNetEncoder, PaperEncoder
from cl.errors import CheckpointError
from cl.evaluation import embed

torch.set_num_threads(1)


def _trained_like(model):
    """Non-default weights and BN statistics, so a round trip that dropped any would show."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.1)
            else:
                t.fill_(7)
    return model.eval()


def _card(encoder="paper", width=0, dataset="mnist"):
    return {"name": "unit", "config": {"encoder": encoder, "encoder_width": width, "dataset": dataset},
            "data": {"dataset": dataset, "split": "train", "n_images": 123, "complete": False},
            "metrics": {"paper": {"linear_acc": 0.5}}, "note": "ünïcödé ✓"}


def _images(channels, size, n=6):
    return (torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)


def _one_line_error(excinfo, path=None):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    if path is not None:
        assert str(path) in msg
    return msg


@pytest.mark.parametrize("kind", ["paper-mnist", "paper-cifar", "convnet"])
def test_round_trip_identical(kind, tmp_path):
    if kind == "paper-mnist":
        model, card, shape = PaperEncoder(1, 28), _card(), (1, 28)
    elif kind == "paper-cifar":
        model, card, shape = PaperEncoder(3, 32), _card(dataset="cifar10"), (3, 32)
    else:
        model, card, shape = ConvNetEncoder(1, 28, width=16), _card("convnet", 16), (1, 28)
    # channels-last, as cl.training leaves every model it trains (and as load_checkpoint returns it)
    model = _trained_like(model).to(memory_format=torch.channels_last)
    path = save_checkpoint(tmp_path / "sub" / "model.safetensors", model, card)
    assert path.is_file()
    loaded, got = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    s1, s2 = model.state_dict(), loaded.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    x = _images(*shape)
    assert np.array_equal(embed(model, x), embed(loaded, x))
    for key, value in card.items():
        assert got[key] == value
    assert got["format"] == FORMAT and "versions" in got
    assert got["encoder_spec"]["in_channels"] == shape[0] and got["encoder_spec"]["image_size"] == shape[1]
    assert read_card(path) == got
    assert not list(path.parent.glob("*.part"))


def test_convnet_without_config_in_card_still_loads(tmp_path):
    model = _trained_like(ConvNetEncoder(3, 32, width=8))
    path = save_checkpoint(tmp_path / "bare.safetensors", model, {"name": "bare"})
    loaded, _ = load_checkpoint(path)
    x = _images(3, 32)
    assert np.array_equal(embed(model, x), embed(loaded, x))


# ----------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_failed_write_leaves_no_partial_file_and_keeps_previous(target, tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _trained_like(PaperEncoder(1, 28)), _card())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, target, boom)
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(path, PaperEncoder(1, 28), _card(dataset="other"))
    monkeypatch.undo()
    assert "No space left" in _one_line_error(excinfo)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    load_checkpoint(path)  # still a valid checkpoint


def test_interrupted_write_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, PaperEncoder(1, 28), _card())
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, PaperEncoder(1, 28), _card(dataset="other"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_new_file_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "new.safetensors", PaperEncoder(1, 28), _card())
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError) as excinfo:
        save_checkpoint(blocker / "model.safetensors", PaperEncoder(1, 28), _card())
    _one_line_error(excinfo)


# ----------------------------------------------------------------------------- hostile files
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_payload_is_live(tmp_path):
    """Control: the payload really runs code when unpickled (so the next test means something)."""
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control)))
    assert control.exists()


@pytest.mark.parametrize("how", ["torch.save", "torch.save-legacy", "pickle-0", "pickle-2", "pickle-5"])
def test_malicious_pickle_refused_without_running(how, tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.safetensors"
    payload = {"state_dict": {"w": torch.zeros(2)}, "x": _Evil(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    elif how == "torch.save-legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(how.split("-")[1])))
    for fn in (load_checkpoint, read_card):
        with pytest.raises(CheckpointError) as excinfo:
            fn(path)
        _one_line_error(excinfo, path)
    assert not marker.exists()


def _safetensors_bytes(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


GARBAGE = [
    ("empty", b"", "empty"),
    ("short", b"\x01\x02\x03", "empty or truncated"),
    ("random", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), None),
    ("json-garbage", struct.pack("<Q", 20) + b"{this is not json!!}", None),
    ("json-list", struct.pack("<Q", 9) + b"[1, 2, 3]", None),
    ("header-cut", struct.pack("<Q", 1000) + b'{"a": 1', "truncated"),
    ("text", b"hello, I am a text file pretending to be a model\n" * 10, None),
]


@pytest.mark.parametrize("name,content,expect", GARBAGE, ids=[c[0] for c in GARBAGE])
def test_garbage_files_refused(name, content, expect, tmp_path):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    msg = _one_line_error(excinfo, path)
    if expect:
        assert expect in msg


def test_safetensors_without_card_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file(PaperEncoder(1, 28).state_dict(), str(path), metadata={"author": "someone else"})
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    assert "no card" in _one_line_error(excinfo, path)
    path2 = tmp_path / "nometa.safetensors"
    save_file({"w": torch.zeros(3)}, str(path2))
    with pytest.raises(CheckpointError):
        load_checkpoint(path2)


def test_bad_cards_refused(tmp_path):
    cases = {
        "badjson": {"__metadata__": {"card": "{not json"}},
        "wrongformat": {"__metadata__": {"card": json.dumps({"format": "other/9", "encoder_spec": {}})}},
        "notdict": {"__metadata__": {"card": "[1, 2]"}},
        "nospec": {"__metadata__": {"card": json.dumps({"format": FORMAT})}},
        "badspec": {"__metadata__": {"card": json.dumps({"format": FORMAT, "encoder_spec": {
            "name": "resnet", "in_channels": 1, "image_size": 28}})}},
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(_safetensors_bytes(header))
        with pytest.raises(CheckpointError) as excinfo:
            load_checkpoint(path)
        _one_line_error(excinfo, path)


def _card_json(**spec) -> str:
    return json.dumps({"format": FORMAT, "encoder_spec": spec})


HOSTILE_HEADERS = [
    ("metadata-string", json.dumps({"__metadata__": "card"}).encode()),
    ("card-not-string", json.dumps({"__metadata__": {"card": 5}}).encode()),
    ("card-null", json.dumps({"__metadata__": {"card": "null"}}).encode()),
    ("deeply-nested-header", b"[" * 100_000 + b"]" * 100_000),
    ("deeply-nested-card", json.dumps({"__metadata__": {"card": "[" * 100_000 + "]" * 100_000}}).encode()),
    ("spec-string", json.dumps({"__metadata__": {"card": json.dumps({"format": FORMAT, "encoder_spec": "x"})}}).encode()),
    ("spec-negative-width", json.dumps({"__metadata__": {"card": _card_json(
        name="convnet", in_channels=1, image_size=28, width=-3)}}).encode()),
    # the study's encoder has no weight depending on image_size: only a bound refuses this one
    ("spec-huge-image", json.dumps({"__metadata__": {"card": _card_json(
        name="paper", in_channels=1, image_size=5000)}}).encode()),
    ("spec-many-channels", json.dumps({"__metadata__": {"card": _card_json(
        name="paper", in_channels=10_000, image_size=28)}}).encode()),
]


@pytest.mark.parametrize("name,raw", HOSTILE_HEADERS, ids=[c[0] for c in HOSTILE_HEADERS])
def test_hostile_headers_refused(name, raw, tmp_path):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    for fn in (read_card, load_checkpoint):
        with pytest.raises(CheckpointError) as excinfo:
            fn(path)
        _one_line_error(excinfo, path)


def test_huge_image_size_card_with_real_weights_refused(tmp_path):
    """Real weights behind a card that claims 5000x5000 inputs (which would load without a bound)."""
    good = save_checkpoint(tmp_path / "good.safetensors", PaperEncoder(1, 28), _card())
    blob = good.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    card = json.loads(header["__metadata__"]["card"])
    card["encoder_spec"]["image_size"] = 5000
    header["__metadata__"]["card"] = json.dumps(card)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    with pytest.raises(CheckpointError):
        load_checkpoint(forged)


def test_truncated_weights_and_mismatched_card(tmp_path):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, _trained_like(PaperEncoder(1, 28)), _card())
    blob = good.read_bytes()
    for cut in (len(blob) - 100, len(blob) // 2, 20):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError) as excinfo:
            load_checkpoint(bad)
        _one_line_error(excinfo, bad)
    # a card describing a 3-channel encoder in front of 1-channel weights
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    card = json.loads(header["__metadata__"]["card"])
    card["encoder_spec"]["in_channels"] = 3
    header["__metadata__"]["card"] = json.dumps(card)
    forged = tmp_path / "forged.safetensors"
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    forged.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + n:])
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(forged)
    assert "do not match" in _one_line_error(excinfo, forged)


def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(tmp_path / "nope.safetensors")
    assert "no such" in _one_line_error(excinfo)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def test_check_compatible(tmp_path):
    path = save_checkpoint(tmp_path / "cifar.safetensors", PaperEncoder(3, 32), _card(dataset="cifar10"))
    _, card = load_checkpoint(path)
    check_compatible(card, 3, 32, "cifar10")
    with pytest.raises(CheckpointError) as excinfo:
        check_compatible(card, 1, 28, "mnist", str(path))
    msg = _one_line_error(excinfo, path)
    assert "3x32x32" in msg and "1x28x28" in msg and "mnist" in msg
    _, mnist_card = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", PaperEncoder(1, 28), _card()))
    check_compatible(mnist_card, 1, 28, "digits")
    with pytest.raises(CheckpointError):
        check_compatible(mnist_card, 3, 32, "cifar10")


# ----------------------------------------------------------------------------- the Card type
def test_every_shipped_card_reads_as_a_card_and_gives_back_its_json():
    import glob

    from cl.checkpoints import Card, read_card, shipped_checkpoints_dir

    paths = sorted(glob.glob(str(shipped_checkpoints_dir() / "*.safetensors")))
    assert len(paths) >= 20
    for path in paths:
        raw = read_card(path)
        card = Card.read(path)
        assert card.to_dict() == raw
        # attributes against the JSON, read independently
        assert card.name == raw["name"] and card.command == raw["command"] and card.config == raw["config"]
        assert (card.data.dataset, card.data.split, card.data.n_images, card.data.complete) == (
            raw["data"]["dataset"], raw["data"]["split"], raw["data"]["n_images"], raw["data"]["complete"])
        assert card.training.seconds == raw["training"]["seconds"]
        assert card.training.history == raw["training"]["history"]
        for protocol in ("paper", "standard"):
            figures = card.figures(protocol)
            for key in ("linear_acc", "top3_acc", "knn_acc", "n_test", "split"):
                assert getattr(figures, key) == raw["metrics"][protocol][key], (path, protocol, key)
            assert figures.summary() == raw["metrics"][protocol]
        assert card.encoder_spec.in_channels == raw["encoder_spec"]["in_channels"]
        assert card.measures == raw["measures"]


def test_an_older_card_reads_with_its_missing_parts_defaulted():
    from cl.checkpoints import Card, check_compatible

    older = {"format": "contrastive-explorer/1", "name": "old",
             "encoder_spec": {"name": "paper", "width": 0, "in_channels": 1, "image_size": 28, "embedding_dim": 32},
             "config": {"dataset": "mnist", "loss": "triplet"}, "data": {"dataset": "mnist", "n_images": 100},
             "training": {"seconds": 3.5}, "metrics": {}, "something_new": [1, 2]}
    card = Card.from_dict(older)
    assert card.dataset == "mnist" and card.data.split is None and card.data.complete
    assert card.test_data is None and card.measures is None and card.made_by is None and card.command is None
    assert card.training.epochs_completed == 0 and card.training.stopped == "completed"
    assert card.figures("paper").linear_acc is None  # an unevaluated model: no figures, no invented zeros
    assert card.to_dict()["something_new"] == [1, 2]  # unknown keys survive
    check_compatible(card, 1, 28)
    check_compatible(older, 1, 28)  # a card's JSON is accepted where a Card is
    with pytest.raises(CheckpointError, match="trained on mnist"):
        check_compatible(card, 3, 32)
