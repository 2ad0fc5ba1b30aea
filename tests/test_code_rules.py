"""Rules of the code base that ruff cannot state: every silenced lint names its rule and says why."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
WITH_REASON = re.compile(r":\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+(-\s+|\()\S.{5,}")


def _tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line]


def test_every_noqa_names_its_rule_and_a_reason():
    bare = []
    for path in _tracked_python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = NOQA.search(line)
            if m and not WITH_REASON.match(m.group("rest")):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not bare, "a noqa without `: CODE - reason`:\n" + "\n".join(bare)


def test_the_rule_catches_a_bare_noqa():
    marker = "# no" + "qa"  # split, so that this file's own lines hold no bare marker
    assert not WITH_REASON.match(NOQA.search(f"x = 1  {marker}: F401").group("rest"))
    assert not WITH_REASON.match(NOQA.search(f"x = 1  {marker}").group("rest"))
    assert WITH_REASON.match(NOQA.search(f"x = 1  {marker}: F401 - re-exported for the pages").group("rest"))
