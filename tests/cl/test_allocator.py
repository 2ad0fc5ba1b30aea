"""cl.allocator: glibc malloc settings. Each check runs in a fresh process: the settings are
process-wide and would leak into other tests."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cl import allocator

ROOT = Path(__file__).resolve().parents[2]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A training step's pattern: allocate and write a 64 MB and a 32 MB tensor, free both; 12 steps.
# Reports the minor page faults of the last 6 (the heap needs a few steps to hold holes that fit:
# torch asks for aligned blocks, a little larger than the block just freed).
FAULTS = """
import resource, sys
sys.path.insert(0, {root!r})
from cl import allocator
ok = {setup}
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(12):
    if step == 6:
        before = faults()
    x, y = torch.ones(16 * 1024 * 1024), torch.ones(8 * 1024 * 1024)
    del x, y
print(ok, faults() - before)
"""


def _faults(setup: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS.format(root=str(ROOT), setup=setup)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_keep_freed_memory_reuses_large_blocks_instead_of_remapping_them():
    _, default_faults = _faults("None")
    ok, kept_faults = _faults("allocator.keep_freed_memory()")
    assert ok
    pages = 6 * 96 * 1024 * 1024 // 4096
    # glibc's default maps each 64 MB block afresh: every page faults again on first write
    assert default_faults > 0.8 * pages, default_faults
    # kept on the heap, the same pages are reused
    assert kept_faults < 0.05 * pages, kept_faults


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_other_settings_are_accepted_by_glibc():
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from cl import allocator; "
            "print(allocator.limit_arenas(2), allocator.fixed_mmap_threshold(256 * 1024), "
            "allocator.return_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_without_glibc_every_setting_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    assert not allocator.keep_freed_memory()
    assert not allocator.limit_arenas(2)
    assert not allocator.fixed_mmap_threshold(1024)
    assert not allocator.return_freed_memory()
