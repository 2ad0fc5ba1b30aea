"""Evaluation protocols recomputed independently with scikit-learn and brute-force loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from cl.data import ImageSet, load_dataset
from cl.encoder import PaperEncoder
from cl.errors import ConfigError
from cl.evaluation import embed, evaluate_embeddings, evaluate_model, knn_accuracy, precision_at_k, summary

torch.set_num_threads(1)


def _clusters(n, n_classes=10, dim=12, spread=1.6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    centres = rng.normal(size=(n_classes, dim))
    emb = (centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32)
    return emb, labels


def _image_set(labels, name="synthetic", split="test", n_classes=10):
    n = len(labels)
    return ImageSet(name, split, torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.as_tensor(labels, dtype=torch.long),
                    [str(i) for i in range(n_classes)], "made in a test", n)


def _fit_lr(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(max_iter=1000).fit(x, y)


@pytest.mark.parametrize("n,seed", [(540, 0), (333, 3)])
def test_paper_protocol_matches_sklearn(n, seed):
    emb, labels = _clusters(n, seed=seed)
    test_set = _image_set(labels)
    r = evaluate_embeddings(emb, test_set, "paper", seed=seed)
    scored = np.asarray(r["scored_indices"])
    fit = np.setdiff1d(np.arange(n), scored)
    # 80/20 split of the test set, no overlap, everything used
    assert r["n_test"] == len(scored) == math.ceil(0.2 * n)
    assert r["n_fit"] == len(fit) == n - r["n_test"]
    assert len(np.unique(scored)) == len(scored)
    # stratified: every class's share of the scored part is close to its overall share
    for c in range(10):
        assert abs((labels[scored] == c).sum() - 0.2 * (labels == c).sum()) <= 1.5

    probe = _fit_lr(emb[fit], labels[fit])
    proba = probe.predict_proba(emb[scored])
    pred = probe.classes_[proba.argmax(1)]
    assert r["linear_acc"] == pytest.approx(float((pred == labels[scored]).mean()), abs=1e-12)
    assert r["predictions"] == pred.tolist()
    top3 = np.mean([labels[scored][i] in probe.classes_[np.argsort(-proba[i])[:3]] for i in range(len(scored))])
    assert r["top3_acc"] == pytest.approx(float(top3), abs=1e-12)
    assert r["top3_acc"] >= r["linear_acc"]

    knn = KNeighborsClassifier(n_neighbors=30).fit(emb[fit], labels[fit])
    assert r["knn_acc"] == pytest.approx(float((knn.predict(emb[scored]) == labels[scored]).mean()), abs=1e-12)

    cm = np.asarray(r["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == r["n_test"]
    assert np.array_equal(cm.sum(1), np.bincount(labels[scored], minlength=10))
    assert np.trace(cm) / cm.sum() == pytest.approx(r["linear_acc"])
    for i, acc in enumerate(r["per_class_acc"]):
        assert acc == pytest.approx(cm[i, i] / cm[i].sum())

    assert r["protocol"] == "paper" and r["dataset"] == "synthetic" and r["split"] == "test"
    assert r["fitted_on"]["split"] == "test" and r["fitted_on"]["n_images"] == len(fit)
    assert r["scored_on"]["n_scored"] == r["n_test"]
    assert r["precision_at_10"] == pytest.approx(_brute_precision(emb[scored], labels[scored], 10))


def test_paper_split_depends_on_seed_only():
    emb, labels = _clusters(200, seed=1)
    a = evaluate_embeddings(emb, _image_set(labels), "paper", seed=0)
    b = evaluate_embeddings(emb * 2, _image_set(labels), "paper", seed=0)
    c = evaluate_embeddings(emb, _image_set(labels), "paper", seed=1)
    assert a["scored_indices"] == b["scored_indices"]
    assert a["scored_indices"] != c["scored_indices"]


def test_standard_protocol_uses_train_embeddings():
    emb_train, y_train = _clusters(300, seed=5)
    emb_test, y_test = _clusters(120, seed=5)  # same seed: same class centres as the train part
    rng = np.random.default_rng(9)
    emb_test = emb_test + 0.1 * rng.normal(size=emb_test.shape).astype(np.float32)
    train_set = _image_set(y_train, split="train")
    test_set = _image_set(y_test)
    r = evaluate_embeddings(emb_test, test_set, "standard", emb_train, train_set, seed=0)
    assert r["n_test"] == 120 and r["n_fit"] == 300
    assert r["scored_indices"] == list(range(120))
    assert r["fitted_on"]["split"] == "train" and r["fitted_on"]["n_images"] == 300
    probe = _fit_lr(emb_train, y_train)
    assert r["linear_acc"] == pytest.approx(float((probe.predict(emb_test) == y_test).mean()), abs=1e-12)
    knn = KNeighborsClassifier(n_neighbors=30).fit(emb_train, y_train)
    assert r["knn_acc"] == pytest.approx(float((knn.predict(emb_test) == y_test).mean()), abs=1e-12)
    assert np.asarray(r["confusion_matrix"]).sum() == 120
    assert r["top3_acc"] >= r["linear_acc"]
    with pytest.raises(ConfigError):
        evaluate_embeddings(emb_test, test_set, "standard")
    with pytest.raises(ConfigError):
        evaluate_embeddings(emb_test, test_set, "loo")


def _brute_precision(emb, labels, k):
    emb = np.asarray(emb, dtype=np.float64)
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(labels)
    k = min(k, n - 1)
    total = 0.0
    for i in range(n):
        sims = [(float(z[i] @ z[j]), j) for j in range(n) if j != i]
        sims.sort(reverse=True)
        total += sum(labels[j] == labels[i] for _, j in sims[:k]) / k
    return total / n


@pytest.mark.parametrize("k", [1, 5, 10, 500])
def test_precision_at_k_matches_brute_force(k):
    emb, labels = _clusters(90, n_classes=4, seed=7)
    assert precision_at_k(emb, labels, k) == pytest.approx(_brute_precision(emb, labels, k), abs=1e-12)


def test_precision_at_k_edge_cases():
    assert math.isnan(precision_at_k(np.ones((1, 3), dtype=np.float32), np.array([0]), 10))
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert precision_at_k(emb, np.array([0, 0, 1, 1]), 1) == 1.0
    assert precision_at_k(emb, np.array([0, 1, 0, 1]), 1) == 0.0


def test_evaluate_model_on_digits_names_its_data():
    test_set = load_dataset("digits", "test")
    train_set = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = PaperEncoder(1, 28)
    emb = embed(model, test_set.images, batch_size=100)
    assert emb.shape == (540, 32) and emb.dtype == np.float32
    assert not model.training
    paper = evaluate_model(model, test_set, "paper")
    assert paper["n_test"] == 108 and paper["dataset"] == "digits" and paper["split"] == "test"
    direct = evaluate_embeddings(emb, test_set, "paper")
    assert paper["linear_acc"] == direct["linear_acc"] and paper["knn_acc"] == direct["knn_acc"]
    standard = evaluate_model(model, test_set, "standard", train_set)
    assert standard["n_test"] == 540 and standard["n_fit"] == 1257
    assert standard["fitted_on"]["dataset"] == "digits" and standard["fitted_on"]["split"] == "train"
    for r in (paper, standard):
        s = summary(r)
        for key in ("dataset", "split", "n_test", "protocol", "linear_acc", "top3_acc", "knn_acc"):
            assert key in s
        assert r["scored_on"]["dataset"] == "digits" and r["scored_on"]["n_images"] == 540
    # the quick monitor uses the same split as the paper protocol's kNN
    assert knn_accuracy(model, test_set) == pytest.approx(paper["knn_acc"])


def test_standard_protocol_with_a_class_missing_from_train():
    """A scored class the probe never saw counts as a miss (it used to raise in sklearn's top-k)."""
    emb, y = _clusters(300, seed=2)
    y_train = y[100:].copy()
    y_train[y_train == 9] = 8  # the fit split has no class 9
    train_set = _image_set(y_train, split="train")
    test_set = _image_set(y[:100])
    r = evaluate_embeddings(emb[:100], test_set, "standard", emb[100:], train_set)
    probe = _fit_lr(emb[100:], y_train)
    proba = probe.predict_proba(emb[:100])
    top3 = np.mean([y[i] in probe.classes_[np.argsort(-proba[i])[:3]] for i in range(100)])
    assert r["top3_acc"] == pytest.approx(float(top3))
    assert r["linear_acc"] == pytest.approx(float((probe.predict(emb[:100]) == y[:100]).mean()))
    missing = y[:100] == 9
    assert missing.any() and not any(p == 9 for p in np.asarray(r["predictions"])[missing])
    assert np.asarray(r["confusion_matrix"])[9].sum() == missing.sum()


def test_paper_split_with_a_singleton_class():
    """A class with a single test image: no stratification, but the same split everywhere."""
    emb, y = _clusters(150, seed=4)
    y[y == 9] = 8
    y[0] = 9
    test_set = _image_set(y)
    test_set.images = torch.zeros(150, 1, 28, 28, dtype=torch.uint8)
    r = evaluate_embeddings(emb, test_set, "paper")
    assert r["n_test"] == 30 and r["n_fit"] == 120
    model = PaperEncoder(1, 28)
    via_model = evaluate_model(model, test_set, "paper")
    assert knn_accuracy(model, test_set) == pytest.approx(via_model["knn_acc"])
