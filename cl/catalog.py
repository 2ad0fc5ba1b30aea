"""Names of the choices the library offers, importable without PyTorch.

The app's first page lists them; keeping them here lets it render before ``import torch``
(2-3 s and half a gigabyte) has happened. :mod:`cl.augmentations` and :mod:`cl.losses`
re-export them and define what each name does.
"""

from .reference import PAPER_TABLE

AUGMENTATIONS = ("none", "fer", "simclr", "affine", "crop")
PAPER_AUGMENTATIONS = tuple(dict.fromkeys(aug for _dataset, aug, _loss in PAPER_TABLE))  # the study's, in its order
LOSSES = ("pairwise", "triplet", "contrastive", "ntxent", "supcon")
