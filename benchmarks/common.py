"""What every bench part shares: the context, skips, running whole commands, ratios, data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cl.checkpoints import write_atomically
from cl.errors import ConfigError, DataUnavailableError

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.93, 0.99)


class _Context:
    def __init__(self, quick: bool, data_dir: str | None, verbose: bool):
        self.quick, self.data_dir, self.verbose = quick, data_dir, verbose
        env_sizes = os.environ.get("CL_BENCH_SIZES", "").strip()
        self.sizes = [int(s) for s in env_sizes.replace(" ", "").split(",") if s] if env_sizes else None
        if self.sizes is not None and (not self.sizes or min(self.sizes) < 10):
            raise ConfigError(f"CL_BENCH_SIZES must list point counts >= 10, got {env_sizes!r}")

    def say(self, msg: str) -> None:
        if self.verbose:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _abs_data_dir(data_dir) -> str | None:
    from cl.data import resolve_data_dir

    return str(resolve_data_dir(data_dir).resolve())


def _write_json(out: str, payload: dict) -> None:
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(payload, indent=2, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class _Skip(Exception):
    """A part that cannot run here (a reason, not a failure)."""


# ------------------------------------------------------------------------------------ helpers
def _child_env(ctx: _Context) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if ctx.data_dir:
        env["CL_DATA_DIR"] = ctx.data_dir
    return env


def _run_command(ctx: _Context, args: list[str], timeout: float = 3600,
                 env_extra: dict | None = None) -> tuple[float, dict]:
    """Run ``python <args>`` as a whole command (``env_extra`` added to its environment); returns
    (wall seconds, its last-line JSON)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env={**_child_env(ctx), **(env_extra or {})},
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`python {' '.join(args)}` exited {proc.returncode}: {' | '.join(tail)}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    return seconds, (json.loads(lines[-1]) if lines else {})


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0-100) by numpy's definition (linear between the two nearest
    ranks: the median of an even count is the mean of the middle two), to 3 decimals. Every
    percentile the benchmarks report is this one."""
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3)


def percentiles(seconds: list[float]) -> dict:
    """``n``, p50, p90, p95, max and mean of durations in seconds (:func:`percentile`); ``{"n": 0}`` for none."""
    if not len(seconds):
        return {"n": 0}
    return {"n": len(seconds), **{f"p{q}_s": percentile(seconds, q) for q in (50, 90, 95)},
            "max_s": round(float(max(seconds)), 3), "mean_s": round(float(np.mean(seconds)), 3)}


def _ratio(baseline, ours) -> float | None:
    if baseline is None or ours is None or ours <= 0:
        return None
    return round(float(baseline) / float(ours), 2)


def _load(name: str, split: str, ctx: _Context):
    from cl.data import load_dataset

    return load_dataset(name, split, ctx.data_dir, download=False)


def _mnist_or_digits(ctx: _Context, split: str):
    try:
        return _load("mnist", split, ctx)
    except DataUnavailableError:
        ctx.say("MNIST not found: using the bundled digits instead")
        return _load("digits", split, ctx)


