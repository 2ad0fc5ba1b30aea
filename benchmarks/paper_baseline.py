"""The study's training pipeline, re-implemented for comparison (``python -m benchmarks``).

This is *not* how this project trains (see :mod:`cl.training`); it is a faithful
re-implementation of the study's Colab pipeline (summarised in ``docs/study.md``), kept only as the
baseline that the benchmark measures our trainer against, on the same data, encoder and epochs:

- images come as PIL images one at a time (as ``torchvision.datasets.MNIST`` yields them);
- per-class Python lists of images; for each class up to 5,000 anchors, negatives drawn from a
  shuffled list of the other classes' images (label-aware negatives);
- per-sample torchvision transforms: the anchor and negative only ``ToTensor`` + ``Normalize``,
  the positive augmented *once* while the lists are built (``none``, ``fer`` or ``simclr``);
- a Python list of tuples: ``(anchor, other, label)`` with label +1/-1 for the pairwise loss,
  ``(anchor, positive, negative)`` for the triplet loss, rebuilt on every run;
- a default ``torch.utils.data.DataLoader(batch_size=1024, shuffle=True)``;
- the study's encoder (:class:`cl.encoder.PaperEncoder`, default NCHW layout), one forward pass
  per tuple element, SGD at lr 0.05 (pairwise, ``CosineEmbeddingLoss``) or 0.15 (triplet,
  ``TripletMarginLoss(margin=1, p=2)``);
- evaluation: the test images through per-sample ``ToTensor`` + ``Normalize`` and a
  ``DataLoader``, then scikit-learn's logistic regression (max_iter 1000) on a seeded
  stratified 80 % of the test embeddings, scored (accuracy, top-3, kNN-30) on the other 20 %.

The encoder, losses and learning rates are the same objects/values as our ``--recipe paper``,
so the two differ only in the data pipeline and the training loop.

Command line: train, then evaluate, as two whole commands (how the issue's independent
re-implementation was timed, and how ``python -m benchmarks`` times ours: ``train`` then
``evaluate``); the model passes between them as a ``torch.save`` state dict::

    python -m benchmarks.paper_baseline --dataset mnist --loss triplet --augmentation none --epochs 1 --no-eval --out m.pt
    python -m benchmarks.paper_baseline --dataset mnist --evaluate m.pt [--json]

Without ``--no-eval`` one command trains and evaluates in the same process.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import time

import numpy as np
import torch
from PIL import Image

from cl.data import ImageSet, load_dataset
from cl.encoder import PaperEncoder
from cl.errors import UserError

LOSS_LR = {"pairwise": 0.05, "triplet": 0.15}
LOSS_EPOCHS = {"pairwise": 5, "triplet": 10}


def pil_images(image_set: ImageSet) -> list[tuple[Image.Image, int]]:
    """The data set as ``(PIL image, label)`` pairs, like a torchvision data set yields them."""
    arr = image_set.images.numpy()
    labels = image_set.labels.tolist()
    out = []
    for img, label in zip(arr, labels, strict=True):
        if img.shape[0] == 1:
            out.append((Image.fromarray(img[0], mode="L"), int(label)))
        else:
            out.append((Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)), mode="RGB"), int(label)))
    return out


def transforms_for(augmentation: str, channels: int, size: int):
    """``(anchor_transform, positive_transform)`` as the study composed them (torchvision)."""
    from torchvision import transforms as T

    norm = T.Normalize((0.5,) * channels, (0.5,) * channels)
    plain = T.Compose([T.ToTensor(), norm])
    if augmentation == "none":
        return plain, plain
    if augmentation == "fer":
        big = 2 * size
        return plain, T.Compose([T.Resize(big), T.Pad(18), T.RandomRotation(15), T.CenterCrop(int(big * 1.125)),
                                 T.Resize(size), T.ToTensor(), norm])
    if augmentation == "simclr":
        return plain, T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                                 T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
                                 T.RandomGrayscale(p=0.2), T.GaussianBlur(kernel_size=3), T.ToTensor(), norm])
    raise ValueError(f"unknown augmentation {augmentation!r}; use none, fer or simclr")


def build_tuples(images: list[tuple[Image.Image, int]], loss: str, augmentation: str, channels: int, size: int,
                 max_per_class: int = 5000) -> list[tuple]:
    """The study's pair/triplet lists: Python lists of tensor tuples, positives augmented once."""
    anchor_tf, positive_tf = transforms_for(augmentation, channels, size)
    by_class: dict[int, list[Image.Image]] = {}
    for img, label in images:
        by_class.setdefault(label, []).append(img)
    tuples: list[tuple] = []
    for label, members in by_class.items():
        others = [img for other, imgs in by_class.items() if other != label for img in imgs]
        random.shuffle(others)
        for i, img in enumerate(members[:max_per_class]):
            anchor = anchor_tf(img)
            positive = positive_tf(img)
            negative = anchor_tf(others[i % len(others)])
            if loss == "pairwise":
                tuples.append((anchor, positive, 1.0))
                tuples.append((anchor, negative, -1.0))
            else:
                tuples.append((anchor, positive, negative))
    return tuples


def train_paper_pipeline(train_set: ImageSet, loss: str = "triplet", augmentation: str = "none",
                         epochs: int | None = None, seed: int = 0, batch_size: int = 1024) -> dict:
    """Build the lists and train as the study did; returns the model and timings."""
    if loss not in LOSS_LR:
        raise ValueError(f"the study used pairwise or triplet, not {loss!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    images = pil_images(train_set)
    tuples = build_tuples(images, loss, augmentation, train_set.channels, train_set.size)
    build_seconds = time.perf_counter() - t0

    model = PaperEncoder(train_set.channels, train_set.size)
    criterion = torch.nn.CosineEmbeddingLoss(margin=0.0) if loss == "pairwise" else torch.nn.TripletMarginLoss(margin=1.0, p=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=LOSS_LR[loss])
    loader = torch.utils.data.DataLoader(tuples, batch_size=batch_size, shuffle=True)
    epochs = epochs or LOSS_EPOCHS[loss]
    n_images = 0
    losses = []
    t1 = time.perf_counter()
    for _epoch in range(epochs):
        model.train()
        running = 0.0
        for batch in loader:
            optimizer.zero_grad()
            if loss == "pairwise":
                x1, x2, y = batch
                out = criterion(model(x1), model(x2), y.float())
                n_images += 2 * len(x1)
            else:
                a, p, n = batch
                out = criterion(model(a), model(p), model(n))
                n_images += 3 * len(a)
            out.backward()
            optimizer.step()
            running += out.item()
        losses.append(running / max(1, len(loader)))
    train_seconds = time.perf_counter() - t1
    model.eval()
    return {"model": model, "build_seconds": build_seconds, "train_seconds": train_seconds, "images": n_images,
            "images_per_s": n_images / max(train_seconds, 1e-9), "n_tuples": len(tuples), "epoch_losses": losses}


@torch.no_grad()
def embed_paper_pipeline(model: torch.nn.Module, test_set: ImageSet, batch_size: int = 1024) -> np.ndarray:
    """Test embeddings through per-sample transforms and a DataLoader, as the study did."""
    plain, _ = transforms_for("none", test_set.channels, test_set.size)
    data = [(plain(img), label) for img, label in pil_images(test_set)]
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    model.eval()
    return torch.cat([model(x) for x, _ in loader]).numpy()


def evaluate_paper_pipeline(model: torch.nn.Module, test_set: ImageSet, seed: int = 0) -> dict:
    """The study's probe: logistic regression, top-3 and kNN-30 on an 80/20 split of the test set."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import top_k_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    t0 = time.perf_counter()
    emb = embed_paper_pipeline(model, test_set)
    y = test_set.labels.numpy()
    x_fit, x_score, y_fit, y_score = train_test_split(emb, y, test_size=0.2, random_state=seed, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = LogisticRegression(max_iter=1000, random_state=seed).fit(x_fit, y_fit)
    proba = probe.predict_proba(x_score)
    knn = KNeighborsClassifier(n_neighbors=30).fit(x_fit, y_fit)
    return {"linear_acc": float((probe.classes_[proba.argmax(1)] == y_score).mean()),
            "top3_acc": float(top_k_accuracy_score(y_score, proba, k=3, labels=probe.classes_)),
            "knn_acc": float((knn.predict(x_score) == y_score).mean()),
            "n_test": int(len(y_score)), "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper_baseline",
                                description="The study's pipeline, re-implemented as a benchmark baseline.")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--loss", choices=tuple(LOSS_LR), default="triplet")
    p.add_argument("--augmentation", choices=("none", "fer", "simclr"), default="none")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--out", help="save the trained encoder's state dict here (torch.save)")
    p.add_argument("--evaluate", metavar="FILE", help="only evaluate the state dict saved by --out")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
    except pickle.UnpicklingError:  # loaded with weights_only: never unpickles code
        print(f"error: {args.evaluate}: not an encoder state dict saved by --out", file=sys.stderr)
    except (OSError, RuntimeError) as err:  # the --out / --evaluate file
        print(f"error: {getattr(err, 'filename', None) or args.evaluate or args.out}: "
              f"{getattr(err, 'strerror', None) or str(err).splitlines()[0]}", file=sys.stderr)
    return 2


def _run(args) -> int:
    t0 = time.perf_counter()
    if args.evaluate:
        test_set = load_dataset(args.dataset, "test", args.data_dir)
        model = PaperEncoder(test_set.channels, test_set.size)
        model.load_state_dict(torch.load(args.evaluate, weights_only=True))
        payload = {"dataset": args.dataset, "metrics": evaluate_paper_pipeline(model, test_set, args.seed),
                   "seconds": time.perf_counter() - t0}
        print(json.dumps(payload) if args.json else
              f"paper pipeline: linear accuracy {payload['metrics']['linear_acc']:.4f} on {test_set.describe()}")
        return 0
    train_set = load_dataset(args.dataset, "train", args.data_dir, allow_gallery=False)
    run = train_paper_pipeline(train_set, args.loss, args.augmentation, args.epochs, args.seed)
    payload = {k: v for k, v in run.items() if k != "model"}
    payload.update(dataset=args.dataset, n_train=len(train_set), loss=args.loss, augmentation=args.augmentation)
    if args.out:
        torch.save(run["model"].state_dict(), args.out)
    if not args.no_eval:
        payload["metrics"] = evaluate_paper_pipeline(run["model"], load_dataset(args.dataset, "test", args.data_dir),
                                                     args.seed)
    payload["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(payload))
    else:
        print(f"paper pipeline: built {payload['n_tuples']:,} tuples in {payload['build_seconds']:.1f} s, trained "
              f"{payload['images']:,} images in {payload['train_seconds']:.1f} s ({payload['images_per_s']:.0f} images/s)"
              + (f", linear accuracy {payload['metrics']['linear_acc']:.4f}" if "metrics" in payload else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
