"""Where the app's files live: the shipped checkpoints and the runs folder (no other ui imports)."""

from __future__ import annotations

import os
from pathlib import Path

from cl.checkpoints import shipped_checkpoints_dir as checkpoints_dir

APP_ROOT = Path(__file__).resolve().parent.parent


def runs_dir() -> Path:
    path = Path(os.environ.get("CL_RUNS_DIR") or "runs").expanduser()
    try:
        if path.resolve() == checkpoints_dir().resolve():
            # never write over shipped checkpoints, whatever the environment says
            path = path / "runs"
    except OSError:
        pass
    return path
