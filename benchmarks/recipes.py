"""Bench part ``recipes``: ``python -m cl train --dataset D`` as a whole command, for the four data
sets (targets in docs/recipes.md), against the recipe it replaced, run as whole commands in the same bench.

The time is the whole command (start-up, data loading, training and the card's metrics), as a
user sees it; the quality is the card's paper-protocol linear accuracy. The baseline is the
previous default recipe (two augmented views per image, the widths and epochs below), spelled out
with flags so it stays runnable. Its fashion-mnist and cifar10 runs take 3 to 5 minutes each on
two cores: ``CL_BENCH_RECIPE_BASELINES`` (comma-separated data sets, or ``none``) limits which
baselines run; the quick bench runs digits only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cl.errors import ConfigError, DataUnavailableError

from .common import _Context, _load, _ratio, _run_command

# data set: (whole-command seconds limit, paper-protocol linear accuracy floor), see docs/recipes.md
RECIPE_TARGETS = {"digits": (10.0, 0.98), "mnist": (40.0, 0.99), "fashion-mnist": (120.0, 0.90),
                  "cifar10": (300.0, 0.65)}
# The default recipe before the current one: SupCon on two views, in float32 (before bf16
# autocast). It shares this code's other speed-ups: the batched
# loop and, as every `python -m cl train`, cl.allocator's malloc settings.
PREVIOUS_RECIPE = {
    "digits": ["--views", "2", "--epochs", "20", "--encoder-width", "16", "--lr", "0.003", "--batch-size", "256",
               "--augmentation", "affine", "--precision", "fp32"],
    "mnist": ["--views", "2", "--epochs", "8", "--encoder-width", "16", "--lr", "0.003", "--batch-size", "256",
              "--augmentation", "affine", "--precision", "fp32"],
    "fashion-mnist": ["--views", "2", "--epochs", "6", "--encoder-width", "24", "--lr", "0.003", "--batch-size",
                      "256", "--augmentation", "affine", "--precision", "fp32"],
    "cifar10": ["--views", "2", "--epochs", "60", "--encoder-width", "32", "--lr", "0.003", "--batch-size", "256",
                "--augmentation", "crop", "--precision", "fp32"],
}


def _baseline_sets(ctx: _Context) -> list[str]:
    raw = os.environ.get("CL_BENCH_RECIPE_BASELINES", "").strip()
    if not raw:
        return ["digits"] if ctx.quick else list(RECIPE_TARGETS)
    if raw == "none":
        return []
    names = [n for n in raw.replace(" ", "").split(",") if n]
    bad = [n for n in names if n not in RECIPE_TARGETS]
    if bad:
        raise ConfigError(f"CL_BENCH_RECIPE_BASELINES: unknown data set(s) {', '.join(bad)}")
    return names


def _train_command(ctx: _Context, dataset: str, extra: list[str], out: Path) -> dict:
    seconds, payload = _run_command(ctx, ["-m", "cl", "train", "--dataset", dataset, *extra, "--out", str(out),
                                          "--json"])
    paper = payload.get("metrics", {}).get("paper", {})
    return {"command_s": round(seconds, 3), "train_seconds": payload.get("seconds"),
            "linear_acc": paper.get("linear_acc"), "knn_acc": paper.get("knn_acc"),
            "epochs": payload.get("epochs"), "n_train": payload.get("n_train"),
            "views": payload.get("config", {}).get("views"),
            "encoder_width": payload.get("config", {}).get("encoder_width")}


def _part_recipes(ctx: _Context) -> dict:
    sets = ["digits"] if ctx.quick else list(RECIPE_TARGETS)
    with_baseline = _baseline_sets(ctx)
    rows = {}
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-recipes-"))
    try:
        for dataset in sets:
            try:
                complete = _load(dataset, "train", ctx).complete
            except DataUnavailableError as err:
                rows[dataset] = {"skipped": f"{dataset} not available: {err}"}
                continue
            limit_s, floor = RECIPE_TARGETS[dataset]
            ctx.say(f"ours: python -m cl train --dataset {dataset}")
            ours = _train_command(ctx, dataset, [], tmp / f"{dataset}-ours.safetensors")
            row = {"train_complete": complete, "limit_s": limit_s, "min_linear_acc": floor, "ours": ours,
                   "baseline": None, "speedup_commands": None}
            if dataset in with_baseline:
                words = PREVIOUS_RECIPE[dataset]
                ctx.say(f"baseline (previous default recipe): python -m cl train --dataset {dataset} {' '.join(words)}")
                row["baseline"] = _train_command(ctx, dataset, words, tmp / f"{dataset}-previous.safetensors")
                row["baseline"]["args"] = " ".join(words)
                row["speedup_commands"] = _ratio(row["baseline"]["command_s"], ours["command_s"])
            rows[dataset] = row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"command": "python -m cl train --dataset D --out FILE --json (whole command)",
            "baseline": "the previous default recipe, two views per image (flags in 'args')", "datasets": rows}
