"""Bench part ``app``: Streamlit cold start and memory in headless Chromium; helpers the browser tests share."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from cl.errors import DataUnavailableError

from .common import ROOT, _child_env, _Context, _load, _Skip
from .loadtest import CHROMIUM, CHROMIUM_ARGS, free_port, wait_until_settled


# ------------------------------------------------------------------------------------ app
class _RssSampler(threading.Thread):
    """Peak resident memory of a process and all its children, sampled every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.last = 0
        self._halt = threading.Event()

    def sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc] + self.proc.children(recursive=True)
        except psutil.Error:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            self.last = self.sample()
            self.peak = max(self.peak, self.last)
            self._halt.wait(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def _part_app(ctx: _Context) -> dict:
    if not (ROOT / "app.py").is_file():
        raise _Skip("app.py not found")
    if not Path(CHROMIUM).exists():
        raise _Skip(f"{CHROMIUM} not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise _Skip("playwright (python) is not installed") from None
    try:
        import psutil  # noqa: F401 - only checks that psutil is installed
    except ImportError:
        raise _Skip("psutil is not installed") from None
    try:
        test = _load("mnist", "test", ctx)
        dataset, n_points = "mnist", len(test)
    except DataUnavailableError:
        raise _Skip("MNIST test split not available: the 10,000-point scatter needs it") from None

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs = Path(tempfile.mkdtemp(prefix="cl-bench-app-"))
    env = _child_env(ctx)
    env.update(CL_RUNS_DIR=str(runs), CL_MAX_TRAININGS="1")
    env.pop("CL_APP_LIST_RUNS", None)
    log_path = runs / "server.log"
    result: dict = {"dataset": dataset}
    with open(log_path, "w") as log, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*CHROMIUM_ARGS, "--disable-background-networking"])
        t_launch = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = _RssSampler(server.pid)
        sampler.start()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            while True:  # the server answers HTTP well before the page renders: keep trying
                if server.poll() is not None:
                    raise _Skip(f"streamlit exited ({server.returncode}): {log_path.read_text()[-500:]}")
                if time.perf_counter() - t_launch > 120:
                    raise _Skip("the app did not answer within 120 s")
                try:
                    page.goto(url, timeout=5000)
                    break
                except Exception:  # noqa: BLE001 - connection refused while the server starts
                    time.sleep(0.1)
            page.get_by_role("heading").first.wait_for(timeout=120000)
            result["first_page_s"] = round(time.perf_counter() - t_launch, 3)
            _wait_idle(page)
            result["first_page_idle_s"] = round(time.perf_counter() - t_launch, 3)
            result["rss_first_page_mb"] = round(sampler.sample() / 2**20, 1)
            if page.locator("[data-testid=stException]").count():
                raise _Skip("the first page shows an exception: "
                            + page.locator("[data-testid=stException]").first.inner_text()[:300])
            ctx.say(f"first page after {result['first_page_s']:.1f} s; choosing {dataset} in the sidebar")
            try:
                t0 = time.perf_counter()
                _choose_dataset(page, dataset)
                # in-app navigation (a new URL would start a new session and forget the sidebar)
                page.locator("[data-testid=stSidebarNav]").get_by_text("Embedding space").first.click()
                # The page opens on the model's shipped 2,000-point view; ask for every test image.
                page.get_by_text("Projection settings").first.click()
                points = page.locator(f'input[aria-label="Points (of {n_points:,} test images)"]').first
                points.wait_for(timeout=120000)
                points.fill(str(n_points))
                # PCA, as before the shipped views: the figure measures the app with 10,000 points
                # drawn, not openTSNE's own memory.
                page.locator("[data-testid=stSelectbox]").filter(has_text="Method").first.click()
                page.get_by_role("option", name="PCA").first.click()
                page.get_by_role("button", name="Compute projection").click()
                caption = page.get_by_text(f"{n_points:,} of {n_points:,} points")
                caption.first.wait_for(timeout=300000)
                _wait_idle(page, timeout=300)
                page.locator("[data-testid=stVegaLiteChart]").first.wait_for(timeout=60000)
                page.wait_for_timeout(1500)  # let the browser draw and the server settle
                result["embedding_page_s"] = round(time.perf_counter() - t0, 3)
                result["scatter_points"] = n_points
            except Exception as err:  # noqa: BLE001 - keep the cold-start figures; say what failed
                shot = Path(tempfile.gettempdir()) / "cl-bench-app-failure.png"
                try:
                    page.screenshot(path=str(shot))
                except Exception:  # noqa: BLE001 - a screenshot is a courtesy; its failure must not end the run
                    pass
                result["embedding_page_skipped"] = (f"the Embedding space page did not show the {n_points:,}-point "
                                                    f"scatter ({type(err).__name__}: {str(err)[:200]}); "
                                                    f"screenshot {shot}")
            result["rss_after_mb"] = round(sampler.sample() / 2**20, 1)
        finally:
            sampler.stop()
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
            browser.close()
    result["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    result["torch_import_rss_mb"] = _torch_import_rss_mb()
    result["torch_build"] = torch.__version__
    result["pages"] = ["Overview"] + (["Embedding space (PCA, all test points)"] if "embedding_page_s" in result else [])
    result["server"] = "streamlit run app.py (headless), one browser session"
    shutil.rmtree(runs, ignore_errors=True)
    return result


def _torch_import_rss_mb() -> float | None:
    """Resident memory of a fresh Python process after ``import torch``: the app's fixed floor
    (about 520 MB with the CUDA build pip installs by default, about 210 MB with the CPU-only
    build)."""
    code = ("import torch\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return round(int(out.stdout.split()[-1]) / 1024, 1)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None  # not Linux, or torch failed: the figure is simply not reported


def _wait_idle(page, stable: float = 0.8, timeout: float = 120) -> None:
    try:
        wait_until_settled(page, stable, timeout)
    except TimeoutError as err:
        raise _Skip(str(err)) from None


def _choose_dataset(page, dataset: str) -> None:
    box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
    box.click()
    option = page.get_by_role("option").filter(has_text=dataset).first
    option.wait_for(timeout=10000)
    for i in range(page.get_by_role("option").count()):
        opt = page.get_by_role("option").nth(i)
        if opt.inner_text().strip().startswith(dataset + " "):
            opt.click()
            break
    else:
        option.click()
    _wait_idle(page, timeout=180)


