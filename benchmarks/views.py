"""Bench part ``views``: what one page view costs the server, per page, in demo mode (``CL_DEMO=1``).

For each page (Study, Compare, Embedding, Metrics, Train, Overview; a deep link each) on one
``streamlit run app.py`` server:

- **protocol visitors** (:mod:`benchmarks.wsroom`): after ``WARM`` warm-up views, ``n`` new
  sessions open the link one after another, while one other visitor keeps a tab open
  (:class:`~benchmarks.wsroom.HeldSession`: with no session left Streamlit drops its compiled
  scripts, which no room ever sees). Per view: the server process's CPU seconds
  (``psutil``, user + system, of the server process and its children: robust to other load on
  the machine, unlike wall time), the script runs (``new_session`` messages), the bytes the server
  sent on the wire (a counting loopback relay, :class:`~benchmarks.wsroom.TcpMeter`: the websocket
  frames as compressed) and the protobuf bytes after decompression;
- **browser visitors**: ``n_browser`` headless Chromium visits, one fresh browser context each (a
  new visitor with an empty cache) through the same relay: seconds from navigation until a Vega
  chart is *drawn* (an ``svg`` with mark paths, or a ``canvas`` with coloured pixels: what a
  person sees, not only "the script finished"), the server's CPU seconds per view and the bytes
  on the wire (HTTP: the frontend's files, plus the websocket).

``memory_over_views`` counts the server's resident memory over many protocol views (the
``postScriptGC`` choice). Wall-clock figures depend on the load of the machine
(``machine.load_average_*`` in the results); CPU seconds and bytes do not.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from .common import _child_env, _Context, _Skip
from .loadtest import CHART_DRAWN_JS, server_cpu, wait_idle

WARM = 2
# (name, deep link, has a chart to wait for)
PAGES = [("study", "study?dataset=mnist&model=mnist-best", True),
         ("compare", "compare?dataset=mnist&model=mnist-best", True),
         ("embedding", "embedding?dataset=mnist&model=mnist-best&method=tsne", True),
         ("metrics", "metrics?dataset=cifar10&model=cifar10-best", True),
         ("train", "train?dataset=digits", False),
         ("overview", "?dataset=mnist&model=mnist-best", False)]

def _stats(values: list[float], digits: int = 3) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "mean": round(statistics.fmean(v), digits), "median": round(statistics.median(v), digits),
            "min": round(v[0], digits), "max": round(v[-1], digits)}


def protocol_costs(url: str, proc, meter, link: str, n: int, timeout: float = 120.0) -> dict:
    """``n`` sequential protocol views of ``link`` (after WARM warm-up views): CPU, runs, bytes."""
    from . import wsroom

    wsroom.sequential_views(meter.url, link, WARM, timeout)
    # the first views start background work (torch's import, the model's test embeddings):
    # "warm" means after it, so wait until the server is idle
    wait_idle(proc, timeout=300)
    cpu, runs, wire, payload, secs, errors = [], [], [], [], [], []
    for _ in range(n):
        c0, d0 = server_cpu(proc), meter.down
        view = wsroom.sequential_views(meter.url, link, 1, timeout)[0]
        time.sleep(0.2)  # the session's disconnect is part of the view's cost
        cpu.append(server_cpu(proc) - c0)
        wire.append(meter.down - d0)
        runs.append(view.runs)
        payload.append(view.payload_bytes)
        if view.seconds is not None:
            secs.append(view.seconds)
        errors += view.errors
    return {"views": n, "cpu_s": _stats(cpu), "runs": _stats(runs, 2), "wire_mb": _stats([b / 1e6 for b in wire], 4),
            "payload_mb": _stats([b / 1e6 for b in payload], 4), "seconds": _stats(secs), "errors": errors[:5]}


def _count_run(frame, count: dict) -> None:
    """Count the script runs a browser sees: ``new_session`` ForwardMsgs among its websocket frames."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    if isinstance(frame, (bytes, bytearray)):
        msg = ForwardMsg()
        try:
            msg.ParseFromString(bytes(frame))
        except Exception:  # noqa: BLE001 - not a ForwardMsg: not a run
            return
        if msg.WhichOneof("type") == "new_session":
            count["runs"] += 1


def browser_costs(browser, meter, proc, link: str, n: int, has_chart: bool, timeout: float = 120.0) -> dict:
    """``n`` Chromium visits of ``link``, one fresh context each (see the module doc)."""
    from .loadtest import DESKTOP, page_errors, wait_until_settled

    drawn, settled, cpu, wire, runs, errors = [], [], [], [], [], []
    for _ in range(n):
        ctx = browser.new_context(**DESKTOP)
        page = ctx.new_page()
        count = {"runs": 0}
        page.on("websocket", lambda ws, count=count: ws.on("framereceived", lambda f: _count_run(f, count)))
        c0, d0 = server_cpu(proc), meter.down
        t0 = time.perf_counter()
        try:
            page.goto(f"{meter.url}/{link}", timeout=timeout * 1000)
            if has_chart:
                page.wait_for_function(CHART_DRAWN_JS, timeout=timeout * 1000, polling=100)
                drawn.append(time.perf_counter() - t0)
            wait_until_settled(page, stable=0.8, timeout=timeout)
            settled.append(time.perf_counter() - t0 - 0.8)
            errors += page_errors(page)
        except Exception as err:  # noqa: BLE001 - a measurement reports what failed
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
        ctx.close()
        time.sleep(0.3)
        cpu.append(server_cpu(proc) - c0)
        wire.append(meter.down - d0)
        runs.append(count["runs"])
    return {"views": n, "chart_drawn_s": _stats(drawn), "settled_s": _stats(settled), "cpu_s": _stats(cpu),
            "runs": _stats(runs, 2),
            "wire_mb": _stats([b / 1e6 for b in wire], 4), "errors": errors[:5]}


def measure_pages(env_extra: dict | None = None, n: int = 8, n_browser: int = 3, pages: list | None = None,
                  python: str = sys.executable, say=print, through_nginx: bool = False) -> dict:
    """Every page's costs on one fresh server (see the module doc). ``through_nginx``: the server
    is one replica behind deploy/'s nginx (which then serves the frontend's files), and the
    bytes are counted between the visitor and nginx."""
    import psutil

    from .loadtest import CHROMIUM, CHROMIUM_ARGS, app_server
    from .wsroom import TcpMeter

    chosen = [p for p in PAGES if pages is None or p[0] in pages]
    out: dict = {"server": "streamlit run app.py, CL_DEMO=1", "protocol_views_per_page": n,
                 "browser_views_per_page": n_browser, "warmup_views": WARM, "pages": {}}
    env = {"CL_DEMO": "1", **(env_extra or {})}
    out["post_script_gc"] = env.get("STREAMLIT_RUNNER_POST_SCRIPT_GC", "config.toml")
    pw = browser = None
    if n_browser:
        try:
            from playwright.sync_api import sync_playwright

            if not os.path.exists(CHROMIUM):
                raise ImportError(CHROMIUM)
            pw = sync_playwright().start()
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        except ImportError as err:
            out["browser_skipped"] = f"no browser here ({err})"
    try:
        if through_nginx:
            from deploy.local import Cluster

            serving = Cluster(1, env_extra=env, python=python, say=say)
        else:
            serving = app_server(env, python=python)
        with serving as handle:
            if through_nginx:
                url, pid = handle.url, handle.replicas[0].pid
            else:
                url, pid = handle[0], handle[1].pid
            out["server"] += ", one replica behind nginx" if through_nginx else ""
            with TcpMeter(int(url.rsplit(":", 1)[1])) as meter:
                _measure_all(chosen, url, psutil.Process(pid), meter, browser, n, n_browser, out, say)
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
    return out


def _measure_all(chosen, url, server, meter, browser, n, n_browser, out, say) -> None:
    from .wsroom import HeldSession

    with HeldSession(url):  # another visitor's open tab, as in any room (see HeldSession)
        _measure_pages(chosen, url, server, meter, browser, n, n_browser, out, say)


def _measure_pages(chosen, url, server, meter, browser, n, n_browser, out, say) -> None:
    for name, link, has_chart in chosen:
        rec = {"link": link, "protocol": protocol_costs(url, server, meter, link, n)}
        if browser is not None:
            rec["browser"] = browser_costs(browser, meter, server, link, n_browser, has_chart)
        out["pages"][name] = rec
        b = rec.get("browser", {})
        say(f"[views] {name}: {rec['protocol']['cpu_s'].get('mean')} CPU s/view, "
            f"{rec['protocol']['runs'].get('mean')} runs, {rec['protocol']['wire_mb'].get('mean')} MB ws; "
            f"browser: drawn {b.get('chart_drawn_s', {}).get('median')} s, "
            f"{b.get('cpu_s', {}).get('mean')} CPU s, {b.get('wire_mb', {}).get('mean')} MB")


def memory_over_views(n: int = 1000, env_extra: dict | None = None, every: int = 100, concurrency: int = 4,
                      python: str = sys.executable, say=print) -> dict:
    """Resident memory (server process tree) over ``n`` protocol views cycling through the pages,
    ``concurrency`` at a time; sampled every ``every`` views. Also the server's CPU seconds."""
    import asyncio

    import psutil

    from . import wsroom
    from .loadtest import RssSampler, app_server

    env = {"CL_DEMO": "1", **(env_extra or {})}
    links = [link for _, link, _ in PAGES]
    samples, errors = [], []
    with app_server(env, python=python) as (url, proc, _runs):
        sampler = RssSampler(proc.pid)
        sampler.start()
        server = psutil.Process(proc.pid)
        c0, t0 = server_cpu(server), time.perf_counter()

        async def main():
            done = 0
            while done < n:
                batch = min(concurrency, n - done)
                views = await asyncio.gather(*[wsroom.visit(url, links[(done + k) % len(links)])
                                               for k in range(batch)])
                errors.extend(e for v in views for e in v.errors)
                before, done = done, done + batch
                if done // every != before // every or done == n:
                    samples.append({"views": done, "rss_mb": round(sampler.sample() / 2**20, 1),
                                    "cpu_s": round(server_cpu(server) - c0, 2)})
                    say(f"[memory] {done} views: {samples[-1]}")

        asyncio.run(main())
        sampler.stop()
    return {"views": n, "post_script_gc": env.get("STREAMLIT_RUNNER_POST_SCRIPT_GC", "config.toml"),
            "samples": samples, "peak_rss_mb": round(sampler.peak / 2**20, 1),
            "wall_s": round(time.perf_counter() - t0, 1), "errors": len(errors), "error_list": errors[:10]}


def _part_views(ctx: _Context) -> dict:
    """Per-page costs in demo mode (measure_pages); ``CL_BENCH_VIEWS`` sets the protocol views per
    page; ``CL_BENCH_VIEWS_NGINX=1`` measures them again behind deploy/'s nginx."""
    try:
        import psutil  # noqa: F401 - only checks that psutil is installed
    except ImportError:
        raise _Skip("psutil is not installed") from None
    n = int(os.environ.get("CL_BENCH_VIEWS", "4" if ctx.quick else "8"))
    env = _child_env(ctx)
    out = measure_pages(env, n=n, n_browser=1 if ctx.quick else 3, say=ctx.say)
    if os.environ.get("CL_BENCH_VIEWS_NGINX") == "1":  # the same pages with nginx serving the frontend
        out["through_nginx"] = measure_pages(env, n=n, n_browser=1 if ctx.quick else 3, say=ctx.say,
                                             through_nginx=True)
    return out
