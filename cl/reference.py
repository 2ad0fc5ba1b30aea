"""The study's reference data: its reported results and the configurations of the outlook models.

Pure data, importable without PyTorch. The figures are those of the study's results table
(paper protocol: linear probe accuracy, top-3 accuracy and kNN accuracy with k = 30).
"""

from __future__ import annotations

PAPER_TABLE = {
    # (dataset, augmentation, loss): (accuracy, top-3, kNN-30) as reported by the study
    ("mnist", "none", "pairwise"): (0.66, 0.88, 0.68),
    ("mnist", "none", "triplet"): (0.81, 0.96, 0.85),
    ("mnist", "fer", "pairwise"): (0.78, 0.94, 0.81),
    ("mnist", "fer", "triplet"): (0.92, 0.98, 0.92),
    ("mnist", "simclr", "pairwise"): (0.56, 0.82, 0.46),
    ("mnist", "simclr", "triplet"): (0.93, 0.99, 0.93),
    ("cifar10", "none", "pairwise"): (0.27, 0.58, 0.24),
    ("cifar10", "none", "triplet"): (0.33, 0.66, 0.33),
    ("cifar10", "fer", "pairwise"): (0.29, 0.58, 0.27),
    ("cifar10", "fer", "triplet"): (0.33, 0.64, 0.34),
    ("cifar10", "simclr", "pairwise"): (0.29, 0.63, 0.27),
    ("cifar10", "simclr", "triplet"): (0.36, 0.69, 0.36),
}

# (name suffix, title, what labels it uses, extra `python -m cl train` arguments)
OUTLOOK = [
    ("triplet-batch-hard", "triplet, batch-hard mining",
     "labels pick the hardest positive and negative in each batch", ["--loss", "triplet", "--mining", "batch-hard"]),
    ("triplet-semi-hard", "triplet, semi-hard mining",
     "labels pick semi-hard negatives in each batch", ["--loss", "triplet", "--mining", "semi-hard"]),
    ("contrastive", "contrastive (margin) loss",
     "labels pick the negative, as the study's pairs", ["--loss", "contrastive"]),
    ("ntxent", "NT-Xent (SimCLR)",
     "no labels: the other images of the batch are the negatives", ["--loss", "ntxent"]),
    ("supcon", "supervised contrastive (SupCon)",
     "labels: every same-class image of the batch is a positive", ["--loss", "supcon"]),
    ("triplet-random-negatives", "triplet, random negatives",
     "no labels: negatives drawn from all images (same class ~1 in 10)", ["--loss", "triplet", "--negatives", "random"]),
]
NO_LABELS = {"ntxent", "triplet-random-negatives"}
# The triplet scenarios' budget, stated explicitly so the pair-like contrastive loss gets it too
# (the paper recipe would otherwise give pair losses the pairwise scenarios' 5 epochs at lr 0.05).
OUTLOOK_BUDGET = ["--epochs", "10", "--lr", "0.15"]



def scenario_name(dataset: str, aug: str, loss: str) -> str:
    return f"{dataset}-{aug}-{loss}"


def outlook_names(dataset: str) -> list[str]:
    return [f"{dataset}-simclr-{suffix}" for suffix, *_ in OUTLOOK]


def outlook_train_args(dataset: str, suffix: str, seed: int = 0) -> list[str]:
    """The ``python -m cl train`` arguments of one outlook model (without ``--out``)."""
    extra = {s: a for s, _, _, a in OUTLOOK}[suffix]
    return ["--dataset", dataset, "--recipe", "paper", "--augmentation", "simclr", *extra, *OUTLOOK_BUDGET,
            "--seed", str(seed)]
