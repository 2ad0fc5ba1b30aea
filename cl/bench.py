"""``python -m cl bench``: how fast this project is, as ratios against baselines run in the same
command, with raw seconds and a description of the machine.

Parts (names for ``--only``):

``train``
    Whole commands, as a user runs them: ``python -m cl train --recipe paper --epochs 1 --no-eval``
    followed by ``python -m cl evaluate`` (paper protocol), against
    ``python -m cl.paper_baseline`` (the study's pipeline re-implemented: Python lists of tensor
    tuples built per run, per-sample torchvision PIL transforms, a default DataLoader; same
    :class:`~cl.encoder.PaperEncoder`, data, loss and epochs). Throughput is training images per
    second (forward + backward) as each side reports it; the baseline also reports the seconds it
    spent building its pair lists.
``time_to_accuracy``
    Seconds of *training* (evaluation excluded, via ``train(..., on_epoch_end=...)``) until the
    default recipe's paper-protocol linear accuracy on MNIST first reaches 0.93 and 0.99
    (checked after every epoch), against the paper recipe's (triplet, 10 epochs) seconds to its
    own best epoch.
``projection``
    t-SNE, UMAP and PCA of 1,000 and 10,000 embeddings (seed 0) with :func:`cl.projection.project`
    against ``sklearn.manifold.TSNE`` and plain seeded ``umap.UMAP`` (and, in the full run,
    openTSNE's defaults). Embeddings: a randomly initialised (seed 0) PaperEncoder applied to the
    first N MNIST test images (no training needed; 32-d). Each result also gets the 10-NN
    class accuracy of its 2-D points (3-fold) as a sanity check of quality.
``neighbors``
    Latency from an image file on disk to the top-10 neighbours: read + decode + MNIST-style
    preprocessing (:func:`cl.retrieval.prepare_query`) + embedding
    (:func:`cl.retrieval.embed_one`, a randomly initialised default-recipe ConvNet) + search
    (:class:`cl.retrieval.NeighborIndex`), p50/p95 over many queries, for galleries of 10,000 and
    60,000 embeddings (MNIST test; MNIST train+test tiled to 60,000 since this machine holds 27,387
    MNIST images: latency does not depend on content). Baseline: the same pipeline with
    scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")`` built per query.
``app``
    ``streamlit run app.py`` cold start: seconds from launch until headless Chromium
    (Playwright, ``/usr/bin/chromium``) shows the first page's heading, and until its script
    settles; then the Embedding space page on MNIST with the 10,000-point scatter, recording the
    peak RSS of the server's process tree throughout. Reports ``skipped: reason`` when the app,
    Chromium or Playwright is not usable.

Everything goes to ``--out`` (default ``bench-results.json``) as one JSON object with the keys:

- ``schema`` (1), ``quick``, ``parts_run``, ``started``, ``seconds`` (whole bench);
- ``machine``: ``cpu_model``, ``logical_cpus``, ``usable_cpus``, ``memory_gb``, ``torch``,
  ``torch_threads``, ``torch_interop_threads``, ``python``, ``platform``, ``versions`` (library
  versions), ``load_average_start`` / ``load_average_end`` (1, 5, 15 min), ``matmul_gflops``
  (``{"threads_1": .., "threads_all": ..}``, float32 2048^3, best of 5: a load indicator),
  ``busy_processes`` (other processes using > 20 % CPU at the start);
- ``parts``: one object per part run; a part that cannot run has ``skipped`` (the reason), one
  that failed has ``error``; every part has ``part_seconds``. Part contents:

  - ``train``: ``dataset``, ``n_train``, ``train_complete``, ``epochs``, ``scenarios`` (list of
    ``{loss, augmentation, ours: {train_command_s, evaluate_command_s, total_s, train_seconds,
    images, images_per_s, linear_acc}, baseline: {total_s, build_pairs_s, train_seconds, images,
    images_per_s, linear_acc}, speedup_commands, speedup_images_per_s}``);
  - ``time_to_accuracy``: ``dataset``, ``n_train``, ``thresholds``, ``default`` and ``paper``
    (each ``{config, history: [{epoch, train_seconds, linear_acc}], best_acc, seconds_to_best,
    seconds_to: {"0.93": s or null, "0.99": s or null}, stopped}``),
    ``ratio_paper_best_over_default_093``;
  - ``projection``: ``embeddings``, ``jit_warmup_s``, ``baseline_warmup_s``, ``sizes``:
    ``{"1000": {"tsne": {ours_s, baseline_s, baseline, speedup, reproducible, knn_acc_ours,
    knn_acc_baseline, [opentsne_default_s]}, "umap": {...}, "pca": {...}}, ...}``;
  - ``neighbors``: ``encoder``, ``query``, ``n_queries``, ``galleries``:
    ``{"10000": {ours: {p50_ms, p95_ms, mean_ms, decode_prepare_p50_ms, embed_p50_ms,
    search_p50_ms}, baseline: {name, p50_ms, p95_ms, mean_ms, search_p50_ms}, speedup_p95,
    same_top10}, ...}``;
  - ``app``: ``first_page_s`` (heading visible), ``first_page_idle_s`` (script settled),
    ``rss_first_page_mb``, ``embedding_page_s``, ``scatter_points``, ``peak_rss_mb`` (server
    process tree, whole session), ``rss_after_mb``, ``torch_import_rss_mb`` (a fresh process
    after ``import torch`` alone: the floor) and ``torch_build``, ``pages``; ``embedding_page_skipped`` (a
    reason) when the scatter could not be shown;
- ``targets``: list of ``{name, limit, unit, value, met}`` for the issue's targets (``met`` is
  null when the figure was not measured in this run).

Environment: ``CL_BENCH_SIZES`` (comma-separated point counts) overrides the projection sizes and
the neighbour gallery sizes, e.g. ``CL_BENCH_SIZES=500`` for a smoke test. Timings on a shared
CPU are noisy: compare the ratios, and read ``machine.load_average_*`` and ``matmul_gflops``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, DataUnavailableError, UserError

PARTS = ("train", "time_to_accuracy", "projection", "neighbors", "app", "links", "room")
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
THRESHOLDS = (0.93, 0.99)


# ------------------------------------------------------------------------------------ entry point
def run_bench(quick: bool = False, only: list[str] | None = None, data_dir=None, out: str = "bench-results.json",
              verbose: bool = True) -> dict:
    """Run the chosen parts (all by default), write ``out`` and return the results."""
    parts = _parse_parts(only)
    ctx = _Context(quick=quick, data_dir=_abs_data_dir(data_dir), verbose=verbose)
    t_all = time.perf_counter()
    payload: dict = {"schema": 1, "quick": bool(quick), "parts_run": parts,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": machine_info(), "parts": {}}
    ctx.say(f"machine: {payload['machine']['cpu_model']}, {payload['machine']['usable_cpus']} CPUs, "
            f"load {payload['machine']['load_average_start']}")
    runners = {"train": _part_train, "time_to_accuracy": _part_time_to_accuracy, "projection": _part_projection,
               "neighbors": _part_neighbors, "app": _part_app, "links": _part_links, "room": _part_room}
    for name in parts:
        ctx.say(f"--- {name}")
        t0 = time.perf_counter()
        try:
            result = runners[name](ctx)
        except _Skip as skip:
            result = {"skipped": str(skip)}
        except (UserError, OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
            result = {"error": f"{type(err).__name__}: {err}"}
        result["part_seconds"] = round(time.perf_counter() - t0, 3)
        payload["parts"][name] = result
        if verbose:
            print(_format_part(name, result), flush=True)
    payload["machine"]["load_average_end"] = _loadavg()
    payload["targets"] = targets(payload)
    payload["seconds"] = round(time.perf_counter() - t_all, 3)
    _write_json(out, payload)
    if verbose:
        print(_format_targets(payload["targets"]))
        print(f"\nwrote {out} ({payload['seconds']:.0f} s)", flush=True)
    return payload


class _Skip(Exception):
    """A part that cannot run here (a reason, not a failure)."""


def _part_links(ctx: "_Context") -> dict:
    """Deep link on a cold server, and every page of every shipped model (cl.loadtest.run_links)."""
    from .loadtest import Unavailable, run_links

    try:
        return run_links(cold_repeats=1 if ctx.quick else 3, env_extra=_child_env(ctx),
                         models=["mnist-best", "digits-best"] if ctx.quick else None, say=ctx.say)
    except Unavailable as err:
        raise _Skip(str(err)) from None


def _part_room(ctx: "_Context") -> dict:
    """A room of visitors at once while two trainings run (cl.loadtest.run_room)."""
    from .loadtest import Unavailable, run_room

    visitors = int(os.environ.get("CL_BENCH_VISITORS", "5" if ctx.quick else "40"))
    try:
        return run_room(visitors=visitors, env_extra=_child_env(ctx), say=ctx.say)
    except Unavailable as err:
        raise _Skip(str(err)) from None


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


def _parse_parts(only) -> list[str]:
    if not only:
        return list(PARTS)
    names = [n for item in only for n in str(item).replace(",", " ").split()]
    bad = [n for n in names if n not in PARTS]
    if bad:
        raise ConfigError(f"unknown bench part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in names]


def _abs_data_dir(data_dir) -> str | None:
    from .data import resolve_data_dir

    return str(resolve_data_dir(data_dir).resolve())


def _write_json(out: str, payload: dict) -> None:
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ------------------------------------------------------------------------------------ machine
def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def matmul_gflops(threads: int | None = None, size: int = 2048, repeats: int = 5) -> float:
    """Best-of float32 matrix-multiply throughput (a quick indicator of how loaded the CPU is)."""
    old = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        a, b = torch.randn(size, size), torch.randn(size, size)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        return round(2 * size ** 3 / best / 1e9, 1)
    finally:
        torch.set_num_threads(old)


def _busy_processes() -> list[dict]:
    try:
        import psutil
    except ImportError:
        return []
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid != me]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    busy = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
        except psutil.Error:
            continue
        if cpu > 20:
            cmd = " ".join(p.info.get("cmdline") or [p.info.get("name") or ""])[:120]
            busy.append({"pid": p.pid, "cpu_percent": round(cpu), "command": cmd})
    return sorted(busy, key=lambda r: -r["cpu_percent"])


def machine_info() -> dict:
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": memory_gb,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {n: _version(n) for n in ("numpy", "scikit-learn", "openTSNE", "umap-learn", "numba",
                                               "torchvision", "streamlit", "playwright")},
        "load_average_start": _loadavg(),
        "matmul_gflops": {"threads_1": matmul_gflops(1), "threads_all": matmul_gflops(None)},
        "busy_processes": _busy_processes(),
    }


# ------------------------------------------------------------------------------------ helpers
def _child_env(ctx: _Context) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if ctx.data_dir:
        env["CL_DATA_DIR"] = ctx.data_dir
    return env


def _run_command(ctx: _Context, args: list[str], timeout: float = 3600) -> tuple[float, dict]:
    """Run ``python <args>`` as a whole command; returns (wall seconds, its last-line JSON)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=_child_env(ctx), capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`python {' '.join(args)}` exited {proc.returncode}: {' | '.join(tail)}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    return seconds, (json.loads(lines[-1]) if lines else {})


def _pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3)


def _ratio(baseline, ours) -> float | None:
    if baseline is None or ours is None or ours <= 0:
        return None
    return round(float(baseline) / float(ours), 2)


def _load(name: str, split: str, ctx: _Context):
    from .data import load_dataset

    return load_dataset(name, split, ctx.data_dir, download=False)


def _mnist_or_digits(ctx: _Context, split: str):
    try:
        return _load("mnist", split, ctx)
    except DataUnavailableError:
        ctx.say("MNIST not found: using the bundled digits instead")
        return _load("digits", split, ctx)


# ------------------------------------------------------------------------------------ train
def _part_train(ctx: _Context) -> dict:
    from .checkpoints import read_card

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
            ctx.say(f"baseline: python -m cl.paper_baseline --dataset {dataset} --loss {loss} --augmentation {aug} "
                    f"--epochs 1")
            t_base, base_out = _run_command(ctx, ["-m", "cl.paper_baseline", "--dataset", dataset, "--loss", loss,
                                                  "--augmentation", aug, "--epochs", "1", "--json"])
            baseline = {"total_s": round(t_base, 3), "build_pairs_s": round(base_out["build_seconds"], 3),
                        "train_seconds": round(base_out["train_seconds"], 3), "images": base_out["images"],
                        "images_per_s": round(base_out["images_per_s"], 1),
                        "linear_acc": base_out.get("metrics", {}).get("linear_acc")}
            rows.append({"loss": loss, "augmentation": aug, "ours": ours, "baseline": baseline,
                         "speedup_commands": _ratio(baseline["total_s"], ours["total_s"]),
                         "speedup_images_per_s": _ratio(ours["images_per_s"], baseline["images_per_s"])})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dataset": dataset, "n_train": len(train_set), "train_complete": train_set.complete, "epochs": 1,
            "recipe": "paper", "scenarios": rows}


# ------------------------------------------------------------------------------------ time to accuracy
def _part_time_to_accuracy(ctx: _Context) -> dict:
    from .evaluation import embed, evaluate_embeddings
    from .training import TrainConfig, resolve_config, train

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


# ------------------------------------------------------------------------------------ projection
def _knn_acc_2d(xy: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return round(float(cross_val_score(KNeighborsClassifier(10), xy, labels, cv=3).mean()), 4)


def _part_projection(ctx: _Context) -> dict:
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from .encoder import PaperEncoder
    from .evaluation import embed
    from .projection import project, warm_up

    test = _mnist_or_digits(ctx, "test")
    sizes = ctx.sizes or ([1000] if ctx.quick else [1000, 10000])
    n_max = min(max(sizes), len(test))
    torch.manual_seed(0)
    encoder = PaperEncoder(test.channels, test.size).eval()
    emb = embed(encoder, test.images[:n_max])
    labels = test.labels.numpy()[:n_max]
    ctx.say("compiling UMAP kernels (once per process)")
    jit_s = warm_up()
    import umap

    t0 = time.perf_counter()
    with warnings.catch_warnings():  # plain umap-learn's own first-call compilation, outside the timings
        warnings.simplefilter("ignore")
        # from 4,096 points umap-learn searches neighbours with NN-descent (more kernels to compile)
        warm_n = 4200 if max(sizes) >= 4096 else 100
        warm = np.random.default_rng(0).standard_normal((warm_n, 8)).astype(np.float32)
        umap.UMAP(random_state=0, n_epochs=2).fit_transform(warm)
    baseline_warm_s = time.perf_counter() - t0

    def baseline(method: str, x: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "tsne":
                return TSNE(n_components=2, random_state=0).fit_transform(x), "sklearn.manifold.TSNE(random_state=0)"
            if method == "umap":
                return umap.UMAP(random_state=0).fit_transform(x), "umap.UMAP(random_state=0)"
            return PCA(n_components=2, random_state=0).fit_transform(x), "sklearn PCA(2, random_state=0)"

    out = {}
    for n in sizes:
        n = min(n, len(emb))
        x, y = emb[:n], labels[:n]
        row = {}
        for method in ("tsne", "umap", "pca"):
            ctx.say(f"{method} of {n:,} points: ours")
            t0 = time.perf_counter()
            ours = project(x, method, seed=0)
            ours_s = time.perf_counter() - t0
            reproducible = None
            if n <= 2000:
                reproducible = bool(np.array_equal(ours, project(x, method, seed=0)))
            ctx.say(f"{method} of {n:,} points: baseline")
            t0 = time.perf_counter()
            base, base_name = baseline(method, x)
            base_s = time.perf_counter() - t0
            cell = {"ours_s": round(ours_s, 3), "baseline_s": round(base_s, 3), "baseline": base_name,
                    "speedup": _ratio(base_s, ours_s), "reproducible": reproducible,
                    "knn_acc_ours": _knn_acc_2d(ours, y), "knn_acc_baseline": _knn_acc_2d(np.asarray(base), y)}
            if method == "tsne" and not ctx.quick:
                from openTSNE import TSNE as OpenTSNE

                ctx.say(f"tsne of {n:,} points: openTSNE defaults")
                t0 = time.perf_counter()
                OpenTSNE(random_state=0).fit(x)
                cell["opentsne_default_s"] = round(time.perf_counter() - t0, 3)
            row[method] = cell
        out[str(n)] = row
    return {"embeddings": f"randomly initialised PaperEncoder (seed 0), {emb.shape[1]}-d, first N {test.name} "
                          f"test images", "dataset": test.name, "jit_warmup_s": round(jit_s, 3),
            "baseline_warmup_s": round(baseline_warm_s, 3), "sizes": out}


# ------------------------------------------------------------------------------------ neighbours
def _part_neighbors(ctx: _Context) -> dict:
    from PIL import Image
    from sklearn.neighbors import NearestNeighbors

    from .data import to_float
    from .encoder import build_encoder
    from .evaluation import embed
    from .retrieval import NeighborIndex, embed_one, prepare_query

    test = _mnist_or_digits(ctx, "test")
    dataset = test.name
    gallery_sizes = ctx.sizes or ([10000] if ctx.quick else [10000, 60000])
    n_queries = 30 if ctx.quick else 200
    torch.manual_seed(0)
    model = build_encoder("convnet", test.channels, test.size, width=16).eval().to(memory_format=torch.channels_last)
    need = max(gallery_sizes)
    sources = [test]
    if need > len(test):
        try:
            sources.append(_load(dataset, "train", ctx))
        except DataUnavailableError:
            pass
    pool_images = torch.cat([s.images for s in sources])[:need]
    pool_labels = np.concatenate([s.labels.numpy() for s in sources])[:need]
    ctx.say(f"embedding a gallery of {len(pool_images):,} {dataset} images")
    pool = embed(model, pool_images)

    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-query-"))
    try:
        files = []
        for i in range(20):  # what users upload: a bigger, dark-on-light picture of a digit
            arr = 255 - test.images[i, 0].numpy()
            path = tmp / f"query-{i}.png"
            Image.fromarray(arr, "L").resize((280, 280), Image.Resampling.BILINEAR).save(path)
            files.append(path)

        plain = build_encoder("convnet", test.channels, test.size, width=16)  # NCHW copy, same weights
        plain.load_state_dict(model.state_dict())
        plain.eval()

        def embed_ours(image):
            return embed_one(model, image)

        @torch.no_grad()
        def embed_plain(image):  # what one writes without thinking about threads or memory layout
            return plain(to_float(image[None]))[0].numpy()

        def run(embed_fn, search) -> tuple[dict, list, list]:
            totals, prep, emb_t, srch, tops, vecs = [], [], [], [], [], []
            for i in range(n_queries + 3):
                path = files[i % len(files)]
                t0 = time.perf_counter()
                prepared = prepare_query(path, test.channels, test.size, dataset)
                t1 = time.perf_counter()
                vec = embed_fn(prepared.tensor)
                t2 = time.perf_counter()
                top = search(vec)
                t3 = time.perf_counter()
                if i < 3:
                    continue  # warm-up
                totals.append(t3 - t0)
                prep.append(t1 - t0)
                emb_t.append(t2 - t1)
                srch.append(t3 - t2)
                tops.append(top)
                vecs.append(vec)
            ms = lambda v: [t * 1000.0 for t in v]  # noqa: E731
            return ({"p50_ms": _pct(ms(totals), 50), "p95_ms": _pct(ms(totals), 95),
                     "mean_ms": round(float(np.mean(ms(totals))), 3),
                     "decode_prepare_p50_ms": _pct(ms(prep), 50), "embed_p50_ms": _pct(ms(emb_t), 50),
                     "search_p50_ms": _pct(ms(srch), 50)}, tops, vecs)

        galleries = {}
        for size in gallery_sizes:
            reps = -(-size // len(pool))
            gallery = np.tile(pool, (reps, 1))[:size]
            labels = np.tile(pool_labels, reps)[:size]
            ctx.say(f"top-10 over {size:,} embeddings: ours")
            index = NeighborIndex(gallery, labels)
            ours, ours_top, vecs = run(embed_ours, lambda v: [h.index for h in index.query(v, k=10)])
            ctx.say(f"top-10 over {size:,} embeddings: plain forward pass + sklearn NearestNeighbors per query")

            def naive(v, gallery=gallery):
                nn = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(gallery)
                return nn.kneighbors(np.asarray(v, dtype=np.float32)[None], return_distance=False)[0].tolist()

            base, base_top, _ = run(embed_plain, naive)
            base["name"] = ("plain NCHW forward pass with default threads + sklearn NearestNeighbors(metric='cosine', "
                            "algorithm='brute') fitted per query; same decoding and preprocessing")
            # Near-ties (a tiled gallery repeats vectors) may be ordered differently: compare the
            # neighbours' similarities to the query rather than their indices.
            unit = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
            same = [np.allclose(np.sort(unit[a] @ (v / np.linalg.norm(v))), np.sort(unit[b] @ (v / np.linalg.norm(v))),
                                atol=1e-5) for a, b, v in zip(ours_top, base_top, vecs)]
            galleries[str(size)] = {"ours": ours, "baseline": base, "speedup_p95": _ratio(base["p95_ms"], ours["p95_ms"]),
                                    "same_top10": round(float(np.mean(same)), 3),
                                    "gallery": (f"{size:,} embeddings of {dataset} images" if reps == 1
                                                else f"{len(pool):,} {dataset} embeddings tiled to {size:,}")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"encoder": "randomly initialised default-recipe ConvNet (width 16, 64-d, seed 0), channels-last",
            "query": "280x280 PNG of a dark-on-light digit read from disk (decode, invert, crop, centre, 28x28)",
            "dataset": dataset, "n_queries": n_queries, "torch_threads": torch.get_num_threads(),
            "galleries": galleries}


# ------------------------------------------------------------------------------------ app
def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a Streamlit server started by the bench or the tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RssSampler(threading.Thread):
    """Peak resident memory of a process and all its children, sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.last = 0
        self._halt = threading.Event()

    def sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc] + self.proc.children(recursive=True)
        except psutil.Error:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            self.last = self.sample()
            self.peak = max(self.peak, self.last)
            self._halt.wait(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def _part_app(ctx: _Context) -> dict:
    if not (ROOT / "app.py").is_file():
        raise _Skip("app.py not found")
    if not Path(CHROMIUM).exists():
        raise _Skip(f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise _Skip("playwright (python) is not installed") from None
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise _Skip("psutil is not installed") from None
    try:
        test = _load("mnist", "test", ctx)
        dataset, n_points = "mnist", len(test)
    except DataUnavailableError:
        raise _Skip("MNIST test split not available: the 10,000-point scatter needs it") from None

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs = Path(tempfile.mkdtemp(prefix="cl-bench-app-"))
    env = _child_env(ctx)
    env.update(CL_RUNS_DIR=str(runs), CL_MAX_TRAININGS="1")
    env.pop("CL_APP_LIST_RUNS", None)
    log_path = runs / "server.log"
    result: dict = {"dataset": dataset}
    with open(log_path, "w") as log, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                           "--headless"])
        t_launch = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = _RssSampler(server.pid)
        sampler.start()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            while True:  # the server answers HTTP well before the page renders: keep trying
                if server.poll() is not None:
                    raise _Skip(f"streamlit exited ({server.returncode}): {log_path.read_text()[-500:]}")
                if time.perf_counter() - t_launch > 120:
                    raise _Skip("the app did not answer within 120 s")
                try:
                    page.goto(url, timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - connection refused while the server starts
                    time.sleep(0.1)
            page.get_by_role("heading").first.wait_for(timeout=120000)
            result["first_page_s"] = round(time.perf_counter() - t_launch, 3)
            _wait_idle(page)
            result["first_page_idle_s"] = round(time.perf_counter() - t_launch, 3)
            result["rss_first_page_mb"] = round(sampler.sample() / 2**20, 1)
            if page.locator("[data-testid=stException]").count():
                raise _Skip("the first page shows an exception: "
                            + page.locator("[data-testid=stException]").first.inner_text()[:300])
            ctx.say(f"first page after {result['first_page_s']:.1f} s; choosing {dataset} in the sidebar")
            try:
                t0 = time.perf_counter()
                _choose_dataset(page, dataset)
                # in-app navigation (a new URL would start a new session and forget the sidebar)
                page.locator("[data-testid=stSidebarNav]").get_by_text("Embedding space").first.click()
                caption = page.get_by_text(f"{n_points:,} of {n_points:,} points")
                caption.first.wait_for(timeout=300000)
                _wait_idle(page, timeout=300)
                page.locator("[data-testid=stVegaLiteChart]").first.wait_for(timeout=60000)
                page.wait_for_timeout(1500)  # let the browser draw and the server settle
                result["embedding_page_s"] = round(time.perf_counter() - t0, 3)
                result["scatter_points"] = n_points
            except Exception as err:  # noqa: BLE001 - keep the cold-start figures; say what failed
                shot = Path(tempfile.gettempdir()) / "cl-bench-app-failure.png"
                try:
                    page.screenshot(path=str(shot))
                except Exception:  # noqa: BLE001
                    pass
                result["embedding_page_skipped"] = (f"the Embedding space page did not show the {n_points:,}-point "
                                                    f"scatter ({type(err).__name__}: {str(err)[:200]}); "
                                                    f"screenshot {shot}")
            result["rss_after_mb"] = round(sampler.sample() / 2**20, 1)
        finally:
            sampler.stop()
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
            browser.close()
    result["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["torch_import_rss_mb"] = _torch_import_rss_mb()
    result["torch_build"] = torch.__version__
    result["pages"] = ["Overview"] + (["Embedding space (PCA, all test points)"] if "embedding_page_s" in result else [])
    result["server"] = "streamlit run app.py (headless), one browser session"
    shutil.rmtree(runs, ignore_errors=True)
    return result


def _torch_import_rss_mb() -> float | None:
    """Resident memory of a fresh Python process after ``import torch``: the app's fixed floor
    (about 520 MB with the CUDA build pip installs by default, about 210 MB with the CPU-only
    build)."""
    code = ("import torch\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return round(int(out.stdout.split()[-1]) / 1024, 1)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None  # not Linux, or torch failed: the figure is simply not reported


def wait_until_settled(page, stable: float = 0.8, timeout: float = 120, poll_ms: int = 100) -> None:
    """Wait until a Streamlit page's script has not been running for ``stable`` seconds
    (Playwright page); raise ``TimeoutError`` after ``timeout`` seconds. The browser tests use it too."""
    t0 = time.time()
    since = None
    while time.time() - t0 < timeout:
        state = page.evaluate("() => { const a = document.querySelector('[data-testid=stApp]');"
                              " return a ? a.getAttribute('data-test-script-state') : 'none'; }")
        if state not in ("running", "rerunRequested", "none", None):
            since = since or time.time()
            if time.time() - since >= stable:
                return
        else:
            since = None
        page.wait_for_timeout(poll_ms)
    raise TimeoutError(f"the app did not settle within {timeout:.0f} s")


def _wait_idle(page, stable: float = 0.8, timeout: float = 120) -> None:
    try:
        wait_until_settled(page, stable, timeout)
    except TimeoutError as err:
        raise _Skip(str(err)) from None


def _choose_dataset(page, dataset: str) -> None:
    box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
    box.click()
    option = page.get_by_role("option").filter(has_text=dataset).first
    option.wait_for(timeout=10000)
    for i in range(page.get_by_role("option").count()):
        opt = page.get_by_role("option").nth(i)
        if opt.inner_text().strip().startswith(dataset + " "):
            opt.click()
            break
    else:
        option.click()
    _wait_idle(page, timeout=180)


# ------------------------------------------------------------------------------------ targets
def targets(payload: dict) -> list[dict]:
    """The issue's targets, each with the measured value (None when not measured in this run)."""
    parts = payload.get("parts", {})
    rows = []

    def add(name, limit, unit, value, higher_is_better=False):
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        rows.append({"name": name, "limit": limit, "unit": unit, "value": value, "met": met})

    train = parts.get("train", {})
    speed = None
    for s in train.get("scenarios", []):
        if s["loss"] == "triplet" and s["augmentation"] == "none" and train.get("dataset") == "mnist":
            speed = s["speedup_commands"]
    add("paper recipe 1 epoch MNIST, train+evaluate commands vs paper pipeline (x faster)", 2.0, "x", speed, True)
    tta = parts.get("time_to_accuracy", {})
    if tta.get("dataset") == "mnist":
        to = tta.get("default", {}).get("seconds_to", {})
        add("default recipe to MNIST linear accuracy 0.93 (s of training)", 15.0, "s", to.get("0.93"))
        add("default recipe to MNIST linear accuracy 0.99 (s of training)", 120.0, "s", to.get("0.99"))
    else:
        add("default recipe to MNIST linear accuracy 0.93 (s of training)", 15.0, "s", None)
        add("default recipe to MNIST linear accuracy 0.99 (s of training)", 120.0, "s", None)
    proj = parts.get("projection", {}).get("sizes", {}).get("10000", {})
    add("t-SNE of 10,000 points, seeded (s)", 10.0, "s", proj.get("tsne", {}).get("ours_s"))
    add("UMAP of 10,000 points, seeded (s)", 10.0, "s", proj.get("umap", {}).get("ours_s"))
    nb = parts.get("neighbors", {}).get("galleries", {}).get("10000", {})
    add("image file -> top-10 over 10,000 embeddings, p95 (ms)", 30.0, "ms", nb.get("ours", {}).get("p95_ms"))
    app = parts.get("app", {})
    add("app first page (s)", 5.0, "s", app.get("first_page_s"))
    add("app peak RSS, one user, 10,000-point scatter (MB)", 700.0, "MB",
        app.get("peak_rss_mb") if app.get("scatter_points") else None)
    return rows


# ------------------------------------------------------------------------------------ printing
def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[("" if v is None else (f"{v:,.3g}" if isinstance(v, float) and abs(v) < 1000 else
                                     f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)))
              for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _format_part(name: str, r: dict) -> str:
    head = f"\n== {name} ({r.get('part_seconds', 0):.0f} s)"
    if "skipped" in r:
        return f"{head}\nskipped: {r['skipped']}"
    if "error" in r:
        return f"{head}\nerror: {r['error']}"
    if name == "train":
        rows = []
        for s in r["scenarios"]:
            o, b = s["ours"], s["baseline"]
            rows.append([f"{s['loss']}/{s['augmentation']}", o["total_s"], b["total_s"], s["speedup_commands"],
                         o["images_per_s"], b["images_per_s"], s["speedup_images_per_s"], b["build_pairs_s"],
                         o["linear_acc"], b["linear_acc"]])
        return (f"{head}: {r['dataset']} ({r['n_train']:,} train images), paper recipe, 1 epoch\n"
                + _table(["scenario", "ours cmds s", "paper cmd s", "x", "ours img/s", "paper img/s", "x",
                          "paper lists s", "ours acc", "paper acc"], rows))
    if name == "time_to_accuracy":
        rows = []
        for key in ("default", "paper"):
            d = r[key]
            rows.append([key, d["config"]["loss"], len(d["history"]), d["seconds_to"].get("0.93"),
                         d["seconds_to"].get("0.99"), d["best_acc"], d["seconds_to_best"], d["stopped"]])
        return (f"{head}: {r['dataset']}, paper protocol, seconds of training\n"
                + _table(["recipe", "loss", "epochs", "s to 0.93", "s to 0.99", "best acc", "s to best", "stopped"],
                         rows))
    if name == "projection":
        rows = []
        for n, row in r["sizes"].items():
            for method, c in row.items():
                rows.append([int(n), method, c["ours_s"], c["baseline_s"], c["speedup"], c.get("opentsne_default_s"),
                             c["reproducible"], c["knn_acc_ours"], c["knn_acc_baseline"]])
        return (f"{head}: {r['embeddings']}; JIT warm-up {r['jit_warmup_s']:.1f} s\n"
                + _table(["points", "method", "ours s", "baseline s", "x", "openTSNE s", "reproducible",
                          "2-D kNN ours", "2-D kNN base"], rows))
    if name == "neighbors":
        rows = []
        for n, g in r["galleries"].items():
            o, b = g["ours"], g["baseline"]
            rows.append([int(n), o["p50_ms"], o["p95_ms"], o["decode_prepare_p50_ms"], o["embed_p50_ms"],
                         o["search_p50_ms"], b["p50_ms"], b["p95_ms"], g["speedup_p95"], g["same_top10"]])
        return (f"{head}: {r['n_queries']} queries, file -> top-10 (ms)\n"
                + _table(["gallery", "p50", "p95", "decode+prep", "embed", "search", "naive p50", "naive p95",
                          "x p95", "same top-10"], rows))
    if name == "app":
        emb = (f"embedding page with {r['scatter_points']:,} points {r['embedding_page_s']} s" if "scatter_points" in r
               else f"embedding page skipped: {r.get('embedding_page_skipped')}")
        return (f"{head}\nfirst page {r.get('first_page_s')} s (settled {r.get('first_page_idle_s')} s); {emb}; "
                f"peak RSS {r.get('peak_rss_mb')} MB, of which `import torch` alone is "
                f"{r.get('torch_import_rss_mb')} MB ({r.get('torch_build')})")
    return head


def _format_targets(rows: list[dict]) -> str:
    table = [[r["name"], r["limit"], r["value"], {True: "met", False: "NOT met", None: "not measured"}[r["met"]]]
             for r in rows]
    return "\n== targets\n" + _table(["target", "limit", "measured", ""], table)
