"""Follow a value down the library: which of cl's functions receive it, and how often.

Two walks, each under ``sys.setprofile``, recording every call of a function defined in ``cl/``
that is handed the value as an argument:

- the training config: one digits training through :func:`cl.workflow.make_model` (1 epoch), the
  functions handed a ``TrainConfig`` or ``ResolvedConfig``;
- the data set the sidebar names: both splits of ``--dataset`` loaded as the app loads them
  (``ui.cache.load_data`` calls ``cl.data.load_dataset(name, split, download=False, ...)``), the
  functions handed the name or its source object (per split, after clearing the loaded-set cache).

A straight walk enters each function once (per split); the script lists every function entered
more than once, and exits 1 if there is any.

    python scripts/trace_calls.py                    # the summary
    python scripts/trace_calls.py --all              # every function on each path, in order
    python scripts/trace_calls.py --dataset mnist    # the data walk on another set (needs its files)
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TYPES = ("TrainConfig", "ResolvedConfig")


def trace(epochs: int = 1) -> list[str]:
    """The functions of ``cl/`` handed a config, in the order entered (one entry per call)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from cl.training import TrainConfig
    from cl.workflow import make_model

    torch.set_num_threads(1)
    config = TrainConfig(dataset="digits", epochs=epochs, seed=0, threads=1, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        return _calls_handed(lambda a: type(a).__name__ in CONFIG_TYPES,
                             lambda: make_model(config, Path(tmp) / "digits.safetensors"))


def trace_data(name: str = "digits", split: str = "train") -> list[str]:
    """The functions of ``cl/`` handed the data set's name or its source object while one split
    loads as the app loads it, in the order entered."""
    sys.path.insert(0, str(ROOT))
    from cl.data import DataSource, clear_cache, load_dataset

    clear_cache()
    return _calls_handed(lambda a: a == name if isinstance(a, str) else isinstance(a, DataSource),
                         lambda: load_dataset(name, split, download=False, allow_gallery=(split == "test")))


def _calls_handed(wanted, run) -> list[str]:
    """Run ``run()`` under ``sys.setprofile``; every call of a function of ``cl/`` with an argument
    for which ``wanted(argument)`` holds, as ``module.function``, in the order entered."""
    cl_dir = str(ROOT / "cl")
    entered: list[str] = []

    def profile(frame, event, _arg):
        if event != "call" or not frame.f_code.co_filename.startswith(cl_dir):
            return
        code = frame.f_code
        args = [frame.f_locals.get(n) for n in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
        if any(wanted(a) for a in args):
            module = Path(code.co_filename).relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            entered.append(f"{module}.{code.co_qualname if hasattr(code, 'co_qualname') else code.co_name}")

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return entered


def _report(what: str, entered: list[str], show_all: bool) -> bool:
    """Print one walk; whether it was straight."""
    counts = collections.Counter(entered)
    if show_all:
        print("\n".join(f"  {e}" for e in entered))
    repeated = {name: n for name, n in counts.items() if n > 1}
    print(f"{what}: {len(counts)} functions of cl/ received it, {len(entered)} calls in all")
    for name, n in sorted(repeated.items(), key=lambda kv: -kv[1]):
        print(f"  entered {n} times: {name}")
    if not repeated:
        print("  each entered once: a straight walk")
    return not repeated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list every call on each path")
    parser.add_argument("--dataset", default="digits", help="the data set of the data walk (default: digits)")
    args = parser.parse_args(argv)
    straight = _report("the training config, one digits training", trace(), args.all)
    for split in ("train", "test"):
        straight &= _report(f"the data set {args.dataset!r}, {split} split", trace_data(args.dataset, split), args.all)
    return 0 if straight else 1


if __name__ == "__main__":
    sys.exit(main())
