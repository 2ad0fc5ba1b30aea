"""A room full of visitors: drive a real app server with many browser sessions at once.

``python -m benchmarks --only room [--visitors 40]`` starts ``streamlit run app.py`` on a free local
port, starts two trainings through the Train page, and then has ``visitors`` browser sessions
(one headless Chromium, one context each; every other one a 390x844 phone with touch) open deep
links at the same time: Overview, Embedding space, Metrics, Retrieval (uploading an image) and
Compare. It reports each page's settle time (Streamlit's script finished and stayed idle; the
idle window itself is not counted), p50/p95 per page and overall, every error (a Python
exception shown on the page, a failed navigation, a page that never settles), and the server's
peak resident memory (its whole process tree, sampled every 0.2 s).

``python -m benchmarks --only links`` measures "instant": the deep link
``embedding?dataset=mnist&model=mnist-best&method=tsne`` as the first visit of a freshly started
server (several fresh servers), then every page of every shipped model as a first visit (a new
browser session each) on one server.

Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .common import percentiles

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium: Playwright's own browser download fails offline
# Headless Chromium as root in a container: no sandbox, no GPU, /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
STABLE_S = 0.8
ROOM_PAGES = [("overview", "?dataset=mnist&model=mnist-best"),
              ("embedding", "embedding?dataset=mnist&model=mnist-best&method=tsne"),
              ("metrics", "metrics?dataset=mnist&model=mnist-best"),
              ("retrieval", "retrieval?dataset=mnist&model=mnist-best"),
              ("compare", "compare?dataset=mnist&model=mnist-best")]
CHART_PAGES = {"embedding", "metrics", "compare"}  # pages whose point is a chart: timed until it is drawn

# True once a Vega chart has marks on screen: SVG mark paths, or a canvas with a coloured pixel
# (marks use saturated colours; axes, grid and text are grey).
CHART_DRAWN_JS = """() => {
  for (const el of document.querySelectorAll('[data-testid=stVegaLiteChart]')) {
    if (el.querySelector('svg g.mark-symbol path, svg g.mark-rect path, svg g.mark-line path, svg g.mark-area path'))
      return true;
    for (const c of el.querySelectorAll('canvas')) {
      if (!c.width || !c.height) continue;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 28) {
        const r = d[i], g = d[i + 1], b = d[i + 2];
        if (d[i + 3] > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 60) return true;
      }
    }
  }
  return false;
}"""
APP_PAGES = ["", "study", "train", "augmentations", "embedding", "metrics", "retrieval", "compare"]


class Unavailable(Exception):
    """The browser or Playwright is missing here (a reason to skip, not a failure)."""


def _require_browser():
    if not Path(CHROMIUM).exists():
        raise Unavailable(f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Unavailable("playwright (python) is not installed") from None
    return sync_playwright


def torch_build(python: str = sys.executable) -> str:
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every, self.peak, self._stop_event = every, 0, threading.Event()

    def sample(self) -> int:
        import psutil

        total = 0
        try:
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        self.peak = max(self.peak, total)
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a Streamlit server started by the bench or the tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_settled(page, stable: float = 0.8, timeout: float = 120, poll_ms: int = 100) -> None:
    """Wait until a Streamlit page's script has not been running for ``stable`` seconds
    (Playwright page); raise ``TimeoutError`` after ``timeout`` seconds. The browser tests use it too."""
    t0 = time.time()
    since = None
    while time.time() - t0 < timeout:
        state = page.evaluate("() => { const a = document.querySelector('[data-testid=stApp]');"
                              " return a ? a.getAttribute('data-test-script-state') : 'none'; }")
        if state not in ("running", "rerunRequested", "none", None):
            since = since or time.time()
            if time.time() - since >= stable:
                return
        else:
            since = None
        page.wait_for_timeout(poll_ms)
    raise TimeoutError(f"the app did not settle within {timeout:.0f} s")


@contextmanager
def app_server(env_extra: dict | None = None, python: str = sys.executable, timeout: float = 120):
    """A fresh ``streamlit run app.py`` on 127.0.0.1; yields ``(url, process, runs_dir)``."""
    port = free_port()
    runs = Path(tempfile.mkdtemp(prefix="cl-room-runs-"))
    env = dict(os.environ)
    env.update({"CL_RUNS_DIR": str(runs), **(env_extra or {})})
    log = open(runs / "server.log", "w")
    proc = subprocess.Popen([python, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app server exited with code {proc.returncode} (log: {runs / 'server.log'})")
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if time.time() - t0 > timeout:
                    raise RuntimeError("the app server did not answer its health check") from None
                time.sleep(0.1)
        yield url, proc, runs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def settle_seconds(page, t_start: float, timeout: float) -> float:
    page.wait_for_selector("[data-testid=stApp]", timeout=timeout * 1000)
    wait_until_settled(page, stable=STABLE_S, timeout=timeout)
    return time.time() - t_start - STABLE_S


def page_errors(page) -> list[str]:
    out = []
    if page.locator("[data-testid=stException]").count():
        out.append("exception shown: " + page.locator("[data-testid=stException]").first.inner_text()[:200])
    return out


def png_bytes(seed: int = 0) -> bytes:
    """A small hand-drawn-looking digit as PNG (dark stroke on white, like a photo of paper)."""
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.new("L", (96, 96), 255)
    d = ImageDraw.Draw(img)
    r = np.random.default_rng(seed)
    d.ellipse([24 + r.integers(-5, 5), 14, 72, 82], outline=0, width=9)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _a_query_uploader(page):
    """The Retrieval page's query-image uploader: by its widget key where Streamlit renders one as a
    class, else the first uploader in the visible tab of the main area (the sidebar has its own)."""
    keyed = page.locator(".st-key-ret_upload input[type=file]")
    return keyed.or_(page.locator("[data-testid=stMain] [role=tabpanel]:not([hidden]) "
                                  "[data-testid=stFileUploader] input[type=file]")).first


# The browsers' priority in a room: below the server's pages (0), above its trainings (10, see
# ui.jobs): each visitor's browser stands for a phone or laptop, which does not run the server's
# trainings, and at the trainings' own level 20 renderers would wait on them.
BROWSER_NICENESS = 5
POLL_MS = 250  # a room's pages are checked 4 times a second: each check is a round trip through the one browser process


def _renice_browsers(server_pids: list[int], niceness: int = BROWSER_NICENESS) -> int:
    """Lower the priority of this machine's Chromium processes (not the servers' trees). In a real
    room each visitor's browser runs on their own device; here 40 of them share the server's
    cores, and rendering 40 pages would otherwise be measured as the server's slowness."""
    import psutil

    server = {pid for s in server_pids for pid in (s, *(c.pid for c in psutil.Process(s).children(recursive=True)))}
    n = 0
    for p in psutil.process_iter(["name", "pid"]):
        try:
            if p.info["pid"] not in server and "chrom" in (p.info["name"] or "").lower():
                p.nice(niceness)
                n += 1
        except psutil.Error:
            pass
    return n


def run_browser_room(visitors: int = 40, trainings: int = 2, timeout: float = 240, python: str = sys.executable,
             env_extra: dict | None = None, say=print, lower_browser_priority: bool = True,
             replicas: int = 0, pages: list | None = None, one_link_each: bool = False,
             browsers: int = 1) -> dict:
    """The room: ``trainings`` trainings, then ``visitors`` sessions at once (see the module doc).
    ``replicas``: the app runs as that many replicas behind deploy/'s nginx (:mod:`deploy.local`),
    and every visitor goes through nginx; 0: one ``streamlit run`` visited directly.
    ``pages``: the ``(name, deep link)`` pairs (default :data:`ROOM_PAGES`), each visitor opening
    them all in turn, or with ``one_link_each`` only ``pages[i % len(pages)]`` (a room that opens
    the speaker's link once). ``browsers``: Chromium processes the visitors are spread over (one by
    default; 5 measured no faster on 2 cores).

    All visitors share one browser process (a context each, as separate people would have) and
    are driven concurrently through Playwright's async API: 40 browser processes would measure
    the load generator, not the server. On the chart pages (:data:`CHART_PAGES`) each visit is
    also timed until a chart is drawn (:data:`CHART_DRAWN_JS`), what the person came for."""
    import asyncio

    import psutil

    _require_browser()
    from playwright.async_api import async_playwright

    pages = list(pages or ROOM_PAGES)
    result: dict = {"visitors": visitors, "phones": visitors // 2, "trainings": trainings,
                    "browser_niceness": BROWSER_NICENESS if lower_browser_priority else 0,
                    "torch_build": torch_build(python), "pages": [p for p, _ in pages or ROOM_PAGES],
                    "one_link_each": one_link_each, "browser_processes": max(1, browsers),
                    "servers": f"{replicas} replicas behind nginx" if replicas else "one streamlit process"}
    with _room_servers(env_extra, python, replicas) as (url, pids, direct):
        samplers = [RssSampler(pid) for pid in pids]
        for sampler in samplers:
            sampler.start()

        async def main():
            async with async_playwright() as pw:
                launched = [await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=list(CHROMIUM_ARGS)) for _ in range(max(1, browsers))]
                browser = launched[0]
                # A room meets a server that has been up a while (torch imported, the models' test
                # embeddings and maps made), not a cold one: every link once on every server, each
                # replica on its own port (through the proxy a new visitor may land on either).
                result["warmup_errors"] = await _a_warm(browser, direct, [link for _, link in pages], timeout)
                for pid in pids:
                    await asyncio.to_thread(wait_idle, psutil.Process(pid), 0.05, 1.0, timeout)
                if lower_browser_priority:
                    _renice_browsers(pids)
                trainers = []
                for _ in range(trainings):
                    trainers.append(await _a_start_training(browser, url, "digits", 30, timeout))
                say(f"[room] {trainings} training(s) running; {visitors} visitors start")
                records: list = []
                t0 = time.time()
                await asyncio.gather(*[_a_visitor(launched[i % len(launched)], url, i, i % 2 == 1, timeout, records,
                                                  [pages[i % len(pages)]] if one_link_each else pages)
                                       for i in range(visitors)])
                wall = time.time() - t0
                still = 0
                for ctx in trainers:
                    page = ctx.pages[0]
                    still += await page.get_by_text("Cancel training").count()
                    await ctx.close()
                for b in launched:
                    await b.close()
                return records, wall, still

        records, wall, still_training = asyncio.run(main())
        for sampler in samplers:
            sampler.stop()
        result["peak_rss_mb"] = round(max(sampler.peak for sampler in samplers) / 2**20, 1)
        result["peak_rss_mb_per_process"] = [round(sampler.peak / 2**20, 1) for sampler in samplers]
        result["wall_s"] = round(wall, 2)
        result["trainings_still_running_at_end"] = still_training
    errors = [f"visitor {r['visitor']} {r['page']}: {e}" for r in records for e in r["errors"]]
    settled = [r for r in records if "settle_s" in r]
    result["errors"] = len(errors)
    result["error_list"] = errors[:50]
    result["visits"] = len(records)
    result["settled"] = len(settled)
    result["all_settled"] = len(settled) == (visitors if one_link_each else visitors * len(pages))
    result["settle"] = {"all": percentiles([r["settle_s"] for r in settled]),
                        **{p: percentiles([r["settle_s"] for r in settled if r["page"] == p]) for p, _ in pages},
                        "phone": percentiles([r["settle_s"] for r in settled if r["phone"]]),
                        "desktop": percentiles([r["settle_s"] for r in settled if not r["phone"]]),
                        "upload": percentiles([r["upload_s"] for r in records if "upload_s" in r])}
    drawn = [r for r in records if "chart_drawn_s" in r]
    result["chart_drawn"] = {"all": percentiles([r["chart_drawn_s"] for r in drawn]),
                             **{p: percentiles([r["chart_drawn_s"] for r in drawn if r["page"] == p])
                                for p, _ in pages if p in CHART_PAGES},
                             "phone": percentiles([r["chart_drawn_s"] for r in drawn if r["phone"]]),
                             "desktop": percentiles([r["chart_drawn_s"] for r in drawn if not r["phone"]])}
    return result


@contextmanager
def _room_servers(env_extra: dict | None, python: str, replicas: int):
    """``(url, server pids, each server's own url)``: one ``streamlit run``, or ``replicas`` behind
    nginx (the replicas' pids and ports; nginx's own few milliseconds per request are not sampled)."""
    if replicas:
        from deploy.local import Cluster

        with Cluster(replicas, env_extra=env_extra, python=python, say=lambda _m: None) as cluster:
            yield cluster.url, [r.pid for r in cluster.replicas], [f"http://127.0.0.1:{r.port}" for r in cluster.replicas]
    else:
        with app_server(env_extra, python=python) as (url, proc, _runs):
            yield url, [proc.pid], [url]


async def _a_warm(browser, urls: list[str], links: list[str], timeout: float) -> list[str]:
    errors = []
    for u in urls:
        ctx = await browser.new_context(**DESKTOP)
        page = await ctx.new_page()
        for link in links:
            try:
                await page.goto(f"{u}/{link}", timeout=timeout * 1000)
                await _a_settle(page, time.time(), timeout)
            except Exception as err:  # noqa: BLE001 - reported with the room's figures
                errors.append(f"warm-up {u}/{link}: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
        await ctx.close()
    return errors


async def _a_settle(page, t_start: float, timeout: float) -> float:
    await page.wait_for_selector("[data-testid=stApp]", timeout=timeout * 1000)
    since = None
    while time.time() - t_start < timeout:
        state = await page.evaluate("() => { const a = document.querySelector('[data-testid=stApp]');"
                                    " return a ? a.getAttribute('data-test-script-state') : 'none'; }")
        if state not in ("running", "rerunRequested", "none", None):
            since = since or time.time()
            if time.time() - since >= STABLE_S:
                return since - t_start
        else:
            since = None
        await page.wait_for_timeout(POLL_MS)
    raise TimeoutError(f"the page did not settle within {timeout:.0f} s")


async def _a_start_training(browser, url: str, dataset: str, epochs: int, timeout: float):
    ctx = await browser.new_context(**DESKTOP)
    page = await ctx.new_page()
    await page.goto(f"{url}/train?dataset={dataset}", timeout=timeout * 1000)
    await _a_settle(page, time.time(), timeout)
    box = page.get_by_label("Epochs")
    await box.fill(str(epochs))
    await box.press("Tab")
    await page.get_by_role("button", name="Start training").click()
    await page.get_by_text("Cancel training").first.wait_for(timeout=timeout * 1000)
    return ctx


async def _a_visitor(browser, url: str, i: int, phone: bool, timeout: float, out: list,
                     pages: list | None = None) -> None:
    ctx = await browser.new_context(**(PHONE if phone else DESKTOP), reduced_motion="reduce")
    page = await ctx.new_page()
    # every click and wait gets the visit's budget, not Playwright's 30 s default: with 40 pages
    # rendering on the server's own cores, a busy browser is the load generator's delay, not an error
    page.set_default_timeout(timeout * 1000)
    try:
        for name, path in pages or ROOM_PAGES:
            rec = {"visitor": i, "phone": phone, "page": name, "errors": []}
            t0 = time.time()
            try:
                await page.goto(f"{url}/{path}", timeout=timeout * 1000)
                if name in CHART_PAGES:
                    await page.wait_for_function(CHART_DRAWN_JS, timeout=timeout * 1000, polling=POLL_MS)
                    rec["chart_drawn_s"] = round(time.time() - t0, 3)
                rec["settle_s"] = round(await _a_settle(page, t0, timeout), 3)
                if name == "retrieval":
                    await page.get_by_role("tab", name="Your own image").click()
                    await _a_query_uploader(page).set_input_files(
                        files=[{"name": f"visitor-{i}.png", "mimeType": "image/png", "buffer": png_bytes(i)}])
                    t1 = time.time()
                    await page.get_by_text("neighbours of your image").first.wait_for(timeout=timeout * 1000)
                    rec["upload_s"] = round(await _a_settle(page, t1, timeout), 3)
                if await page.locator("[data-testid=stException]").count():
                    text = await page.locator("[data-testid=stException]").first.inner_text()
                    rec["errors"].append("exception shown: " + text[:200])
            except Exception as err:  # noqa: BLE001 - a load test counts failures instead of stopping
                rec["errors"].append(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                try:  # what the visitor saw: any message on the page, for the report
                    alerts = await page.locator("[data-testid=stAlert], [data-testid=stException], "
                                                "[data-testid=stFileUploaderFileErrorMessage]").all_inner_texts()
                    if alerts:
                        rec["errors"].append("page said: " + " | ".join(a[:160] for a in alerts[:3]))
                except Exception:  # noqa: BLE001 - a browser failure is this view's error; the run goes on
                    pass
            out.append(rec)
    finally:
        await ctx.close()


def run_links(cold_repeats: int = 3, timeout: float = 120, python: str = sys.executable,
              env_extra: dict | None = None, models: list[str] | None = None, say=print) -> dict:
    """Cold deep link on fresh servers, then every page of every shipped model as a first visit."""
    sync_playwright = _require_browser()
    link = "embedding?dataset=mnist&model=mnist-best&method=tsne"
    names = models or sorted(p.stem for p in (ROOT / "checkpoints").glob("*.safetensors"))
    result: dict = {"link": link, "torch_build": torch_build(python), "cold": [], "pages": {}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        for _ in range(cold_repeats):
            with app_server(env_extra, python=python) as (url, _proc, _runs):
                ctx = browser.new_context(**DESKTOP)
                page = ctx.new_page()
                t0 = time.time()
                page.goto(f"{url}/{link}", timeout=timeout * 1000)
                s = settle_seconds(page, t0, timeout)
                ok = "shipped with the model" in page.inner_text("body") and not page_errors(page)
                result["cold"].append({"settle_s": round(s, 3), "shipped_tsne_shown": ok})
                say(f"[links] cold {link}: {s:.2f} s")
                ctx.close()
        with app_server(env_extra, python=python) as (url, _proc, _runs):
            for name in names:
                dataset = name.split("-best")[0] if name.endswith("-best") else name.rsplit("-", 2)[0]
                for p in APP_PAGES:
                    ctx = browser.new_context(**DESKTOP)
                    page = ctx.new_page()
                    t0 = time.time()
                    rec: dict = {}
                    try:
                        page.goto(f"{url}/{p}?dataset={dataset}&model={name}", timeout=timeout * 1000)
                        rec["settle_s"] = round(settle_seconds(page, t0, timeout), 3)
                        rec["errors"] = page_errors(page)
                    except Exception as err:  # noqa: BLE001 - a browser failure is this view's error; the run goes on
                        rec["errors"] = [f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"]
                    result["pages"][f"{name}/{p or 'overview'}"] = rec
                    ctx.close()
                worst = max((r.get("settle_s", 1e9) for k, r in result["pages"].items() if k.startswith(name + "/")))
                say(f"[links] {name}: slowest page {worst:.2f} s")
        browser.close()
    times = [r["settle_s"] for r in result["pages"].values() if "settle_s" in r]
    result["cold_summary"] = percentiles([c["settle_s"] for c in result["cold"]])
    result["pages_summary"] = percentiles(times)
    result["pages_over_5s"] = sorted(k for k, r in result["pages"].items() if r.get("settle_s", 1e9) > 5)
    result["errors"] = sum(len(r["errors"]) for r in result["pages"].values())
    return result


def server_cpu(proc) -> float:
    """User + system CPU seconds of a process and its children (psutil)."""
    import psutil

    total = 0.0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def wait_idle(proc, share: float = 0.05, window: float = 1.0, timeout: float = 120.0) -> float:
    """Wait until the process tree used under ``share`` of one core over ``window`` seconds (its
    background work is done); returns the seconds waited (``timeout`` at most)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        c0 = server_cpu(proc)
        time.sleep(window)
        if server_cpu(proc) - c0 < share * window:
            break
    return time.perf_counter() - t0
