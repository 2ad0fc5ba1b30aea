"""Screenshots of every page at 1400x1000 (desktop) and 390x844 (phone, touch) into docs/screenshots/.

    python scripts/screenshots.py [--dataset mnist --model mnist-best] [--out docs/screenshots]
    python scripts/screenshots.py --map-trust   # only docs/screenshots/readme-map-trust.png (and a phone one)
    python scripts/screenshots.py --selection --dataset digits --model digits-best   # docs/screenshots/app-selection.png
    python scripts/screenshots.py --own-embeddings FILE.npz [--own-images IMAGES.zip]   # docs/screenshots/app-own-embeddings.png

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

from benchmarks.loadtest import CHROMIUM, PHONE, app_server, settle_seconds  # noqa: E402 - after sys.path gets the repository root

PAGES = ["", "study", "train", "augmentations", "embedding", "metrics", "retrieval", "compare"]
SIZES = {"desktop": {"viewport": {"width": 1400, "height": 1000}}, "phone": PHONE}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="mnist-best")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    p.add_argument("--map-trust", action="store_true",
                   help="only the Embedding page coloured by neighbours kept, with a tapped image's neighbours")
    p.add_argument("--selection", action="store_true",
                   help="only the Embedding page reopening a selection from its link (its images and csv)")
    p.add_argument("--own-embeddings", metavar="FILE",
                   help="only the Embedding page on this embeddings file (.npz/.parquet), kept as an upload would be")
    p.add_argument("--own-images", metavar="ZIP", help="with --own-embeddings: the zip of its images")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    env_extra, own_dataset = {}, None
    if args.own_embeddings:
        env_extra["CL_CACHE_DIR"], own_dataset = keep_own_embeddings(args.own_embeddings, args.own_images)
    with app_server(env_extra) as (url, _proc, _runs), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        if own_dataset:
            page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
            page.goto(f"{url}/embedding?dataset={own_dataset}&method=tsne", timeout=180_000)
            settle_seconds(page, time.time(), 240)
            page.wait_for_selector("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg",
                                   timeout=90_000)
            time.sleep(2.0)
            hover_a_point(page)
            path = out / "app-own-embeddings.png"
            page.screenshot(path=str(path))
            print(path)
            browser.close()
            return 0
        if args.selection:
            print(selection_shot(browser.new_context(viewport={"width": 1400, "height": 1900}).new_page(), url, args, out))
            browser.close()
            return 0
        if args.map_trust:
            tall = {"desktop": {"viewport": {"width": 1400, "height": 1750}}, "phone": PHONE}  # map, sentence, neighbours
            for size, options in tall.items():
                print(map_trust_shot(browser.new_context(**options).new_page(), url, args, out, size))
            browser.close()
            return 0
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


def hover_a_point(page) -> bool:
    """Move the mouse over the map until a point's tooltip (its image and file) shows."""
    box = page.locator("[data-testid=stVegaLiteChart]").first.bounding_box()
    if box is None:
        return False
    for fy in (0.5, 0.4, 0.6, 0.3, 0.7):
        for fx in (0.45, 0.5, 0.55, 0.4, 0.6, 0.35, 0.65):
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            time.sleep(0.3)
            if page.locator("#vg-tooltip-element.visible").count():
                time.sleep(1.0)  # the thumbnail loads
                return True
    return False


def keep_own_embeddings(file: str, images: str | None) -> tuple[str, str]:
    """Keep an embeddings file (and its images) in a fresh cache folder as the app keeps an upload;
    returns ``(cache folder, data-set name)``."""
    import tempfile

    from cl.own_embeddings import load_images, load_own_embeddings, store_own_embeddings

    cache = tempfile.mkdtemp(prefix="cl-shots-cache-")
    own = load_own_embeddings(file)
    pictures = load_images(own, images) if images else None
    key = store_own_embeddings(own, pictures, Path(cache) / "embeddings", Path(file).read_bytes())
    return cache, f"embeddings:{key}"


def selection_shot(page, url: str, args, out: Path) -> Path:
    """The Embedding page opened from a link that carries a selection (the first 120 test images)
    narrowed to two classes: the map, the filters, the selected images with their files, the csv."""
    from ui.selection import encode

    page.goto(f"{url}/embedding?dataset={args.dataset}&model={args.model}&method=tsne&sel={encode(range(120))}"
              "&cls=3.8", timeout=180_000)
    settle_seconds(page, time.time(), 240)
    page.wait_for_selector("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg", timeout=90_000)
    time.sleep(2.0)
    path = out / "app-selection.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def map_trust_shot(page, url: str, args, out: Path, size: str) -> Path:
    """The Embedding page coloured by neighbours kept, after a tap on one point of the map (a click
    on a desktop): its true neighbours beside the map's."""
    page.goto(f"{url}/embedding?dataset={args.dataset}&model={args.model}&method=tsne", timeout=180_000)
    settle_seconds(page, time.time(), 240)
    page.get_by_text("neighbours kept", exact=True).first.click()
    settle_seconds(page, time.time(), 240)
    canvas = page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first
    try:
        canvas.wait_for(timeout=90_000)
    except Exception:
        page.screenshot(path=str(out / f"{size}-map-trust-failed.png"), full_page=True)
        raise
    time.sleep(1.5)
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.45
    if size == "phone":
        page.touchscreen.tap(x, y)
    else:
        page.mouse.click(x, y)
    settle_seconds(page, time.time(), 240)
    if size == "phone":  # the tapped image's neighbours, below the map
        page.get_by_text("nearest neighbours in the model's space and on the map").first.scroll_into_view_if_needed()
    time.sleep(1.5)
    path = out / ("readme-map-trust.png" if size == "desktop" else "phone-map-trust.png")
    page.screenshot(path=str(path), full_page=True)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
