"""Everything the app keeps for the whole server (every session sees it), named in one place.

Per-session state is :mod:`ui.state`'s. What outlives a session lives in one Python process and
is one of these:

Bounded caches, each a :class:`BoundedCache` defined below (least recently used go first):

- :data:`PNGS`: encoded gallery thumbnails (:mod:`ui.images`), at most 2,048;
- :data:`POINT_IMAGES`: the inline point images of a map, per image set (:mod:`ui.images`), 4 sets;
- :data:`WARM_EMBEDDINGS`: test embeddings computed ahead in the background (:mod:`ui.cache`), 4 models;
- :data:`VEGA_SPECS`: Vega-Lite specs of charts built once for everyone (:mod:`ui.vega`), 64 MB.

Streamlit's own caches, bounded by their ``max_entries`` (and some by ``ttl``): the functions
decorated with ``st.cache_data`` / ``st.cache_resource`` in :mod:`ui.cache` (models, embeddings,
evaluations, projections, thumbnails) and ``functools.lru_cache`` on pure functions of files in
:mod:`ui.models`, :mod:`ui.cache` (shipped layouts) and :mod:`cl.layouts`, keyed by the files'
sizes and times so a rewritten file is a new entry.

Registries of things in progress, bounded by what they hold rather than by a count:

- :mod:`ui.jobs`' trainings (at most one per session, ``CL_MAX_TRAININGS`` running) and data-set
  downloads (one per data set);
- :data:`ui.demo.SESSIONS`: which live session owns which trained model, for the runs quota.

Caches hold values that are never changed after they are stored: a caller that gets one shares
it with every other session and must not modify it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """A thread-safe map that forgets its least recently used entries beyond ``max_entries``
    entries, or beyond ``max_size`` in total as ``sizeof`` measures each value (the newest entry
    is always kept, however large)."""

    def __init__(self, name: str, max_entries: int | None = None, max_size: int | None = None,
                 sizeof: Callable[[Any], int] | None = None):
        if (max_entries is None) == (max_size is None) or (max_size is not None and sizeof is None):
            raise ValueError("a BoundedCache needs either max_entries, or max_size with sizeof")
        self.name = name
        self.max_entries = max_entries
        self.max_size = max_size
        self._sizeof = sizeof
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value kept under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` (replacing what was there), then forget the least recently
        used entries beyond the bound."""
        size = self._sizeof(value) if self._sizeof is not None else 1
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, size)
            self._size += size
            while len(self._items) > 1 and (
                    (self.max_entries is not None and len(self._items) > self.max_entries)
                    or (self.max_size is not None and self._size > self.max_size)):
                _key, (_value, dropped) = self._items.popitem(last=False)
                self._size -= dropped

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def size(self) -> int:
        """The total size of the kept values (their count without ``sizeof``)."""
        with self._lock:
            return self._size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


def _vega_spec_size(spec: dict) -> int:
    """About how many bytes a kept spec holds: its datasets (Arrow bytes) and the rest as text."""
    data = sum(len(v) if isinstance(v, (bytes, str)) else 1000 for v in (spec.get("datasets") or {}).values())
    return data + len(repr({k: v for k, v in spec.items() if k != "datasets"}))


PNGS: BoundedCache[bytes] = BoundedCache("gallery thumbnails (PNG)", max_entries=2048)
POINT_IMAGES: BoundedCache[list[str]] = BoundedCache("point images of a map, per image set", max_entries=4)
# at most 10,000 x 128 float32 = 5 MB each
WARM_EMBEDDINGS: BoundedCache[Any] = BoundedCache("test embeddings computed ahead", max_entries=4)
VEGA_SPECS: BoundedCache[dict] = BoundedCache("Vega-Lite specs", max_size=64 * 2**20, sizeof=_vega_spec_size)
