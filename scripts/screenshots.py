"""Screenshots of every page at 1400x1000 (desktop) and 390x844 (phone, touch) into docs/screenshots/.

    python scripts/screenshots.py [--dataset mnist --model mnist-best] [--out docs/screenshots]

Starts the app on a free port (benchmarks.loadtest.app_server), opens each page's deep link in
Chromium (/usr/bin/chromium) and waits until the script has settled and any chart is drawn.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadtest import CHROMIUM, PHONE, app_server, settle_seconds  # noqa: E402

PAGES = ["", "study", "train", "augmentations", "embedding", "metrics", "retrieval", "compare"]
SIZES = {"desktop": {"viewport": {"width": 1400, "height": 1000}}, "phone": PHONE}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="mnist-best")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with app_server() as (url, _proc, _runs), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        for size, options in SIZES.items():
            page = browser.new_context(**options).new_page()
            for name in PAGES:
                query = f"?dataset={args.dataset}&model={args.model}" + ("&method=tsne" if name == "embedding" else "")
                page.goto(f"{url}/{name}{query}", timeout=180_000)
                settle_seconds(page, time.time(), 240)
                try:  # a chart draws 1-3 s after the script finished
                    page.wait_for_selector("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg",
                                           timeout=8_000)
                except Exception:  # noqa: BLE001 - a page without a chart
                    pass
                time.sleep(1.0)
                path = out / f"{size}-{name or 'overview'}.png"
                page.screenshot(path=str(path))
                print(path)
        browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
