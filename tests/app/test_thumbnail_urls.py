"""Thumbnails by URL: the scatter's images are PNG files served from ./static/ (Streamlit's static
file serving) and named in the chart spec by a number, not inlined as data URLs; the folder is
bounded. Checked as files, as chart specs, and in Chromium (the hover tooltip's image loads;
images drawn as the points load; an image's augmented views are placed on the map)."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ui import charts
from ui import images as ui_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def thumbs_dir(tmp_path, monkeypatch):
    folder = tmp_path / "static" / "thumbs"
    monkeypatch.setattr(ui_images, "THUMBS_DIR", folder)
    return folder


def _images(n=6, c=1, side=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, side, side), dtype=np.uint8)


def _upscaled(img: np.ndarray, scale: int) -> np.ndarray:
    hwc = img.transpose(1, 2, 0)
    out = np.repeat(np.repeat(hwc, scale, 0), scale, 1)
    return out[..., 0] if out.shape[-1] == 1 else out


def test_files_hold_the_images_and_the_same_images_give_the_same_urls(thumbs_dir):
    for c in (1, 3):
        imgs = _images(c=c, seed=c)
        urls = ui_images.thumbnail_urls(imgs, scale=2, inline=False)
        assert len(urls) == len(imgs) and len(set(urls)) == len(imgs)
        for i, url in enumerate(urls):
            assert url.startswith("app/static/thumbs/") and url.endswith(f"/{i}.png")
            path = thumbs_dir / url[len("app/static/thumbs/"):]
            np.testing.assert_array_equal(np.asarray(Image.open(path)), _upscaled(imgs[i], 2))
        assert ui_images.thumbnail_urls(imgs, scale=2, inline=False) == urls
        assert ui_images.thumbnail_urls(imgs, scale=1, inline=False) != urls  # another scale, another set
    changed = _images(c=1, seed=1)
    changed[0, 0, 0, 0] ^= 1
    assert ui_images.thumbnail_urls(changed, 2, inline=False)[0] != ui_images.thumbnail_urls(_images(c=1, seed=1), 2,
                                                                                           inline=False)[0]
    assert not [p for p in thumbs_dir.iterdir() if p.name.startswith(".tmp")], "no half-written folder is left"


def test_inline_data_urls_hold_the_same_pixels(thumbs_dir):
    imgs = _images(n=3)
    urls = ui_images.thumbnail_urls(imgs, scale=2, inline=True)
    for img, url in zip(imgs, urls, strict=True):
        assert url.startswith("data:image/png;base64,")
        png = base64.b64decode(url.split(",", 1)[1])
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), _upscaled(img, 2))
    assert not thumbs_dir.exists(), "inline thumbnails write no files"


def test_read_only_folder_falls_back_to_data_urls(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(ui_images, "THUMBS_DIR", blocker / "thumbs")
    urls = ui_images.thumbnail_urls(_images(n=2), scale=2, inline=False)
    assert all(u.startswith("data:image/png;base64,") for u in urls)


def test_the_folder_is_bounded_least_recently_used_first(thumbs_dir):
    keys = []
    for seed in range(4):
        urls = ui_images.thumbnail_urls(_images(n=20, seed=seed), 2, inline=False)
        keys.append(urls[0].split("/")[3])
        folder = thumbs_dir / keys[-1]
        os.utime(folder, (1000 + seed, 1000 + seed))  # seed 0 used longest ago
    one_set = sum(p.stat().st_blocks * 512 for p in (thumbs_dir / keys[0]).iterdir())
    ui_images.thumbnail_urls(_images(n=20, seed=0), 2, inline=False)  # used just now, but older than 60 s: touched
    removed = ui_images.prune(keep=keys[3], max_bytes=2 * one_set)
    assert removed == [keys[1], keys[2]], "the two least recently used sets go, the one just used stays"
    assert sorted(p.name for p in thumbs_dir.iterdir()) == sorted([keys[0], keys[3]])
    gone = [f"app/static/thumbs/{keys[1]}/0.png"]
    assert not ui_images.thumbnails_present(gone) and ui_images.thumbnails_present([f"app/static/thumbs/{keys[0]}/0.png"])
    assert ui_images.thumbnails_present(["data:image/png;base64,xx"])


def _mnist_best_spec(inline: bool, as_images: bool = False) -> str:
    from cl.data import SPECS
    from cl.layouts import gallery_images, read_layouts

    data = read_layouts(ROOT / "checkpoints" / "mnist-best.safetensors")
    imgs = gallery_images("mnist")
    classes = list(SPECS["mnist"].classes)
    thumbs = ui_images.thumbnail_urls(imgs, 2, inline=inline)
    df = charts.scatter_frame(data["tsne"], np.arange(len(imgs)), data["labels"].astype(int), classes, None, thumbs)
    return json.dumps(charts.scatter(df, "class", classes, "t-SNE", as_images=as_images).to_dict(), separators=(",", ":"))


def test_chart_spec_names_thumbnails_by_number(thumbs_dir):
    inline = _mnist_best_spec(inline=True)
    by_url = _mnist_best_spec(inline=False)
    # mnist-best's shipped t-SNE of the 2,000-image MNIST test gallery: 1.18 MB inlined, ~0.12 MB by URL
    assert len(inline) > 1_000_000 and len(by_url) < 150_000, (len(inline), len(by_url))
    spec = json.loads(by_url)
    rows = next(iter(spec["datasets"].values()))
    assert len(rows) == 2000 and [r["thumb"] for r in rows[:3]] == [0, 1, 2] and "image" not in rows[0]
    calc = spec["transform"][0]["calculate"]
    assert calc.startswith("'app/static/thumbs/") and calc.endswith("+ datum.thumb + '.png'")
    assert {"field": "image", "type": "nominal"} in spec["encoding"]["tooltip"]
    images = json.loads(_mnist_best_spec(inline=False, as_images=True))
    assert images["mark"]["type"] == "image" and images["encoding"]["url"]["field"] == "image"


def test_views_map_joins_each_view_to_the_original(thumbs_dir):
    classes = ["a", "b"]
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    df = charts.scatter_frame(xy, np.arange(3), np.array([0, 1, 0]), classes, None,
                              ui_images.thumbnail_urls(_images(n=3), 2, inline=False))
    views = np.array([[0.5, 0.25], [1.5, 0.75]])
    spec = charts.views_map(df, (0.0, 0.0), views, ["data:image/png;base64,AA", "data:image/png;base64,BB"],
                            "data:image/png;base64,OO", classes, "PCA", "two views").to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["circle", "rule", "square", "image", "square", "image"]
    rows = {len(v): v for v in spec["datasets"].values()}
    assert [(r["x0"], r["y0"], r["x"], r["y"], r["image"]) for r in rows[2]] == [
        (0.0, 0.0, 0.5, 0.25, "data:image/png;base64,AA"), (0.0, 0.0, 1.5, 0.75, "data:image/png;base64,BB")]
    assert rows[1] == [{"x": 0.0, "y": 0.0, "image": "data:image/png;base64,OO"}]
    assert set(rows[3][0]) == {"x", "y", "class", "index"}, "the map under the views carries no thumbnails"
    rule = spec["layer"][1]["encoding"]
    assert (rule["x"]["field"], rule["y"]["field"], rule["x2"]["field"], rule["y2"]["field"]) == ("x0", "y0", "x", "y")


# ------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def server():
    from benchmarks.loadtest import CHROMIUM, app_server

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    pytest.importorskip("playwright.sync_api")
    env = {"CL_CHECKPOINTS_DIR": str(ROOT / "checkpoints")}
    env_saved = os.environ.pop("CL_DATA_DIR", None)  # the shipped 2,000-image gallery is the test split
    try:
        with app_server(env) as (url, _proc, _runs):
            yield url
    finally:
        if env_saved is not None:
            os.environ["CL_DATA_DIR"] = env_saved


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        yield b
        b.close()


def _open(browser, url, **context):
    from benchmarks.loadtest import wait_until_settled

    ctx = browser.new_context(**(context or {"viewport": {"width": 1400, "height": 1800}}))
    ctx.set_default_timeout(120_000)
    page = ctx.new_page()
    thumbs = []
    page.on("response", lambda r: thumbs.append(r) if "/app/static/thumbs/" in r.url else None)
    page.goto(f"{url}/embedding?dataset=mnist&model=mnist-best&method=tsne")
    wait_until_settled(page, 0.8, 180)
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for()
    return page, thumbs


def _hover_until_tooltip_image(page, timeout=60.0) -> bool:
    chart = page.locator("[data-testid=stVegaLiteChart]").first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2
    t0 = time.time()
    for radius in range(0, int(box["height"] / 2), 4):
        for k in range(max(1, radius // 2)):
            if time.time() - t0 > timeout:
                return False
            a = 2 * np.pi * k / max(1, radius // 2)
            page.mouse.move(cx + radius * np.cos(a), cy + radius * np.sin(a))
            if page.evaluate("() => { const t = document.getElementById('vg-tooltip-element');"
                             " return !!(t && t.classList.contains('visible') && t.querySelector('img')); }"):
                return True
    return False


def _tooltip_image_loaded(page) -> dict:
    page.wait_for_function("() => { const i = document.querySelector('#vg-tooltip-element img');"
                           " return i && i.complete; }", timeout=20_000)
    return page.evaluate("() => { const i = document.querySelector('#vg-tooltip-element img');"
                         " return {src: i.getAttribute('src'), width: i.naturalWidth, height: i.naturalHeight}; }")


@pytest.mark.browser
def test_the_tooltip_image_loads_by_url(browser, server):
    page, thumbs = _open(browser, server)
    assert not thumbs, "no thumbnail is fetched before one is shown"
    assert _hover_until_tooltip_image(page), "hovering a point shows a tooltip with an image"
    img = _tooltip_image_loaded(page)
    # Vega's loader resolves the relative URL against the page
    assert img["src"].startswith(f"{server}/app/static/thumbs/") and img["src"].endswith(".png"), img
    assert (img["width"], img["height"]) == (56, 56), "the image loaded: a 28x28 digit upscaled twice"
    with urllib.request.urlopen(img["src"], timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
        assert np.asarray(Image.open(io.BytesIO(r.read()))).shape == (56, 56)
    assert 1 <= len(thumbs) <= 40 and all(r.status in (200, 304) for r in thumbs), "only hovered images are fetched"
    page.context.close()


_DARK_PIXELS = """() => {
  const chart = document.querySelector('[data-testid=stVegaLiteChart]');
  const svgImages = chart.querySelectorAll('g.mark-image image').length;
  if (svgImages) return {svg: svgImages, dark: 0};
  const c = chart.querySelector('canvas');
  if (!c) return {svg: 0, dark: 0};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let dark = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200 && d[i] < 40 && d[i + 1] < 40 && d[i + 2] < 40) dark++;
  return {svg: 0, dark: dark, pixels: c.width * c.height};
}"""


@pytest.mark.browser
@pytest.mark.parametrize("device", ["laptop", "phone"])
def test_images_as_points_are_drawn_on_laptop_and_phone(browser, server, device):
    """2,000 MNIST digits (white on black) drawn as the points: the map turns mostly dark where
    the coloured dots were, without a request per point."""
    from benchmarks.loadtest import PHONE, wait_until_settled

    page, thumbs = _open(browser, server, **({"viewport": {"width": 1280, "height": 900}} if device == "laptop"
                                              else PHONE))
    page.locator("[data-testid=stVegaLiteChart]").first.scroll_into_view_if_needed()
    dots = page.evaluate(_DARK_PIXELS)
    page.get_by_text("Images as points").first.click()
    t0 = time.time()
    drawn = dots
    while time.time() - t0 < 120:
        drawn = page.evaluate(_DARK_PIXELS)
        if drawn["svg"] >= 2000 or drawn["dark"] > 20 * max(dots["dark"], 1000):
            break
        page.wait_for_timeout(100)
    seconds = time.time() - t0
    wait_until_settled(page, 0.5, 60)
    print(f"{device}: 2,000 images drawn {seconds:.1f} s after the switch ({drawn}; dots: {dots})")
    assert drawn["svg"] >= 2000 or drawn["dark"] > 20 * max(dots["dark"], 1000), (drawn, dots)
    assert len(thumbs) <= 5, f"the point images come with the chart, not as {len(thumbs)} requests"
    page.locator("[data-testid=stVegaLiteChart]").first.scroll_into_view_if_needed()
    page.screenshot(path=str(_shots() / f"embedding-images-as-points-{device}.png"))
    page.context.close()


@pytest.mark.browser
def test_augmented_views_are_placed_on_the_map(browser, server):
    from benchmarks.loadtest import wait_until_settled

    page, _thumbs = _open(browser, server)
    page.get_by_text("Show an image's augmented views on the map").first.click()
    wait_until_settled(page, 0.8, 180)
    assert page.locator("[data-testid=stException]").count() == 0
    page.get_by_text("land among another class").first.wait_for(timeout=60_000)
    assert page.get_by_text("Red frame: the original, test image #0 (").count() >= 1
    # the index control (what a phone uses instead of clicking a point) picks another image
    box = page.get_by_role("spinbutton", name="Test image (0-1,999)")
    box.fill("1234")
    box.press("Enter")
    page.get_by_text("test image #1234 (").first.wait_for(timeout=60_000)
    wait_until_settled(page, 0.8, 120)
    assert page.locator("[data-testid=stVegaLiteChart]").count() >= 2
    page.locator("[data-testid=stVegaLiteChart]").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(_shots() / "embedding-augmented-views.png"))
    page.context.close()


def _shots() -> Path:
    folder = ROOT / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
