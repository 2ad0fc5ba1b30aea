"""Bench part ``distributed``: ``python -m cl train`` as one process against the same command under
``torchrun --standalone --nproc-per-node 2`` (DDP over gloo), whole commands run in the same bench.

Both train the default recipe on the bundled digits (1,257 train images; 3 epochs with ``--quick``,
the recipe's 18 otherwise), each process with one thread (``--threads 1``, ``OMP_NUM_THREADS=1``),
and evaluate for the card (paper protocol: 108 digits test images scored). Reported: whole-command
and training seconds, training images per second (the global batch's images, as the card counts
them), the ratios one process / two processes, and both paper-protocol linear accuracies. On a
2-core machine two processes can at best use the cores one process leaves idle; the point of the
part is that the two-process run trains the same amount of data to the same accuracy.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from .common import _Context, _ratio, _run_command

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _part_distributed(ctx: _Context) -> dict:
    from cl.checkpoints import read_card

    epochs = 3 if ctx.quick else 18
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-ddp-"))
    rows = {}
    try:
        for name, launcher in (("one_process", []), ("two_processes", TORCHRUN)):
            ckpt = tmp / f"{name}.safetensors"
            args = [*launcher, "-m", "cl", "train", "--dataset", "digits", "--epochs", str(epochs), "--threads", "1",
                    "--device", "cpu", "--out", str(ckpt), "--json"]
            ctx.say(f"{name}: python {' '.join(args)}")
            seconds, out = _run(ctx, args)
            card = read_card(ckpt)
            t = card["training"]
            rows[name] = {"command_s": round(seconds, 3), "train_seconds": t["seconds"],
                          "images": t["images_seen"], "images_per_s": round(t["images_seen"] / max(t["seconds"], 1e-9), 1),
                          "world_size": t.get("world_size", 1), "backend": t.get("backend"),
                          "global_batch": t.get("global_batch"),
                          "linear_acc": out["metrics"]["paper"]["linear_acc"],
                          "n_test_scored": out["metrics"]["paper"]["n_test"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    one, two = rows["one_process"], rows["two_processes"]
    return {"dataset": "digits", "split": "train", "n_train": 1257, "epochs": epochs, "python": sys.executable,
            "one_process": one, "two_processes": two,
            "speedup_train": _ratio(one["train_seconds"], two["train_seconds"]),
            "speedup_command": _ratio(one["command_s"], two["command_s"]),
            "accuracy_difference": round(two["linear_acc"] - one["linear_acc"], 4)}


def _run(ctx: _Context, args: list[str]) -> tuple[float, dict]:
    """``python <args>`` with one OpenMP thread per process; (wall seconds, its last JSON line)."""
    return _run_command(ctx, args, env_extra={"OMP_NUM_THREADS": "1"})
