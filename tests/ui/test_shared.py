"""ui.shared: the one bounded cache every server-wide cache uses."""

from __future__ import annotations

import threading

import pytest

from ui import shared
from ui.shared import BoundedCache


def test_the_least_recently_used_entry_goes_first():
    cache: BoundedCache[str] = BoundedCache("test", max_entries=3)
    for k in "abc":
        cache.put(k, k.upper())
    assert cache.get("a") == "A"  # a is now the most recently used: b is the oldest
    cache.put("d", "D")
    assert "b" not in cache and [k in cache for k in "acd"] == [True, True, True] and len(cache) == 3
    cache.put("c", "C2")  # replacing is no new entry
    assert len(cache) == 3 and cache.get("c") == "C2" and cache.get("missing") is None


def test_a_size_bound_counts_what_sizeof_says_and_keeps_the_newest():
    cache: BoundedCache[bytes] = BoundedCache("test", max_size=10, sizeof=len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.size == 8 and len(cache) == 2
    cache.put("c", b"123")  # 11 > 10: a goes
    assert "a" not in cache and cache.size == 7
    cache.put("huge", b"x" * 50)  # larger than the bound alone: kept, everything else goes
    assert len(cache) == 1 and cache.get("huge") == b"x" * 50 and cache.size == 50
    cache.clear()
    assert len(cache) == 0 and cache.size == 0


def test_a_cache_states_one_bound():
    for bad in ({}, {"max_entries": 2, "max_size": 10, "sizeof": len}, {"max_size": 10}):
        with pytest.raises(ValueError, match="either max_entries, or max_size with sizeof"):
            BoundedCache("test", **bad)


def test_threads_at_once_keep_the_bound_and_the_size_exact():
    cache: BoundedCache[bytes] = BoundedCache("test", max_size=1000, sizeof=len)

    def work(t: int) -> None:
        for i in range(500):
            cache.put((t, i % 40), bytes(i % 50 + 1))
            cache.get((t, (i * 7) % 40))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    kept = [cache.get(k) for k in [(t, i) for t in range(6) for i in range(40)]]
    assert cache.size == sum(len(v) for v in kept if v is not None) <= 1000


def test_every_server_wide_cache_is_a_bounded_cache():
    for name in ("PNGS", "POINT_IMAGES", "WARM_EMBEDDINGS", "VEGA_SPECS"):
        assert isinstance(getattr(shared, name), BoundedCache), name
