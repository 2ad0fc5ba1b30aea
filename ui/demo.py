"""Demo mode (``CL_DEMO=1``): what a hosted demo that a whole audience uses at once runs with.

- Training is capped: at most :data:`DEMO_TRAIN_SECONDS` per training (or
  ``$CL_APP_MAX_TRAIN_SECONDS`` if lower), at most 2 trainings at once server-wide, only on data
  sets whose training split is on the server (no downloads).
- No server paths are shown: saved models are named by file name only, and the shipped cards
  record data locations relative to the data directory.
- The runs folder is bounded on disk: ``$CL_RUNS_QUOTA_MB`` (default :data:`DEMO_QUOTA_MB` in
  demo mode, unbounded otherwise). When a training would take it over, the oldest runs of
  sessions that have ended are deleted first; a live session's own models are never deleted (if
  they alone fill the quota, new trainings are refused with a message).

This module holds no Streamlit state; the quota's choice of files is a pure function
(:func:`plan_eviction`) so it is tested directly.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

DEMO_TRAIN_SECONDS = 90.0
DEMO_MAX_TRAININGS = 2
DEMO_QUOTA_MB = 200.0
SESSION_TTL_S = 30 * 60  # a session not seen for this long has ended (its tab is gone)


def enabled() -> bool:
    return os.environ.get("CL_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


def _float_env(name: str) -> float | None:
    try:
        value = float(os.environ.get(name, "") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def max_train_seconds() -> float | None:
    """$CL_APP_MAX_TRAIN_SECONDS; in demo mode never more than DEMO_TRAIN_SECONDS."""
    value = _float_env("CL_APP_MAX_TRAIN_SECONDS")
    if enabled():
        return min(value or DEMO_TRAIN_SECONDS, DEMO_TRAIN_SECONDS)
    return value


def max_trainings() -> int:
    try:
        value = max(1, int(os.environ.get("CL_MAX_TRAININGS", "2")))
    except ValueError:
        value = 2
    return min(value, DEMO_MAX_TRAININGS) if enabled() else value


def quota_bytes() -> int | None:
    mb = _float_env("CL_RUNS_QUOTA_MB")
    if mb is None and enabled():
        mb = DEMO_QUOTA_MB
    return int(mb * 1e6) if mb else None


def show_path(path: str | os.PathLike) -> str:
    """How a server file is named to a visitor: its file name in demo mode."""
    return Path(path).name if enabled() else str(path)


def scrub(text: str) -> str:
    """A message for a visitor: in demo mode the server's folders are named by role, not path."""
    if not enabled():
        return text
    from cl.archive import cache_dir
    from cl.data import resolve_data_dir

    from .paths import APP_ROOT, runs_dir

    folders = ((cache_dir(), "<cache>"), (resolve_data_dir(), "<data-dir>"), (runs_dir(), "<runs>"),
               (APP_ROOT, "<app>"))
    # Absolute forms only: a relative folder such as "data" is also a word ("data set", "--data-dir").
    names: dict[str, str] = {}
    for folder, name in folders:
        for form in (str(folder), str(Path(folder).resolve())):
            if os.path.isabs(form) and len(form) > 1:
                names.setdefault(form, name)
    if not names:
        return text
    # One pass, longest first (one folder may lie inside another), so a replacement is never
    # scanned again; a path ends at a separator, a quote, a space or the end of the text.
    alternatives = "|".join(re.escape(f) for f in sorted(names, key=len, reverse=True))
    pattern = re.compile("(" + alternatives + r")(?=$|[/\\\s'\",:;)\]]|\.(?:\s|$))")
    return pattern.sub(lambda m: names[m.group(1)], text)


@dataclass(frozen=True)
class RunFile:
    path: str
    size: int
    mtime: float
    owner: str | None  # session id that trained it, None when unknown (an earlier server)


def plan_eviction(files: list[RunFile], live_sessions: set[str], quota: int, incoming: int = 0) -> tuple[list[str], bool]:
    """Which files to delete so ``sum(sizes) + incoming <= quota``, and whether that is reached.

    Only files of sessions that have ended (or of unknown owners) may go, oldest first; files of
    live sessions always stay."""
    total = sum(f.size for f in files) + incoming
    doomed: list[str] = []
    for f in sorted((f for f in files if f.owner not in live_sessions), key=lambda f: f.mtime):
        if total <= quota:
            break
        doomed.append(f.path)
        total -= f.size
    return doomed, total <= quota


class SessionRegistry:
    """Server-wide record of which sessions are alive (seen within SESSION_TTL_S) and which run
    files each one made."""

    def __init__(self, ttl: float = SESSION_TTL_S):
        import threading

        self.ttl = ttl
        self._seen: dict[str, float] = {}
        self._owner: dict[str, str] = {}
        self._lock = threading.Lock()

    def touch(self, session: str) -> None:
        with self._lock:
            self._seen[session] = time.time()

    def own(self, session: str, path: str | os.PathLike) -> None:
        with self._lock:
            self._owner[str(Path(path).resolve())] = session

    def live(self) -> set[str]:
        now = time.time()
        with self._lock:
            for s in [s for s, t in self._seen.items() if now - t > self.ttl]:
                del self._seen[s]
            return set(self._seen)

    def owner(self, path: str | os.PathLike) -> str | None:
        with self._lock:
            return self._owner.get(str(Path(path).resolve()))


SESSIONS = SessionRegistry()


def _run_companions(checkpoint: Path) -> list[Path]:
    """The files the app keeps beside a run: its map, its record and its replay (ui.jobs)."""
    return [checkpoint.parent / "layouts" / f"{checkpoint.stem}.npz",
            checkpoint.with_name(f"{checkpoint.stem}.run.json"), checkpoint.with_name(f"{checkpoint.stem}.replay.npz")]


def run_files(folder: Path) -> list[RunFile]:
    out = []
    for p in Path(folder).glob("*.safetensors"):
        try:
            st = p.stat()
        except OSError:
            continue
        size = st.st_size
        for extra in _run_companions(p):  # a run's map, record and replay count with it and go with it
            try:
                size += extra.stat().st_size
            except OSError:
                pass
        out.append(RunFile(str(p), size, st.st_mtime, SESSIONS.owner(p)))
    return out


def enforce_quota(folder: Path, incoming: int = 0) -> tuple[list[str], bool]:
    """Delete the oldest runs of ended sessions until the folder (plus ``incoming`` bytes) fits the
    quota; return what was deleted and whether it fits. No quota: nothing happens."""
    quota = quota_bytes()
    if quota is None:
        return [], True
    doomed, fits = plan_eviction(run_files(folder), SESSIONS.live(), quota, incoming)
    deleted = []
    for path in doomed:
        try:
            os.remove(path)
            deleted.append(path)
        except OSError:
            continue
        for extra in _run_companions(Path(path)):
            try:
                os.remove(extra)
            except OSError:
                pass
    return deleted, fits
