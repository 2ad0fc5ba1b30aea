"""The room, small: 5 browser visitors at once (2 of them phones) through deep links to Overview,
Embedding, Metrics, Retrieval (with an upload) and Compare while two trainings run, in demo mode.
The 40-visitor run is `python -m benchmarks --only room`."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.loadtest import CHROMIUM, ROOM_PAGES, run_browser_room

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")


def test_five_visitors_and_two_trainings_get_every_page_without_an_error():
    pytest.importorskip("playwright.async_api")
    r = run_browser_room(visitors=5, trainings=2, timeout=300, env_extra={"CL_DEMO": "1"}, say=lambda _m: None)
    assert r["errors"] == 0, r["error_list"]
    assert r["visits"] == 5 * len(ROOM_PAGES) and r["all_settled"]
    assert r["settle"]["upload"]["n"] == 5  # every visitor's upload got its neighbours
    assert r["phones"] == 2 and r["settle"]["phone"]["n"] == 2 * len(ROOM_PAGES)
    assert r["peak_rss_mb"] > 100  # the sampler saw the server (a figure, not a target, at this size)
