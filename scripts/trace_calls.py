"""Follow a training config down the library: which of cl's functions receive it, and how often.

Runs one digits training through :func:`cl.workflow.make_model` (1 epoch) under ``sys.setprofile``
and records every call of a function defined in ``cl/`` that is handed a training config
(``TrainConfig`` or ``ResolvedConfig``) as an argument. A straight walk enters each once; the
script lists every function entered more than once, and exits 1 if there is any.

    python scripts/trace_calls.py            # the summary
    python scripts/trace_calls.py --all      # every function on the config's path, in order
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
    cl_dir = str(ROOT / "cl")
    entered: list[str] = []

    def profile(frame, event, _arg):
        if event != "call" or not frame.f_code.co_filename.startswith(cl_dir):
            return
        code = frame.f_code
        args = [frame.f_locals.get(name) for name in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
        if any(type(a).__name__ in CONFIG_TYPES for a in args):
            module = Path(code.co_filename).relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            entered.append(f"{module}.{code.co_qualname if hasattr(code, 'co_qualname') else code.co_name}")

    config = TrainConfig(dataset="digits", epochs=epochs, seed=0, threads=1, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(profile)
        try:
            make_model(config, Path(tmp) / "digits.safetensors")
        finally:
            sys.setprofile(None)
    return entered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list every call on the config's path")
    args = parser.parse_args(argv)
    entered = trace()
    counts = collections.Counter(entered)
    if args.all:
        print("\n".join(entered))
    repeated = {name: n for name, n in counts.items() if n > 1}
    print(f"{len(counts)} functions of cl/ received the config, {len(entered)} calls in all")
    for name, n in sorted(repeated.items(), key=lambda kv: -kv[1]):
        print(f"  entered {n} times: {name}")
    if not repeated:
        print("  each entered once: a straight walk")
    return 1 if repeated else 0


if __name__ == "__main__":
    sys.exit(main())
