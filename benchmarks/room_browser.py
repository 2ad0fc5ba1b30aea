"""The live room in real browsers: a presenter (1400x1000) opens a room, a phone (390x844, touch)
draws a digit on the canvas and sends it, and the presenter's map shows it. Screenshots of both.

    python -m benchmarks.room_browser URL --out docs/screenshots [--phones 1]

URL is a running app (``streamlit run app.py`` or ``python -m deploy.local``); the room uses
the model chosen by ``?dataset=mnist&model=mnist-best``. Prints a JSON line with the seconds
from the phone's "Send" to the thumbnail on the presenter's map.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS, PHONE, wait_until_settled

PRESENTER = {"viewport": {"width": 1400, "height": 1000}}
# strokes of a few digits in canvas fractions
DIGITS = {"7": [[(0.2, 0.2), (0.8, 0.2), (0.45, 0.85)]], "1": [[(0.5, 0.15), (0.5, 0.85)]],
          "4": [[(0.6, 0.85), (0.6, 0.15), (0.2, 0.6), (0.8, 0.6)]],
          "0": [[(0.5, 0.15), (0.25, 0.35), (0.25, 0.65), (0.5, 0.85), (0.75, 0.65), (0.75, 0.35), (0.5, 0.15)]],
          "2": [[(0.25, 0.3), (0.5, 0.15), (0.75, 0.3), (0.25, 0.85), (0.8, 0.85)]],
          "3": [[(0.25, 0.2), (0.75, 0.3), (0.4, 0.5), (0.75, 0.7), (0.25, 0.85)]],
          "9": [[(0.7, 0.4), (0.3, 0.3), (0.35, 0.15), (0.7, 0.2), (0.7, 0.85)]]}


def draw(page, strokes, jitter: float = 0.0) -> None:
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60000)
    box = canvas.bounding_box()
    for stroke in strokes:
        stroke = [(x + jitter, y - jitter / 2) for x, y in stroke]
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


def shown_on_map(page) -> int:
    return int(page.evaluate("""() => {
        for (const el of document.querySelectorAll('*')) {
            const root = el.shadowRoot;
            const c = root ? root.querySelector('canvas.room-map') : null;
            if (c) return Number(c.dataset.shown || 0);
        }
        const c = document.querySelector('canvas.room-map');
        return c ? Number(c.dataset.shown || 0) : -1;
    }"""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--out", default=None, help="folder for the screenshots")
    ap.add_argument("--phones", type=int, default=1)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(args.out) if args.out else None
    base = args.url.rstrip("/")
    figures: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        presenter = browser.new_context(**PRESENTER).new_page()
        presenter.goto(f"{base}/room?dataset=mnist&model=mnist-best", timeout=180000)
        wait_until_settled(presenter, timeout=180)
        presenter.get_by_role("button", name="Open a room").click()
        presenter.get_by_text("Room ", exact=False).first.wait_for(timeout=180000)
        wait_until_settled(presenter, timeout=180)
        code = presenter.locator("h2").filter(has_text="Room").first.inner_text().split()[-1]
        figures["room"] = code
        sends = []
        for i in range(args.phones):
            phone = browser.new_context(**PHONE).new_page()
            phone.goto(f"{base}/join?room={code}", timeout=180000)
            wait_until_settled(phone, timeout=180)
            digit = list(DIGITS)[i % len(DIGITS)]
            draw(phone, DIGITS[digit], jitter=0.04 * ((i // len(DIGITS)) % 3 - 1))
            time.sleep(1.0)  # the canvas sends its pixels when the pen lifts
            wait_until_settled(phone, timeout=60)
            phone.locator("[data-testid=stButtonGroup] button").nth(int(digit)).click()  # "what I meant"
            wait_until_settled(phone, timeout=60)
            before = shown_on_map(presenter)
            t0 = time.perf_counter()
            phone.get_by_role("button", name="Send").click()
            deadline = t0 + 30
            while shown_on_map(presenter) <= before and time.perf_counter() < deadline:
                time.sleep(0.05)
            sends.append(round(time.perf_counter() - t0, 2))
            phone.get_by_text("Sent as").first.wait_for(timeout=60000)
            wait_until_settled(phone, timeout=60)
            if out is not None and i == 0:
                out.mkdir(parents=True, exist_ok=True)
                phone.screenshot(path=str(out / "room-phone.png"), full_page=True)
        figures["send_to_map_s"] = sends
        figures["on_map"] = shown_on_map(presenter)
        time.sleep(1.5)
        if out is not None:
            presenter.screenshot(path=str(out / "room-presenter.png"), full_page=False)
        browser.close()
    print(json.dumps(figures))
    return 0 if figures["on_map"] >= args.phones else 1


if __name__ == "__main__":
    sys.exit(main())
