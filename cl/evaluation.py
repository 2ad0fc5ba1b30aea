"""Evaluation protocols. Every result records which data it came from.

- ``paper`` (the study's): embed the test split, split those embeddings 80/20 (seeded,
  stratified), fit ``LogisticRegression(max_iter=1000)`` on the 80 %, report accuracy and top-3
  accuracy on the 20 %; a 30-nearest-neighbour classifier on the same split; the linear probe's
  confusion matrix.
- ``standard``: fit the probe and kNN on the *train* embeddings, score on the whole test split.

Both add retrieval precision@k over the scored test images (leave-one-out cosine neighbours), and
each accuracy's 95 % Wilson interval from the number of images scored, with a flag where a figure
cannot be trusted (too few images, top-3 with 3 classes or fewer, kNN-30 with small classes):
:mod:`cl.uncertainty`.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from .data import ImageSet, to_float
from .errors import ConfigError
from .uncertainty import with_intervals

PROTOCOLS = ("paper", "standard")


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 images ``(N, C, H, W)`` -> float32 embeddings ``(N, D)`` (eval mode, no grad).

    Batches of 256: as fast as 1,024 on a CPU (10,000 MNIST images: 1.48 s vs 1.40 s for our
    ConvNet) with a third of the peak memory (45 MB vs 138 MB), which matters in the app."""
    model.eval()
    device = next(model.parameters()).device
    fn = getattr(model, "embed", model)
    out = []
    for s in range(0, len(images), batch_size):
        x = to_float(images[s:s + batch_size]).to(device).contiguous(memory_format=torch.channels_last)
        out.append(fn(x).float().cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


def precision_at_k(embeddings: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each image's k nearest (cosine) other images that share its label."""
    n = len(labels)
    k = min(k, n - 1)
    if k < 1:
        return float("nan")
    z = torch.nn.functional.normalize(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)), dim=1)
    lab = torch.from_numpy(np.asarray(labels))
    hits = 0.0
    for s in range(0, n, 2048):
        sim = z[s:s + 2048] @ z.T
        rows = torch.arange(s, min(s + 2048, n))
        sim[torch.arange(len(rows)), rows] = float("-inf")
        nn_idx = sim.topk(k, dim=1).indices
        hits += (lab[nn_idx] == lab[rows, None]).float().sum().item()
    return hits / (n * k)


def best_precision_at_k(labels: np.ndarray, k: int = 10) -> float:
    """The highest :func:`precision_at_k` any embedding can reach on these labels: an image of a
    class with ``n_c`` images has at most ``n_c - 1`` others of its class among its ``k`` nearest,
    so the best is the mean over images of ``min(k, n_c - 1) / k`` (1 when every class has more
    than ``k`` images)."""
    labels = np.asarray(labels)
    k = min(k, len(labels) - 1)
    if k < 1:
        return float("nan")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return float(np.mean(np.minimum(k, counts[inverse] - 1) / k))


def preload_probe_modules() -> None:
    """Import scikit-learn's probe modules on a thread while the caller embeds or trains: the
    import (~2 s) is mostly waiting on files, and embedding and training release the GIL."""
    import threading

    def work():
        try:
            import sklearn.linear_model
            import sklearn.metrics
            import sklearn.model_selection
            import sklearn.neighbors  # noqa: F401 - imported ahead of use, on a background thread
        except Exception:  # noqa: BLE001 - the caller's own import will report it
            pass

    threading.Thread(target=work, name="preload-sklearn", daemon=True).start()


def _probe(x_fit, y_fit, x_score, y_score, n_classes: int, seed: int) -> dict:
    # scikit-learn is imported here, not at module level: `train --no-eval` never needs it
    # and it costs about a second to import.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    # One BLAS/OpenMP thread: these problems are tiny (thousands x 32..128), and with torch's
    # OpenMP pool also loaded, two BLAS threads made the lbfgs fit of MNIST's 8,000 x 32 probe
    # 4x slower on an idle 2-core machine (1.8 s instead of 0.4 s) and 20x on a busy one (8.3 s).
    # The fitted probe is the same up to float rounding.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny sets is not an error
        probe = LogisticRegression(max_iter=1000, random_state=seed)
        probe.fit(x_fit, y_fit)
        proba = probe.predict_proba(x_score)
        knn_k = min(30, len(y_fit))
        knn = KNeighborsClassifier(n_neighbors=knn_k)
        knn.fit(x_fit, y_fit)
        knn_pred = knn.predict(x_score)
    pred = probe.classes_[proba.argmax(1)]
    labels_all = np.arange(n_classes)
    # top-3 by hand: a scored label the probe never saw (a class missing from the fit split)
    # simply counts as a miss, where sklearn's top_k_accuracy_score would raise
    top = probe.classes_[np.argsort(-proba, axis=1, kind="stable")[:, :3]]
    top3 = float((top == np.asarray(y_score)[:, None]).any(1).mean()) if len(y_score) else float("nan")
    cm = confusion_matrix(y_score, pred, labels=labels_all)
    per_class = [float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None for i in range(n_classes)]
    fit_counts = np.bincount(np.asarray(y_fit), minlength=n_classes)
    return {
        "n_classes": int(n_classes),
        "knn_k": int(knn_k),
        # the smallest class among those fitted: kNN-k cannot be won by a class with fewer than k
        "fit_class_min": int(fit_counts[fit_counts > 0].min()) if fit_counts.any() else 0,
        "linear_acc": float((pred == y_score).mean()),
        "top3_acc": float(top3),
        "knn_acc": float((knn_pred == y_score).mean()),
        "confusion_matrix": cm.tolist(),
        "per_class_acc": per_class,
        "predictions": pred.tolist(),
    }


def _paper_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The study's seeded 80/20 split of the test split (stratified when every class has 2+).

    A stratified split needs at least one image of each class on both sides, so a tiny set (a
    3-class folder whose test split holds 6 images: 20 % would be 2) scores ``max(20 %, one per
    class)`` images instead of failing; a set too small even for that is split unstratified."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    if n < 2:
        raise ConfigError(f"the paper protocol needs at least 2 test images to fit on some and score the others; "
                          f"this test split has {n}")
    counts = np.bincount(y)
    present = int((counts > 0).sum())
    n_score = math.ceil(0.2 * n)
    if counts[counts > 0].min() >= 2 and n - present >= present:
        return train_test_split(np.arange(n), test_size=max(n_score, present), random_state=seed, stratify=y)
    return train_test_split(np.arange(n), test_size=n_score, random_state=seed)


def evaluate_embeddings(test_emb: np.ndarray, test_set: ImageSet, protocol: str = "paper",
                        train_emb: np.ndarray | None = None, train_set: ImageSet | None = None,
                        seed: int = 0) -> dict:
    """Score embeddings under a protocol; the result names its data and the scored indices."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    y_test = test_set.labels.numpy()
    n_classes = len(test_set.classes)
    if protocol == "paper":
        fit_idx, score_idx = _paper_split(y_test, seed)
        x_fit, y_fit = test_emb[fit_idx], y_test[fit_idx]
        x_score, y_score = test_emb[score_idx], y_test[score_idx]
        fitted_on = {"dataset": test_set.name, "split": "test", "n_images": len(fit_idx),
                     "note": "80 % of the test embeddings (seeded, stratified)"}
    else:
        if train_emb is None or train_set is None:
            raise ConfigError("the standard protocol needs the train split's embeddings")
        x_fit, y_fit = train_emb, train_set.labels.numpy()
        score_idx = np.arange(len(y_test))
        x_score, y_score = test_emb, y_test
        fitted_on = train_set.provenance()
    result = _probe(x_fit, y_fit, x_score, y_score, n_classes, seed)
    result.update({
        "protocol": protocol,
        "dataset": test_set.name,
        "split": "test",
        "n_test": int(len(y_score)),
        "n_fit": int(len(y_fit)),
        "fitted_on": fitted_on,
        "scored_on": {**test_set.provenance(), "n_scored": int(len(y_score))},
        "precision_at_10": precision_at_k(x_score, y_score, 10),
        "precision_at_10_best": best_precision_at_k(y_score, 10),
        "scored_indices": score_idx.tolist(),
        "classes": list(test_set.classes),
        "seed": seed,
    })
    return with_intervals(result)


def evaluate_model(model: torch.nn.Module, test_set: ImageSet, protocol: str = "paper",
                   train_set: ImageSet | None = None, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    test_emb = embed(model, test_set.images)
    train_emb = embed(model, train_set.images) if protocol == "standard" and train_set is not None else None
    result = evaluate_embeddings(test_emb, test_set, protocol, train_emb, train_set, seed)
    result["seconds"] = time.perf_counter() - t0
    return result


def knn_accuracy(model: torch.nn.Module, test_set: ImageSet, k: int = 30, seed: int = 0,
                 with_count: bool = False) -> float | tuple[float, int]:
    """Quick kNN-k accuracy under the paper split (for per-epoch monitoring); with ``with_count``,
    ``(accuracy, images scored)``, so the caller can give its interval."""
    emb = embed(model, test_set.images)
    y = test_set.labels.numpy()
    fit_idx, score_idx = _paper_split(y, seed)
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        knn = KNeighborsClassifier(n_neighbors=min(k, len(fit_idx))).fit(emb[fit_idx], y[fit_idx])
        acc = float((knn.predict(emb[score_idx]) == y[score_idx]).mean())
    return (acc, int(len(score_idx))) if with_count else acc


SUMMARY_KEYS = ("protocol", "dataset", "split", "n_test", "n_fit", "linear_acc", "top3_acc", "knn_acc",
                "precision_at_10", "precision_at_10_best", "n_classes", "knn_k", "fit_class_min", "intervals", "flags",
                "interval_method")


def summary(result: dict) -> dict:
    """The headline figures of a result (what checkpoint cards and tables keep)."""
    return {k: result[k] for k in SUMMARY_KEYS if k in result}
