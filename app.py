"""Contrastive Explorer: `streamlit run app.py`.

The entry point: page config, the shared sidebar (ui/sidebar.py) and navigation over pages/.
Pages hold widgets and charts only; the work is done by the `cl` library.

Environment (all optional):
  CL_DATA_DIR                 real data in torchvision layout (default ./data; digits needs none)
  CL_CHECKPOINTS_DIR          shipped checkpoints (default checkpoints/ beside this file)
  CL_RUNS_DIR                 where models trained in the app are saved (default ./runs)
  CL_MAX_TRAININGS            trainings running at once on this server (default 2)
  CL_APP_MAX_TRAIN_SECONDS    stop every training after this many seconds (a demo server)
  CL_APP_LIST_RUNS=1 or 0     list earlier runs from the runs folder (default: yes on a laptop,
                              no in demo mode, where they belong to other visitors and each is
                              reached by its link, ?model=run:NAME)
  CL_DEMO=1                   hosted-demo mode (ui/demo.py): each training stopped after 90 s,
                              one thread each, at most 2 at once, only data sets on the server
                              (no downloads), no server paths shown, runs folder bounded by
                              CL_RUNS_QUOTA_MB (default 200 MB; the oldest runs of sessions that
                              have ended go first, a live session's models stay)
  CL_RUNS_QUOTA_MB            disk quota of the runs folder (also outside demo mode)

  CL_ROOM_STORE               the live room's shared store: redis://HOST:PORT/DB for replicas on
                              several machines (default: SQLite in the cache folder)
  CL_PUBLIC_URL               the address phones open for a live room (default: the presenter's)

Deep links: every page keeps its view in the URL, e.g.
  /embedding?dataset=mnist&model=mnist-best&method=tsne   (dataset, model; method on Embedding)
  a model trained or uploaded in the app is model=run:NAME or model=upload:NAME, an uploaded
  image set dataset=upload:ID; a training is /train?run=NAME (docs/app.md: what survives what)
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402 - after sys.path gets the repository root

# narwhals is imported both by altair (a page's charts, on the script thread) and by scikit-learn
# (background threads: the test-embedding warm-up, the probe preload). Two threads importing its
# package at once can meet in Python's import locks ("_DeadlockError: deadlock detected by
# _ModuleLock('narwhals.stable.v2')", seen once in the suite), so import it whole here, on the
# script thread, before any background thread starts (about 0.07 s, once per process).
try:
    import narwhals.stable.v1
    import narwhals.stable.v2  # noqa: F401 - imported now for the import-lock reason above
except ImportError:  # altair before 5.4 and older scikit-learn do without it
    pass

from cl import allocator  # noqa: E402 - ctypes only: glibc malloc settings


@st.cache_resource
def _tune_malloc(demo_mode: bool) -> bool:
    """Once per server: at most 2 glibc malloc arenas (every session and training runs in its own
    thread); in demo mode also a fixed mmap threshold, trading training CPU for memory
    (docs/performance.md, "glibc malloc settings")."""
    ok = allocator.limit_arenas(2)
    if demo_mode:
        ok = allocator.fixed_mmap_threshold(256 * 1024) and ok
    return ok


from ui import demo  # noqa: E402 - light (os, time, dataclasses): the demo switch, read once

_tune_malloc(demo.enabled())


from ui import sidebar, state  # noqa: E402 - after sys.path gets the repository root

# The tab's icon is a file served by the app: a ":material/...:" icon is fetched from fonts.gstatic.com,
# which a room without internet (or a phone on a flaky network) cannot reach.
st.set_page_config(page_title="Contrastive Explorer", page_icon=str(ROOT / "ui" / "favicon.png"), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/study.py", title="Study", icon=":material/slideshow:", url_path="study"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/augmentations.py", title="Augmentations", icon=":material/auto_fix_high:"),
    st.Page("pages/batch.py", title="Batch", icon=":material/grid_on:", url_path="batch"),
    st.Page("pages/embedding.py", title="Embedding space", icon=":material/scatter_plot:"),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/leaderboard:"),
    st.Page("pages/retrieval.py", title="Retrieval", icon=":material/image_search:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/room.py", title="Live room", icon=":material/groups:", url_path="room"),
    st.Page("pages/join.py", title="Join a room", icon=":material/draw:", url_path="join"),
]

page = st.navigation(PAGES)
sidebar.render()
for kind, text in state.pop_flash():
    {"success": st.success, "info": st.info, "error": st.error}.get(kind, st.info)(text)
page.run()

# The active model's test embeddings, in the background (ui/cache.py): Retrieval opens at once.
_ctx = state.context()
if _ctx.model is not None and not _ctx.model.own:  # an embeddings file has its vectors already
    from ui import cache

    cache.warm_test_embeddings(_ctx.model.path, _ctx.model.cid, _ctx.dataset)

if "torch" not in sys.modules:
    # The Overview page draws without PyTorch (its import takes 2-3 s); import it now, in the
    # background, so whichever page the visitor opens next does not wait for it.
    threading.Thread(target=__import__, args=("torch",), name="import-torch", daemon=True).start()
