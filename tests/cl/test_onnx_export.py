"""``python -m cl export MODEL --format onnx``, checked by a real consumer: ONNX Runtime, fed images
prepared only from what the ONNX file's own metadata says, must give PyTorch's embeddings within
1e-4 on the first 256 images of each shipped data set's test gallery, for the study's encoder and
our default one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from cl.checkpoints import load_checkpoint  # noqa: E402 - after the importorskips above
from cl.cli import main  # noqa: E402 - after the importorskips above
from cl.evaluation import embed  # noqa: E402 - after the importorskips above

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "checkpoints"
GALLERIES = CHECKPOINTS / "galleries"
N_IMAGES = 256
TOLERANCE = 1e-4
# The study's encoder as shipped for MNIST and CIFAR-10 (its best scenario); Fashion-MNIST and
# digits have no shipped one, so the test trains one epoch of --recipe paper (see _paper_model).
PAPER = {"mnist": "mnist-simclr-triplet", "cifar10": "cifar10-simclr-triplet"}


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def first_test_images(dataset: str) -> np.ndarray:
    """uint8 (256, C, H, W): the shipped gallery's first images (digits: its embedded test split)."""
    path = GALLERIES / f"{dataset}-test.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return npz["images"][:N_IMAGES]
    from cl.data import load_dataset

    return load_dataset("digits", "test").images[:N_IMAGES].numpy()


def _paper_model(dataset: str, folder: Path) -> Path:
    from cl.data import load_dataset, load_gallery
    from cl.training import TrainConfig
    from cl.workflow import make_model

    if dataset == "digits":
        train_set = load_dataset("digits", "train")
    else:  # no training split is shipped: the gallery's images past the 256 compared
        gallery = load_gallery(dataset)
        train_set = gallery.subset(np.arange(N_IMAGES, len(gallery)))
    out = folder / f"{dataset}-paper.safetensors"
    make_model(TrainConfig(dataset=dataset, recipe="paper", loss="triplet", epochs=1, max_per_class=60),
               out, train_set=train_set, evaluate=False)
    return out


def consume(onnx_path: Path, images: np.ndarray, batch: int | None = None) -> tuple[np.ndarray, dict]:
    """What a user without this project does: read the preprocessing from the ONNX file, apply it
    with NumPy, run ONNX Runtime. Returns (embeddings, the preprocessing read)."""
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    pre = json.loads(meta["preprocessing"])
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    assert images.shape[1:] == (pre["channels"], pre["height"], pre["width"]) and pre["layout"] == "NCHW"
    x = ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    step = batch or len(x)
    out = [session.run([name_out], {name_in: x[s:s + step]})[0] for s in range(0, len(x), step)]
    return np.concatenate(out), pre


@pytest.fixture(scope="module")
def paper_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper-models")
    return {d: _paper_model(d, folder) for d in ("fashion-mnist", "digits")}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar10", "digits"])
def test_onnx_runtime_matches_pytorch_for_both_encoders(dataset, paper_models, tmp_path, capsys):
    images = first_test_images(dataset)
    assert len(images) == N_IMAGES
    paper = CHECKPOINTS / f"{PAPER[dataset]}.safetensors" if dataset in PAPER else paper_models[dataset]
    figures = []
    for checkpoint, encoder in ((CHECKPOINTS / f"{dataset}-best.safetensors", "convnet"), (paper, "paper")):
        out = tmp_path / encoder
        code, stdout, err = run(["export", checkpoint, "--format", "onnx", "--out", out, "--json"], capsys)
        assert code == 0, err
        result = json.loads(stdout.strip().splitlines()[-1])
        onnx_path = out / f"{checkpoint.stem}.onnx"
        assert sorted(result["files"]) == sorted(["export.json", onnx_path.name])

        model, card = load_checkpoint(checkpoint)
        assert card["encoder_spec"]["name"] == encoder
        want = embed(model, __import__("torch").from_numpy(images))
        got, pre = consume(onnx_path, images)
        diff = float(np.abs(got - want).max())
        figures.append(f"{dataset} {encoder} {checkpoint.stem}: max |ORT - torch| = {diff:.3g} on {len(images)} images")
        assert got.shape == want.shape and diff <= TOLERANCE, diff
        # the batch axis is dynamic: one image, and batches of 7 with a remainder, give the same rows
        one, _ = consume(onnx_path, images[:1])
        sevens, _ = consume(onnx_path, images[:50], batch=7)
        assert np.abs(one - want[:1]).max() <= TOLERANCE and np.abs(sevens - want[:50]).max() <= TOLERANCE
        # the graph's own signature and the JSON beside it say the same as the metadata
        graph_input = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim
        assert graph_input[0].dim_param and [d.dim_value for d in graph_input[1:]] == [pre["channels"], pre["height"],
                                                                                       pre["width"]]
        beside = json.loads((out / "export.json").read_text())
        assert beside["preprocessing"] == pre and beside["card"]["name"] == card["name"]
        assert beside["verification"]["n_images"] == N_IMAGES and beside["verification"]["passed"]
    print("\n".join(figures))  # pytest -rP shows them


def test_bad_export_inputs_give_one_line_exit_2_and_overwrite_nothing(tmp_path, capsys, monkeypatch):
    checkpoint = CHECKPOINTS / "digits-best.safetensors"
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    cases = [
        (["export", checkpoint, "--format", "tflite", "--out", tmp_path / "o"], "invalid choice: 'tflite'"),
        (["export", checkpoint, "--format", "onnx", "--out", existing], "cannot create"),
        (["export", checkpoint, "--format", "onnx", "--out", existing / "sub"], "cannot create"),
        (["export", checkpoint, "--format", "onnx", "--out", "/proc/cl-onnx-export"], "cannot"),
        (["export", checkpoint, "--format", "onnx", "--dataset", f"folder:{tmp_path / 'none'}", "--out", tmp_path / "o"],
         "does not exist"),
    ]
    for args, reason in cases:
        code, out, err = run(args, capsys)
        assert code == 2 and err.count("\n") == 1 and reason in err and "Traceback" not in err, err
    assert existing.read_text() == "keep me" and not (tmp_path / "o").exists()

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    code, out, err = run(["export", checkpoint, "--format", "onnx", "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.count("\n") == 1 and "pip install" in err and "onnxscript" in err, err
    assert not (tmp_path / "o").exists()
