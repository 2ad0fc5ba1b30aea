"""Bench parts about training: the paper recipe against the study's pipeline, and time to accuracy."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from cl.errors import DataUnavailableError

from .common import THRESHOLDS, _Context, _load, _ratio, _run_command, _Skip


# ------------------------------------------------------------------------------------ train
def _part_train(ctx: _Context) -> dict:
    from cl.checkpoints import read_card

    dataset = "digits" if ctx.quick else "mnist"
    try:
        train_set = _load(dataset, "train", ctx)
    except DataUnavailableError as err:
        raise _Skip(f"{dataset} train split not available: {err}") from None
    scenarios = [("triplet", "none")] if ctx.quick else [("triplet", "none"), ("triplet", "simclr")]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-train-"))
    try:
        for loss, aug in scenarios:
            ckpt = tmp / f"{dataset}-{aug}-{loss}.safetensors"
            ctx.say(f"ours: python -m cl train --dataset {dataset} --recipe paper --loss {loss} --augmentation {aug} "
                    f"--epochs 1 --no-eval, then python -m cl evaluate")
            t_train, train_out = _run_command(ctx, ["-m", "cl", "train", "--dataset", dataset, "--recipe", "paper",
                                                    "--loss", loss, "--augmentation", aug, "--epochs", "1",
                                                    "--no-eval", "--out", str(ckpt), "--json"])
            t_eval, eval_out = _run_command(ctx, ["-m", "cl", "evaluate", str(ckpt), "--json"])
            card = read_card(ckpt)
            images = int(card["training"]["images_seen"])
            ours = {"train_command_s": round(t_train, 3), "evaluate_command_s": round(t_eval, 3),
                    "total_s": round(t_train + t_eval, 3), "train_seconds": round(float(train_out["seconds"]), 3),
                    "images": images, "images_per_s": round(images / max(float(train_out["seconds"]), 1e-9), 1),
                    "linear_acc": eval_out.get("linear_acc")}
            # The baseline as the independent re-implementation was timed: `train`, then
            # `evaluate`, as two whole commands, the model passed on as a torch.save state dict.
            base_ckpt = tmp / f"{dataset}-{aug}-{loss}-baseline.pt"
            ctx.say(f"baseline: python -m benchmarks.paper_baseline --dataset {dataset} --loss {loss} --augmentation {aug} "
                    f"--epochs 1 --no-eval --out FILE, then python -m benchmarks.paper_baseline --evaluate FILE")
            t_base_train, base_out = _run_command(ctx, ["-m", "benchmarks.paper_baseline", "--dataset", dataset, "--loss", loss,
                                                        "--augmentation", aug, "--epochs", "1", "--no-eval",
                                                        "--out", str(base_ckpt), "--json"])
            t_base_eval, base_eval = _run_command(ctx, ["-m", "benchmarks.paper_baseline", "--dataset", dataset,
                                                       "--evaluate", str(base_ckpt), "--json"])
            baseline = {"train_command_s": round(t_base_train, 3), "evaluate_command_s": round(t_base_eval, 3),
                        "total_s": round(t_base_train + t_base_eval, 3),
                        "build_pairs_s": round(base_out["build_seconds"], 3),
                        "train_seconds": round(base_out["train_seconds"], 3), "images": base_out["images"],
                        "images_per_s": round(base_out["images_per_s"], 1),
                        "linear_acc": base_eval.get("metrics", {}).get("linear_acc")}
            # As the study ran: one process that trains and evaluates. Ours evaluates for its card
            # (both protocols; the card's paper-protocol figures are what `evaluate` reports).
            one_ckpt = tmp / f"{dataset}-{aug}-{loss}-one.safetensors"
            ctx.say("one process each: python -m cl train ... --epochs 1 against python -m benchmarks.paper_baseline "
                    "... --epochs 1 (train and evaluate)")
            t_one, one_out = _run_command(ctx, ["-m", "cl", "train", "--dataset", dataset, "--recipe", "paper",
                                                "--loss", loss, "--augmentation", aug, "--epochs", "1",
                                                "--out", str(one_ckpt), "--json"])
            t_base_one, base_one = _run_command(ctx, ["-m", "benchmarks.paper_baseline", "--dataset", dataset,
                                                     "--loss", loss, "--augmentation", aug, "--epochs", "1", "--json"])
            one_process = {"ours_s": round(t_one, 3), "baseline_s": round(t_base_one, 3),
                           "ours_linear_acc": one_out["metrics"]["paper"]["linear_acc"],
                           "baseline_linear_acc": base_one.get("metrics", {}).get("linear_acc"),
                           "speedup": _ratio(t_base_one, t_one)}
            rows.append({"loss": loss, "augmentation": aug, "ours": ours, "baseline": baseline,
                         "one_process": one_process,
                         "speedup_commands": _ratio(baseline["total_s"], ours["total_s"]),
                         "speedup_one_process": one_process["speedup"],
                         "speedup_images_per_s": _ratio(ours["images_per_s"], baseline["images_per_s"])})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dataset": dataset, "n_train": len(train_set), "train_complete": train_set.complete, "epochs": 1,
            "recipe": "paper", "scenarios": rows}


# ------------------------------------------------------------------------------------ time to accuracy
def _part_time_to_accuracy(ctx: _Context) -> dict:
    from cl.evaluation import embed, evaluate_embeddings
    from cl.training import TrainConfig, resolve_config, train

    dataset = "digits" if ctx.quick else "mnist"
    try:
        train_set, test_set = _load(dataset, "train", ctx), _load(dataset, "test", ctx)
    except DataUnavailableError as err:
        raise _Skip(f"{dataset} not available: {err}") from None

    def run(config: TrainConfig, cap_s: float | None) -> dict:
        history = []

        def on_epoch_end(model, epoch):
            t0 = time.perf_counter()
            r = evaluate_embeddings(embed(model, test_set.images), test_set, "paper", seed=0)
            return {"linear_acc": r["linear_acc"], "eval_seconds": time.perf_counter() - t0}

        state = {"t0": time.perf_counter()}
        result = train(config, train_set, on_epoch_end=on_epoch_end,
                       progress=lambda ev: state.update(elapsed=ev["elapsed"]),
                       should_stop=(lambda: cap_s is not None and state.get("elapsed", 0.0) >= cap_s))
        for row in result.history:
            history.append({"epoch": row["epoch"], "train_seconds": round(row["train_seconds"], 3),
                            "linear_acc": row.get("linear_acc")})
            ctx.say(f"{config.recipe}: epoch {row['epoch']} at {row['train_seconds']:.1f} s of training, "
                    f"linear accuracy {row.get('linear_acc')}")
        scored = [h for h in history if h["linear_acc"] is not None]
        best = max(scored, key=lambda h: h["linear_acc"]) if scored else None
        seconds_to = {}
        for thr in THRESHOLDS:
            hit = next((h for h in scored if h["linear_acc"] >= thr), None)
            seconds_to[f"{thr:.2f}"] = hit["train_seconds"] if hit else None
        resolved = resolve_config(config)
        return {"config": {"recipe": resolved.recipe, "loss": resolved.loss, "augmentation": resolved.augmentation,
                           "encoder": resolved.encoder, "epochs": resolved.epochs, "batch_size": resolved.batch_size},
                "history": history, "best_acc": best["linear_acc"] if best else None,
                "seconds_to_best": best["train_seconds"] if best else None, "seconds_to": seconds_to,
                "stopped": result.stopped, "cap_s": cap_s}

    epochs = 2 if ctx.quick else None
    ctx.say(f"default recipe on {dataset}, paper-protocol accuracy after every epoch")
    default = run(TrainConfig(dataset=dataset, recipe="default", seed=0, epochs=epochs), None if ctx.quick else 900.0)
    ctx.say(f"paper recipe (triplet) on {dataset}")
    paper = run(TrainConfig(dataset=dataset, recipe="paper", seed=0, epochs=epochs), None if ctx.quick else 1200.0)
    return {"dataset": dataset, "n_train": len(train_set), "train_complete": train_set.complete,
            "protocol": "paper", "thresholds": list(THRESHOLDS), "default": default, "paper": paper,
            "ratio_paper_best_over_default_093": _ratio(paper["seconds_to_best"], default["seconds_to"]["0.93"])}


