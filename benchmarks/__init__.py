"""``python -m benchmarks``: how fast this project is, as ratios against baselines run in the same
command, with raw seconds and a description of the machine.

Parts (names for ``--only``):

``train``
    Whole commands, as a user runs them: ``python -m cl train --recipe paper --epochs 1 --no-eval``
    followed by ``python -m cl evaluate`` (paper protocol), against
    ``python -m benchmarks.paper_baseline`` (the study's pipeline re-implemented: Python lists of tensor
    tuples built per run, per-sample torchvision PIL transforms, a default DataLoader; same
    :class:`~cl.encoder.PaperEncoder`, data, loss and epochs). Throughput is training images per
    second (forward + backward) as each side reports it; the baseline also reports the seconds it
    spent building its pair lists.
``recipes``
    ``python -m cl train --dataset D`` as whole commands for digits, MNIST, Fashion-MNIST and the
    CIFAR-10 subset (the targets of docs/recipes.md: time and paper-protocol linear accuracy), against the
    previous default recipe (two views per image) run as whole commands in the same bench
    (:mod:`benchmarks.recipes`; ``CL_BENCH_RECIPE_BASELINES`` limits which baselines run).
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
``maptrust``
    Neighbours kept, trustworthiness and continuity of PCA and t-SNE maps of the 10,000 MNIST test
    embeddings (the shipped ``mnist-best`` model) with :func:`cl.maptrust.map_trust` (exact, chunked)
    against ``sklearn.manifold.trustworthiness`` (cosine, full ``n x n`` ranks) on the same input,
    with the absolute differences of the two results (:mod:`benchmarks.maptrust`).
``app``
    ``streamlit run app.py`` cold start: seconds from launch until headless Chromium
    (Playwright, ``/usr/bin/chromium``) shows the first page's heading, and until its script
    settles; then the Embedding space page on MNIST with the 10,000-point scatter, recording the
    peak RSS of the server's process tree throughout. Reports ``skipped: reason`` when the app,
    Chromium or Playwright is not usable.

``views``
    What one page view costs the server in demo mode, per page (Study, Compare, Embedding,
    Metrics, Train, Overview): CPU seconds per warm view of a new visitor (psutil, user + system),
    script runs per view, bytes on the wire per view (websocket; HTTP too for browser visitors),
    and for a few headless Chromium visitors the seconds until a Vega chart is drawn
    (:mod:`benchmarks.views`).
``wsroom``
    A room of protocol-level visitors (:mod:`benchmarks.wsroom`: Streamlit's own websocket
    protocol, no browser) while two trainings run: views per second, latency percentiles, errors;
    on one server process, then on 2 replicas behind nginx (:mod:`deploy.local`), and again with
    each interpreter in ``CL_BENCH_ROOM_PYTHONS`` (a venv with PyTorch's CPU-only build).
``browserroom``
    20 headless Chromium visitors at once (10 phones), one chart page's deep link each, through 2
    replicas behind nginx while two trainings run: errors and seconds until each chart is drawn
    (:func:`benchmarks.loadtest.run_room`). The browsers render on the same cores as the server.
``distributed``
    ``python -m cl train --dataset digits`` (default recipe, with its card's evaluation) as one process
    against ``torchrun --standalone --nproc-per-node 2`` (DDP over gloo), one thread per process:
    whole-command and training seconds, images per second, the ratios and both paper-protocol
    accuracies (:mod:`benchmarks.distributed`).

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
    images_per_s, linear_acc}, one_process: {ours_s, baseline_s, ours_linear_acc, baseline_linear_acc,
    speedup}, speedup_commands, speedup_one_process, speedup_images_per_s}``);
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
  - ``recipes``: ``command``, ``baseline``, ``datasets``: ``{D: {train_complete, limit_s, min_linear_acc,
    ours: {command_s, train_seconds, linear_acc, knn_acc, epochs, n_train, views, encoder_width},
    baseline: {..., args} or null, speedup_commands}}``;
  - ``distributed``: ``dataset``, ``n_train``, ``epochs``, ``one_process`` and ``two_processes`` (each
    ``{command_s, train_seconds, images, images_per_s, world_size, backend, global_batch, linear_acc,
    n_test_scored}``), ``speedup_train``, ``speedup_command``, ``accuracy_difference``;
- ``targets``: list of ``{name, limit, unit, value, met}`` for the issues' targets (``met`` is
  null when the figure was not measured in this run).

Environment: ``CL_BENCH_SIZES`` (comma-separated point counts) overrides the projection sizes and
the neighbour gallery sizes, e.g. ``CL_BENCH_SIZES=500`` for a smoke test. Timings on a shared
CPU are noisy: compare the ratios, and read ``machine.load_average_*`` and ``matmul_gflops``.
"""

from __future__ import annotations

import subprocess
import time

from cl.errors import ConfigError, UserError
from .app import _part_app
from .common import _abs_data_dir, _Context, _Skip, _write_json
from .distributed import _part_distributed
from .load import _part_browserroom, _part_links, _part_room
from .machine import _loadavg, machine_info
from .maptrust import _part_maptrust
from .neighbors import _part_neighbors
from .projection import _part_projection
from .recipes import _part_recipes
from .report import _format_part, _format_targets, targets
from .training import _part_time_to_accuracy, _part_train
from .views import _part_views
from .wsroom import _part_wsroom

PARTS = ("train", "recipes", "time_to_accuracy", "projection", "neighbors", "maptrust", "app", "links", "room", "views", "wsroom",
         "browserroom", "distributed")


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
    runners = {"train": _part_train, "recipes": _part_recipes, "time_to_accuracy": _part_time_to_accuracy,
               "projection": _part_projection, "neighbors": _part_neighbors, "maptrust": _part_maptrust, "app": _part_app,
               "links": _part_links, "room": _part_room,
               "views": _part_views, "wsroom": _part_wsroom, "browserroom": _part_browserroom,
               "distributed": _part_distributed}
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


def _parse_parts(only) -> list[str]:
    if not only:
        return list(PARTS)
    names = [n for item in only for n in str(item).replace(",", " ").split()]
    bad = [n for n in names if n not in PARTS]
    if bad:
        raise ConfigError(f"unknown bench part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in names]


