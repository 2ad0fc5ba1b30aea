"""Bench parts ``links`` and ``room``: their code lives in :mod:`cl.loadtest`."""

from __future__ import annotations

import os

from .common import _Context, _Skip, _child_env


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
