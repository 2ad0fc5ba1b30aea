"""Bench parts ``links`` and ``room``: their code lives in :mod:`benchmarks.loadtest`."""

from __future__ import annotations

import os
import sys

from .common import _child_env, _Context, _Skip


def _part_links(ctx: _Context) -> dict:
    """Deep link on a cold server, and every page of every shipped model (benchmarks.loadtest.run_links)."""
    from .loadtest import Unavailable, run_links

    try:
        return run_links(cold_repeats=1 if ctx.quick else 3, env_extra=_child_env(ctx),
                         models=["mnist-best", "digits-best"] if ctx.quick else None, say=ctx.say)
    except Unavailable as err:
        raise _Skip(str(err)) from None


def _part_room(ctx: _Context) -> dict:
    """A room of visitors at once while two trainings run (benchmarks.loadtest.run_browser_room), in demo mode.

    The server runs with this Python, then with each Python named in ``CL_BENCH_ROOM_PYTHONS``
    (separated by ``os.pathsep``), e.g. a virtual environment with PyTorch's CPU-only build, so the
    two builds' memory is measured in the same command."""
    from .loadtest import Unavailable, run_browser_room

    visitors = int(os.environ.get("CL_BENCH_VISITORS", "5" if ctx.quick else "40"))
    pythons = [sys.executable] + [p for p in os.environ.get("CL_BENCH_ROOM_PYTHONS", "").split(os.pathsep) if p]
    env = {**_child_env(ctx), "CL_DEMO": "1"}
    out: dict = {"runs": []}
    try:
        for python in pythons:
            out["runs"].append(run_browser_room(visitors=visitors, env_extra=env, python=python, timeout=900, say=ctx.say))
    except Unavailable as err:
        raise _Skip(str(err)) from None
    first = out["runs"][0]
    out.update({k: first[k] for k in ("visitors", "errors", "all_settled", "peak_rss_mb", "torch_build", "settle")})
    return out


def _part_browserroom(ctx: _Context) -> dict:
    """The real-browser room of a talk: ``CL_BENCH_VISITORS`` Chromium visitors (default 20; 4 with
    --quick), every other one a phone, each opening one chart page's deep link (Embedding,
    Metrics, Compare in turn) at once, through 2 replicas behind deploy/'s nginx while two
    trainings run; each timed until its chart is drawn. Without nginx: one ``streamlit run``."""
    import shutil

    from .loadtest import CHART_PAGES, ROOM_PAGES, Unavailable, run_browser_room

    visitors = int(os.environ.get("CL_BENCH_VISITORS", "4" if ctx.quick else "20"))
    replicas = 2 if (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")) else 0
    pages = [p for p in ROOM_PAGES if p[0] in CHART_PAGES]
    try:
        return run_browser_room(visitors=visitors, trainings=2, timeout=600, env_extra={**_child_env(ctx), "CL_DEMO": "1"},
                        replicas=replicas, pages=pages, one_link_each=True, say=ctx.say)
    except Unavailable as err:
        raise _Skip(str(err)) from None
