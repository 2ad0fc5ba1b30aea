"""cl.batchview: one training batch, its terms against the loss class and independent references,
the batch against the training loop's own first step, and ``python -m cl batch``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl.batchview import batch_config, batch_from_checkpoint, build_batch, summarise, to_json
from cl.data import load_dataset
from cl.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "checkpoints" / "digits-best.safetensors"

# every loss of the registry, every miner, both negative samplers, both recipes
CASES = {
    "supcon-1view": dict(recipe="default", loss="supcon", views=1),
    "supcon-2views": dict(recipe="default", loss="supcon", views=2),
    "ntxent": dict(recipe="default", loss="ntxent"),
    "ntxent-paper": dict(recipe="paper", loss="ntxent", augmentation="simclr"),
    "pairwise-paper": dict(recipe="paper", loss="pairwise", augmentation="fer"),
    "pairwise-random": dict(recipe="paper", loss="pairwise", negatives="random"),
    "contrastive": dict(recipe="default", loss="contrastive"),
    "triplet-paper": dict(recipe="paper", loss="triplet", augmentation="simclr"),
    "triplet-none-aug": dict(recipe="paper", loss="triplet"),
    "triplet-random-negatives": dict(recipe="paper", loss="triplet", negatives="random", augmentation="fer"),
    "batch-hard": dict(recipe="paper", loss="triplet", mining="batch-hard", augmentation="simclr"),
    "semi-hard": dict(recipe="default", loss="triplet", mining="semi-hard"),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


def _config(case: str, batch_size: int = 12, seed: int = 0):
    return batch_config({"dataset": "digits", **CASES[case]}, seed=seed, batch_size=batch_size)


@pytest.fixture(scope="module")
def batches(digits):
    torch.set_num_threads(1)
    return {case: build_batch(_config(case), digits) for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_terms_reduce_to_the_loss_class_value(batches, case):
    b = batches[case]
    assert b.loss == CASES[case]["loss"] and len(b.contributions) > 0
    finite = b.contributions[np.isfinite(b.contributions)]
    assert abs(finite.mean() - b.value) < 1e-6, (finite.mean(), b.value)
    assert b.value > 0  # an untrained model leaves every loss positive: the equality is not 0 == 0


def _rows(b, key):
    return torch.from_numpy(b.embeddings[b.terms[key]])


@pytest.mark.parametrize("case", ["triplet-paper", "triplet-none-aug", "triplet-random-negatives", "batch-hard",
                                  "semi-hard"])
def test_triplet_terms_match_torch(batches, case):
    b = batches[case]
    want = F.triplet_margin_loss(_rows(b, "a"), _rows(b, "p"), _rows(b, "n"), margin=1.0, reduction="none")
    np.testing.assert_allclose(b.contributions, want.numpy(), atol=1e-6)
    assert (b.terms["satisfied"] == (want.numpy() == 0)).all()
    assert ((b.terms["kind"] == "easy") == b.terms["satisfied"]).all()  # easy is exactly zero loss


@pytest.mark.parametrize("case", ["pairwise-paper", "pairwise-random"])
def test_pairwise_terms_match_torch(batches, case):
    b = batches[case]
    y = torch.from_numpy(np.where(b.terms["similar"], 1.0, -1.0)).float()
    want = torch.nn.CosineEmbeddingLoss(margin=0.0, reduction="none")(_rows(b, "a"), _rows(b, "b"), y)
    np.testing.assert_allclose(b.contributions, want.numpy(), atol=1e-6)
    # similar pairs are an image and its own positive; dissimilar ones follow the sampler
    same = b.row_index[b.terms["a"]] == b.row_index[b.terms["b"]]
    assert (same[b.terms["similar"]]).all()


def test_contrastive_terms_match_the_formula(batches):
    b = batches["contrastive"]
    d = np.linalg.norm(b.embeddings[b.terms["a"]] - b.embeddings[b.terms["b"]], axis=1)
    want = np.where(b.terms["similar"], 0.5 * d ** 2, 0.5 * np.maximum(0, 1.0 - d) ** 2)
    np.testing.assert_allclose(b.contributions, want, atol=1e-5)


def _softmax_rows(z, tau):
    """p(i -> k) for k != i by hand: exp(cos/tau) over the sum of the others."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    p = np.zeros((m, m))
    for i in range(m):
        e = [math.exp(float(z[i] @ z[k]) / tau) if k != i else 0.0 for k in range(m)]
        p[i] = np.array(e) / sum(e)
    return p


@pytest.mark.parametrize("case", ["ntxent", "ntxent-paper"])
def test_ntxent_terms_match_a_hand_written_cross_entropy(batches, case):
    b = batches[case]
    m = len(b.embeddings)
    k = m // 2
    p = _softmax_rows(b.embeddings.astype(np.float64), b.temperature)
    partner = [(i + k) % m for i in range(m)]
    np.testing.assert_allclose(b.contributions, [-math.log(p[i, partner[i]]) for i in range(m)], atol=1e-5)
    np.testing.assert_allclose(b.terms["positive_probability"], [p[i, partner[i]] for i in range(m)], atol=1e-6)
    labels = b.row_label
    false_neg = [sum(1 for j in range(m) if j not in (i, partner[i]) and labels[j] == labels[i]) for i in range(m)]
    assert list(b.terms["n_false_negatives"]) == false_neg
    assert (b.row_index[:k] == b.row_index[k:]).all()  # the two views of the same images


@pytest.mark.parametrize("case", ["supcon-1view", "supcon-2views"])
def test_supcon_terms_match_khosla_by_hand(batches, case):
    b = batches[case]
    p = _softmax_rows(b.embeddings.astype(np.float64), b.temperature)
    labels = b.row_label
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        if not pos:
            assert np.isnan(b.contributions[i])
            continue
        assert b.contributions[i] == pytest.approx(-np.mean([math.log(p[i, j]) for j in pos]), abs=1e-5)
        assert b.terms["positive_probability"][i] == pytest.approx(sum(p[i, j] for j in pos), abs=1e-6)
    assert summarise(b)["n_false_negative_pairs"] == 0


def _brute_candidates(b, margin=1.0):
    z, labels = b.embeddings.astype(np.float64), b.row_label
    d = np.linalg.norm(z[:, None] - z[None, :], axis=2)
    counts = {"easy": 0, "semi-hard": 0, "hard": 0}
    for a in range(len(z)):
        for p in range(len(z)):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(len(z)):
                if labels[n] != labels[a]:  # FaceNet's three bands, written out
                    kind = "hard" if d[a, n] <= d[a, p] else "semi-hard" if d[a, n] < d[a, p] + margin else "easy"
                    counts[kind] += 1
    return d, counts


def test_mined_candidates_and_batch_hard_picks_by_brute_force(batches):
    b = batches["batch-hard"]
    d, counts = _brute_candidates(b)
    s = summarise(b)
    assert s["candidate_kinds"] == counts and s["n_candidates"] == sum(counts.values()) > 0
    labels = b.row_label
    for a, p, n in zip(b.terms["a"], b.terms["p"], b.terms["n"], strict=True):
        pos = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        assert p == max(pos, key=lambda j: d[a, j]) and n == min(neg, key=lambda j: d[a, j])
    cand = b.candidates
    assert {k: int((cand["kind"] == k).sum()) for k in counts} == counts  # the listed ones, one by one
    assert cand["listed"] and cand["picked"].sum() == len(set(zip(b.terms["a"], b.terms["p"], b.terms["n"], strict=True)))


def test_semi_hard_picks_by_brute_force(batches):
    b = batches["semi-hard"]
    d, counts = _brute_candidates(b)
    assert summarise(b)["candidate_kinds"] == counts
    labels = b.row_label
    for a, p, n in zip(b.terms["a"], b.terms["p"], b.terms["n"], strict=True):
        neg = [j for j in range(len(labels)) if labels[j] != labels[a]]
        semi = [j for j in neg if d[a, p] < d[a, j] < d[a, p] + 1.0]
        assert n == (min(semi, key=lambda j: d[a, j]) if semi else min(neg, key=lambda j: d[a, j]))


def test_study_triplets_rows_are_the_sampled_images(batches, digits):
    b = batches["triplet-paper"]  # the study leaves the anchor and the negative unaugmented
    rows = np.concatenate([b.terms["a"], b.terms["n"]])
    assert torch.equal(b.images[rows], digits.images[torch.from_numpy(b.row_index[rows])])
    assert (b.row_label[b.terms["n"]] != b.row_label[b.terms["a"]]).all()  # label-aware negatives
    assert summarise(b)["n_candidates"] == sum(summarise(b)["candidate_kinds"].values())


@pytest.mark.parametrize("case", ["supcon-2views", "triplet-paper"])
def test_the_batch_is_the_training_loop_first_step(digits, case):
    """The loss the training loop reports for its first step (epoch-0 weights, same seed) is the
    batch's loss: same sampler, same augmentation stream, same loss."""
    config = _config(case, batch_size=10, seed=5)
    seen = []
    train(TrainConfig(**{**config.to_dict(), "epochs": 1}), digits, progress=lambda ev: seen.append(ev["loss"]),
          should_stop=lambda: len(seen) >= 1)
    b = build_batch(config, digits)
    assert seen and b.value == pytest.approx(seen[0], abs=1e-6)
    other = build_batch(_config(case, batch_size=10, seed=6), digits)
    assert not np.array_equal(other.row_index, b.row_index)  # the seed draws another batch


def test_checkpoint_weights_and_overrides():
    trained = batch_from_checkpoint(DIGITS, seed=1)
    untrained = batch_from_checkpoint(DIGITS, seed=1, untrained=True)
    assert trained.trained and not untrained.trained
    assert np.array_equal(trained.row_index, untrained.row_index)  # the same batch, two models
    assert trained.value < untrained.value  # training lowered this batch's loss
    hard = batch_from_checkpoint(DIGITS, loss="triplet", mining="batch-hard", seed=1)
    assert hard.loss == "triplet" and hard.mining == "batch-hard" and hard.config["views"] == 2
    assert len(hard.row_index) == 16  # 8 images, two views: 16 anchors


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "CL_DATA_DIR"}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.run([sys.executable, "-m", "cl", "batch", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_json_is_the_library_batch():
    p = run_cli(DIGITS, "--seed", 3, "--loss", "ntxent", "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    want = to_json(batch_from_checkpoint(DIGITS, seed=3, loss="ntxent"))
    assert got["indices"] == want["indices"] and len(got["indices"]) == 8
    assert got["value"] == pytest.approx(want["value"], abs=1e-6)
    assert np.mean(got["contributions"]) == pytest.approx(got["value"], abs=1e-6)
    assert got["data"]["dataset"] == "digits" and got["data"]["split"] == "train"
    assert len(got["terms"]) == 16 and all("positive_probability" in t for t in got["terms"])


@pytest.mark.parametrize("args, says", [
    (["no-such.safetensors"], "no such checkpoint"),
    ([DIGITS, "--loss", "ntxent", "--mining", "batch-hard"], "triplet loss only"),
    ([DIGITS, "--batch-size", "4096"], "batch size"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, says):
    p = run_cli(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], p.stderr


def test_facenet_bands_at_their_edges():
    from cl.batchview import facenet_kind

    d_ap = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.2])
    d_an = np.array([0.5, 1.0, 1.5, 1.95, 2.0, 0.2 + 0.7])
    assert list(facenet_kind(d_ap, d_an, 1.0)) == ["hard", "hard", "semi-hard", "semi-hard", "easy", "semi-hard"]
    assert list(facenet_kind(d_ap, d_an, 0.5)) == ["hard", "hard", "easy", "easy", "easy", "easy"]
