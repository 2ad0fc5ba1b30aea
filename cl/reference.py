"""The study's reference data: its reported results and the configurations of the outlook models.

Pure data, importable without PyTorch. The figures are those of the study's results table
(paper protocol: linear probe accuracy, top-3 accuracy and kNN accuracy with k = 30).
"""

from __future__ import annotations

from dataclasses import dataclass

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

@dataclass(frozen=True)
class OutlookModel:
    """One outlook model: the study's recipe on SimCLR augmentation with another loss, sampler or
    miner, trained on the triplet scenarios' budget (stated explicitly, so that the pair-like
    contrastive loss gets it too: the paper recipe would give pair losses 5 epochs at lr 0.05)."""

    suffix: str  # the model's name is ``{dataset}-simclr-{suffix}``
    title: str
    labels_text: str  # what it uses the labels for
    loss: str
    mining: str = "none"
    negatives: str = "label-aware"
    epochs: int = 10
    lr: float = 0.15
    uses_labels: bool = True

    def settings(self, dataset: str, seed: int = 0, epochs: int | None = None) -> dict:
        """The :class:`~cl.training.TrainConfig` fields of this model on ``dataset``
        (``TrainConfig(**model.settings(...))``; this module imports neither PyTorch nor cl.training,
        which the catalog of names below it would otherwise import in a cycle)."""
        return dict(dataset=dataset, recipe="paper", augmentation="simclr", loss=self.loss, mining=self.mining,
                    negatives=self.negatives, epochs=epochs or self.epochs, lr=self.lr, seed=seed)


OUTLOOK = [
    OutlookModel("triplet-batch-hard", "triplet, batch-hard mining",
                 "labels pick the hardest positive and negative in each batch", loss="triplet", mining="batch-hard"),
    OutlookModel("triplet-semi-hard", "triplet, semi-hard mining",
                 "labels pick semi-hard negatives in each batch", loss="triplet", mining="semi-hard"),
    OutlookModel("contrastive", "contrastive (margin) loss",
                 "labels pick the negative, as the study's pairs", loss="contrastive"),
    OutlookModel("ntxent", "NT-Xent (SimCLR)",
                 "no labels: the other images of the batch are the negatives", loss="ntxent", uses_labels=False),
    OutlookModel("supcon", "supervised contrastive (SupCon)",
                 "labels: every same-class image of the batch is a positive", loss="supcon"),
    OutlookModel("triplet-random-negatives", "triplet, random negatives",
                 "no labels: negatives drawn from all images (same class ~1 in 10)", loss="triplet",
                 negatives="random", uses_labels=False),
]
OUTLOOK_BY_SUFFIX = {m.suffix: m for m in OUTLOOK}
NO_LABELS = {m.suffix for m in OUTLOOK if not m.uses_labels}


def scenario_name(dataset: str, aug: str, loss: str) -> str:
    return f"{dataset}-{aug}-{loss}"


def outlook_names(dataset: str) -> list[str]:
    return [f"{dataset}-simclr-{m.suffix}" for m in OUTLOOK]


def outlook_train_args(dataset: str, suffix: str, seed: int = 0) -> list[str]:
    """The ``python -m cl train`` arguments of one outlook model (without ``--out``)."""
    m = OUTLOOK_BY_SUFFIX[suffix]
    words = ["--dataset", dataset, "--recipe", "paper", "--augmentation", "simclr", "--loss", m.loss]
    if m.mining != "none":
        words += ["--mining", m.mining]
    if m.negatives != "label-aware":
        words += ["--negatives", m.negatives]
    return [*words, "--epochs", str(m.epochs), "--lr", repr(m.lr), "--seed", str(seed)]
