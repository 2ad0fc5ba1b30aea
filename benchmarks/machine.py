"""The machine a bench ran on: CPU, memory, versions, load and a matmul throughput probe."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


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


