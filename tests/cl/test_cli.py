"""``python -m cl`` end to end, in subprocesses, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from cl.checkpoints import load_checkpoint, save_checkpoint
from cl.data import load_dataset
from cl.encoder import PaperEncoder, count_parameters
from cl.evaluation import evaluate_model
from cl.images import to_pil

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CL_DATA_DIR"}
    if data_dir is not None:
        env["CL_DATA_DIR"] = str(data_dir)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return env


class Run:
    def __init__(self, args, env, timeout=300):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "cl", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)
        self.seconds = time.perf_counter() - t0
        self.args, self.returncode, self.stdout, self.stderr = args, p.returncode, p.stdout, p.stderr

    def json(self) -> dict:
        assert self.returncode == 0, self.stderr
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1])

    def __repr__(self):
        return f"python -m cl {' '.join(map(str, self.args))} -> {self.returncode}\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}"


def _assert_user_error(run: Run):
    assert run.returncode == 2, run
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 10, run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def small_checkpoint(workdir):
    """An untrained study encoder saved in-process, with a card naming the digits data set."""
    torch.manual_seed(0)
    path = workdir / "untrained.safetensors"
    save_checkpoint(path, PaperEncoder(1, 28).eval(), {"name": "untrained", "config": {"encoder": "paper"},
                                                      "data": {"dataset": "digits", "split": "train"}})
    return path


@pytest.fixture(scope="module")
def query_png(workdir):
    test = load_dataset("digits", "test")
    path = workdir / "query.png"
    to_pil(test.images[3]).resize((84, 84)).save(path)
    return path


def _error_cases(workdir: Path, ckpt: Path, data_dir: Path | None):
    """name -> (arguments, also run in a subprocess?). Every case goes through ``cl.cli.main``
    in-process; one of each kind (train, evaluate, neighbors, download) also runs as a real
    ``python -m cl`` process (each costs seconds of interpreter, torch and sklearn start-up)."""
    corrupt = workdir / "corrupt.safetensors"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    pickled = workdir / "pickled.pt"
    torch.save({"w": torch.zeros(3)}, pickled)
    not_image = workdir / "notes.png"
    not_image.write_text("hello, not an image")
    from test_images import _tiff  # tests/ is on sys.path (pytest prepend import mode)

    bogus_tiff = workdir / "scan.tif"
    bogus_tiff.write_bytes(_tiff(bogus_second_page=True))  # PIL raises TypeError on it
    out = workdir / "never.safetensors"
    cases = {
        "unknown-dataset": (["train", "--dataset", "imagenet", "--out", out], False),
        "epochs-0": (["train", "--dataset", "digits", "--epochs", "0", "--out", out], True),
        "epochs-negative": (["train", "--dataset", "digits", "--epochs", "-1", "--out", out], False),
        "batch-size-0": (["train", "--dataset", "digits", "--batch-size", "0", "--out", out], False),
        "unknown-loss": (["train", "--dataset", "digits", "--loss", "hinge", "--out", out], False),
        "missing-checkpoint": (["evaluate", workdir / "missing.safetensors"], False),
        "corrupt-checkpoint": (["evaluate", corrupt], True),
        "unreadable-image": (["neighbors", ckpt, not_image], False),
        "missing-folder": (["train", "--dataset", f"folder:{workdir / 'no' / 'such' / 'folder'}", "--epochs", "1",
                            "--out", out], False),
        "mnist-offline": (["train", "--dataset", "mnist", "--data-dir", workdir / "nonexistent", "--epochs", "1",
                           "--out", out], True),
        "epochs-text": (["train", "--dataset", "digits", "--epochs", "many", "--out", out], False),
        "lr-nan": (["train", "--dataset", "digits", "--lr", "nan", "--out", out], False),
        "seed-negative": (["train", "--dataset", "digits", "--seed", "-1", "--out", out], False),
        "bad-device": (["train", "--dataset", "digits", "--device", "tpu", "--epochs", "1", "--no-eval", "--out", out],
                       False),
        "mining-without-triplet": (["train", "--dataset", "digits", "--loss", "supcon", "--mining", "batch-hard",
                                    "--epochs", "1", "--out", out], False),
        "missing-out": (["train", "--dataset", "digits"], False),
        "no-command": ([], False),
        "unknown-command": (["fly"], False),
        "pickle-checkpoint": (["card", pickled], False),
        "directory-checkpoint": (["evaluate", workdir], False),
        "missing-image": (["neighbors", ckpt, workdir / "missing.png"], False),
        "directory-image": (["neighbors", ckpt, workdir], False),
        "k-zero": (["neighbors", ckpt, not_image, "--k", "0"], False),
        "corrupt-tiff": (["neighbors", ckpt, bogus_tiff], False),
    }
    if data_dir is not None:
        cases["incompatible-model"] = (["evaluate", ckpt, "--dataset", "cifar10", "--data-dir", data_dir], False)
    return cases


class InProcessRun(Run):
    def __init__(self, args, capsys):
        from cl.cli import main

        capsys.readouterr()
        t0 = time.perf_counter()
        self.returncode = main([str(a) for a in args])
        self.seconds = time.perf_counter() - t0
        self.args = args
        self.stdout, self.stderr = capsys.readouterr()


@pytest.fixture(scope="module")
def error_cases(workdir, small_checkpoint):
    from test_app_helpers import shared_data_dir

    return _error_cases(workdir, small_checkpoint, shared_data_dir())


@pytest.fixture(scope="module")
def error_runs(error_cases):
    sub = {name: args for name, (args, in_subprocess) in error_cases.items() if in_subprocess}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(Run, args, _env(None)) for name, args in sub.items()}
        return {name: f.result() for name, f in futures.items()}


ERROR_NAMES = ["unknown-dataset", "epochs-0", "epochs-negative", "batch-size-0", "unknown-loss", "missing-checkpoint",
               "corrupt-checkpoint", "unreadable-image", "missing-folder", "mnist-offline", "incompatible-model",
               "epochs-text", "lr-nan", "seed-negative", "bad-device", "mining-without-triplet", "missing-out",
               "no-command", "unknown-command", "pickle-checkpoint", "directory-checkpoint", "missing-image",
               "directory-image", "k-zero", "corrupt-tiff"]


SUBPROCESS_NAMES = ["epochs-0", "corrupt-checkpoint", "mnist-offline"]


@pytest.mark.parametrize("name,mode", [(n, "in-process") for n in ERROR_NAMES]
                         + [(n, "subprocess") for n in SUBPROCESS_NAMES])
def test_user_errors_exit_2_with_one_line(name, mode, error_cases, workdir, capsys, request):
    if name not in error_cases:
        pytest.skip("needs the shared data")
    args, in_subprocess = error_cases[name]
    if mode == "subprocess":
        assert in_subprocess
        run = request.getfixturevalue("error_runs")[name]
    else:
        run = InProcessRun(args, capsys)
    _assert_user_error(run)
    assert not (workdir / "never.safetensors").exists()
    message = run.stderr.strip()
    expected = {
        "unknown-dataset": "imagenet", "epochs-0": "epochs", "epochs-negative": "epochs", "batch-size-0": "batch",
        "unknown-loss": "hinge", "missing-checkpoint": "missing.safetensors", "corrupt-checkpoint": "corrupt",
        "pickle-checkpoint": "pickle", "unreadable-image": "notes.png", "missing-folder": "folder",
        "mnist-offline": "mnist", "incompatible-model": "3x32x32", "mining-without-triplet": "mining",
        "bad-device": "tpu", "lr-nan": "lr", "missing-image": "missing.png", "corrupt-tiff": "scan.tif",
    }.get(name)
    if expected:
        assert expected in message, message


def test_mnist_offline_does_not_hang(error_runs):
    run = error_runs["mnist-offline"]
    assert run.seconds < 60, f"the download attempt took {run.seconds:.0f} s"
    assert "train-images-idx3-ubyte" in run.stderr


def test_datasets_json(data_dir, capsys, tmp_path):
    # a real process, with an empty data folder: lists all four, only digits available, fast
    run = Run(["datasets", "--json"], _env(tmp_path))
    rows = run.json()["datasets"]
    assert [r["name"] for r in rows] == ["digits", "mnist", "fashion-mnist", "cifar10"]
    assert [r["name"] for r in rows if r["available"]] == ["digits"]
    assert "MNIST" in rows[1]["train_error"] and str(tmp_path) in rows[1]["train_error"]
    assert list(tmp_path.iterdir()) == []  # listing never downloads or creates anything
    # with the shared data (in-process: reading 60k + 6k images again in a subprocess is slow here)
    rows = InProcessRun(["datasets", "--json", "--data-dir", data_dir], capsys).json()["datasets"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["digits"]["n_train"] == 1257 and by_name["digits"]["n_test"] == 540
    assert by_name["mnist"]["n_train"] == 17_387 and by_name["mnist"]["train_complete"] is False
    assert by_name["fashion-mnist"]["n_train"] == 60_000 and by_name["fashion-mnist"]["train_complete"] is True
    assert by_name["cifar10"]["n_test"] == 1017 and by_name["cifar10"]["channels"] == 3
    assert all(r["available"] for r in rows)


def test_train_evaluate_neighbors(workdir, query_png, capsys):
    out = workdir / "digits.safetensors"
    train = Run(["train", "--dataset", "digits", "--epochs", "1", "--threads", "1", "--out", out, "--json"], _env(None))
    payload = train.json()
    assert out.is_file()
    for key in ("n_parameters", "n_train", "epochs", "seconds"):
        assert key in payload, key
    model, card = load_checkpoint(out)
    assert payload["n_parameters"] == count_parameters(model) == card["n_parameters"]
    assert payload["n_train"] == 1257 and payload["epochs"] == 1 and payload["seconds"] > 0
    assert payload["metrics"]["paper"]["n_test"] == 108 and payload["metrics"]["standard"]["n_test"] == 540
    assert card["data"]["dataset"] == "digits" and card["data"]["n_images"] == 1257

    ev = Run(["evaluate", out, "--json"], _env(None)).json()
    for key in ("linear_acc", "top3_acc", "knn_acc", "n_test", "protocol", "dataset"):
        assert key in ev, key
    assert ev["protocol"] == "paper" and ev["dataset"] == "digits" and ev["n_test"] == 108
    assert ev["top3_acc"] >= ev["linear_acc"]
    # the same figures computed here, in-process, from the saved weights
    ref = evaluate_model(model, load_dataset("digits", "test"), "paper")
    assert ev["linear_acc"] == pytest.approx(ref["linear_acc"])
    assert ev["knn_acc"] == pytest.approx(ref["knn_acc"])
    assert ev["linear_acc"] == pytest.approx(payload["metrics"]["paper"]["linear_acc"])

    k = 7
    nb = Run(["neighbors", out, query_png, "--k", str(k), "--json"], _env(None)).json()
    rows = nb["neighbors"]
    assert len(rows) == k
    test = load_dataset("digits", "test")
    sims = [r["similarity"] for r in rows]
    assert sims == sorted(sims, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in sims)
    assert len({r["index"] for r in rows}) == k
    for r in rows:
        assert {"index", "label", "similarity"} <= set(r)
        assert 0 <= r["index"] < len(test) and r["label"] == int(test.labels[r["index"]])
    assert nb["gallery"]["dataset"] == "digits"

    shown = InProcessRun(["card", out, "--json"], capsys).json()
    assert shown == json.loads(json.dumps(card))  # the card as stored

    text = InProcessRun(["evaluate", out], capsys)
    assert text.returncode == 0 and "linear" in text.stdout and "Traceback" not in text.stderr


def test_train_without_a_terminal_prints_one_line_per_epoch(workdir):
    """Logs (CI, nohup) get a line per epoch instead of a progress bar; stdout keeps the summary."""
    out = workdir / "digits-log.safetensors"
    run = Run(["train", "--dataset", "digits", "--epochs", "2", "--threads", "1", "--no-eval", "--out", out],
              _env(None))
    assert run.returncode == 0, run
    lines = [line for line in run.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], run
    assert all("s of training" in line for line in lines)
    assert f"saved {out}" in run.stdout
