"""Visitors that speak Streamlit's own websocket protocol: a load generator whose CPU is not the server's.

A browser visitor costs the machine a whole renderer (hundreds of MB, a core for seconds); on the
server's own cores that is measured as the server's slowness. A protocol visitor does what the
frontend does on the wire and nothing else:

1. open ``ws://HOST/_stcore/stream`` (subprotocol ``streamlit``; permessage-deflate offered, as
   browsers do) -- one connection is one new session, a new visitor;
2. send a ``BackMsg`` ``rerun_script`` with the page's url path as ``page_name`` and the deep
   link's query string (``ClientState``), as the frontend does after it connects;
3. read ``ForwardMsg`` protobufs until ``script_finished`` says ``FINISHED_SUCCESSFULLY`` and no
   new run starts within a short quiet window (a rerun would show as another ``new_session``).

Each view records the seconds from connect to the last script's end, the number of script runs
(``new_session`` messages: 1 when nothing asked for a rerun), the protobuf bytes received, and
every exception element or ``page_not_found`` as an error. No fragment auto-reruns are requested
(a browser would send them every second while a training runs; the room measures page views).

:func:`run_protocol_room` drives ``visitors`` such clients at once, each opening ``links`` in turn, and
reports views per second and latency percentiles; :class:`TcpMeter` is a loopback relay that
counts the bytes a server sends (HTTP and websocket, compressed as on the wire).

Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .common import percentiles

QUIET_S = 0.3  # after a finished run: how long to wait for a rerun the script asked for
DEFAULT_LINKS = [("overview", "?dataset=mnist&model=mnist-best"),
                 ("embedding", "embedding?dataset=mnist&model=mnist-best&method=tsne"),
                 ("metrics", "metrics?dataset=mnist&model=mnist-best"),
                 ("retrieval", "retrieval?dataset=mnist&model=mnist-best"),
                 ("compare", "compare?dataset=mnist&model=mnist-best")]


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load generator only talks to this machine (127.0.0.1), not {host!r}")


def split_link(link: str) -> tuple[str, str]:
    """``"embedding?dataset=mnist"`` -> (page_name ``"embedding"``, query ``"dataset=mnist"``)."""
    path, _, query = link.partition("?")
    return path.strip("/"), query


@dataclass
class View:
    """One visit of one deep link by a new session."""

    link: str
    seconds: float | None = None  # connect -> last script run finished
    runs: int = 0  # full script runs (new_session messages)
    payload_bytes: int = 0  # ForwardMsg bytes received (after websocket decompression)
    messages: int = 0
    errors: list = field(default_factory=list)
    elements: list = field(default_factory=list)  # (kind, proto) of widgets, when asked for
    replica: str | None = None  # behind deploy/'s nginx: the upstream that answered (X-Replica)
    t_start: float = 0.0
    t_end: float = 0.0


def _ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream"


def rerun_msg(page_name: str, query: str, widget_states: list | None = None, page_script_hash: str = "") -> bytes:
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    cs = msg.rerun_script
    cs.query_string = query
    cs.page_name = page_name
    cs.page_script_hash = page_script_hash
    for w in widget_states or []:
        cs.widget_states.widgets.append(w)
    return msg.SerializeToString()


async def _read_until_done(ws, view: View, deadline: float, keep_widgets: bool) -> str:
    """Read ForwardMsgs until a full run finished and nothing new started for QUIET_S seconds.
    Returns the page_script_hash of the page that ran."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    done_at = None
    page_hash = ""
    while True:
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError("the page did not finish in time")
        wait = deadline - now if done_at is None else max(0.0, done_at + QUIET_S - now)
        try:
            data = await asyncio.wait_for(ws.recv(), timeout=wait)
        except asyncio.TimeoutError:
            if done_at is not None:
                return page_hash
            raise TimeoutError("the page did not finish in time") from None
        if isinstance(data, str):
            continue
        view.payload_bytes += len(data)
        view.messages += 1
        msg = ForwardMsg()
        msg.ParseFromString(data)
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            view.runs += 1
            done_at = None
            page_hash = msg.new_session.page_script_hash or page_hash
        elif kind == "script_finished":
            status = ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)
            if status == "FINISHED_SUCCESSFULLY":
                done_at = time.perf_counter()
                view.t_end = done_at
            elif status == "FINISHED_WITH_COMPILE_ERROR":
                view.errors.append("script compile error")
                done_at = time.perf_counter()
                view.t_end = done_at
        elif kind == "page_not_found":
            view.errors.append(f"page not found: {msg.page_not_found.page_name}")
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            ek = el.WhichOneof("type")
            if ek == "exception":
                view.errors.append(f"exception shown: {el.exception.type}: {el.exception.message[:160]}")
            elif keep_widgets and ek in ("button", "number_input", "alert"):
                view.elements.append((ek, getattr(el, ek)))


async def visit(url: str, link: str, timeout: float = 120.0, keep_widgets: bool = False,
                hold: asyncio.Event | None = None, then=None) -> View:
    """One new visitor opens ``link`` (see the module doc). ``then(ws, view, page_hash)``, if given,
    runs on the open connection afterwards (e.g. to press a button); ``hold``, if given, keeps the
    session open until it is set."""
    from websockets.asyncio.client import connect

    _require_loopback(url)
    page_name, query = split_link(link)
    view = View(link=link)
    view.t_start = time.perf_counter()
    deadline = view.t_start + timeout
    try:
        async with connect(_ws_url(url), subprotocols=["streamlit"], max_size=None, open_timeout=timeout,
                           ping_interval=None, close_timeout=2) as ws:
            view.replica = ws.response.headers.get("X-Replica") if ws.response is not None else None
            await ws.send(rerun_msg(page_name, query))
            page_hash = await _read_until_done(ws, view, deadline, keep_widgets)
            view.seconds = round(view.t_end - view.t_start, 4)
            if then is not None:
                await then(ws, view, page_hash)
            if hold is not None:
                await _drain_until(ws, hold)
    except Exception as err:  # noqa: BLE001 - a load test counts failures instead of stopping
        view.errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
    return view


async def _drain_until(ws, event: asyncio.Event) -> None:
    while not event.is_set():
        try:
            await asyncio.wait_for(ws.recv(), timeout=0.5)
        except asyncio.TimeoutError:
            continue


# ------------------------------------------------------------------------------------ trainings
async def start_training(url: str, dataset: str, epochs: int, timeout: float, hold: asyncio.Event) -> View:
    """Open the Train page as a new visitor, set Epochs and press "Start training" (the form's
    submit button, with the form's number inputs as the frontend sends them); the session stays
    open until ``hold`` is set. The returned view's errors say if the training did not start."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    async def press(ws, view: View, page_hash: str) -> None:
        states = []
        submit = None
        for kind, el in view.elements:
            if kind == "button" and el.is_form_submitter and el.label == "Start training":
                submit = el
            elif kind == "number_input":
                w = WidgetState(id=el.id)
                value = epochs if el.label == "Epochs" else (el.value if el.HasField("value") else el.default)
                if el.data_type == el.INT:
                    w.int_value = int(value)
                else:
                    w.double_value = float(value)
                states.append(w)
        if submit is None:
            view.errors.append("no 'Start training' button on the Train page")
            return
        states.append(WidgetState(id=submit.id, trigger_value=True))
        view.elements = []
        before = view.runs
        # by page name, as on the first visit (the hash in new_session may be the main script's)
        await ws.send(rerun_msg("train", f"dataset={dataset}", states))
        await _read_until_done(ws, view, time.perf_counter() + timeout, keep_widgets=True)
        started = any(k == "button" and el.label == "Cancel training" for k, el in view.elements)
        if view.runs == before or not started:
            said = "; ".join(el.body[:120] for k, el in view.elements if k == "alert")
            view.errors.append(f"the training did not start (no 'Cancel training' button){': ' + said if said else ''}")

    return await visit(url, f"train?dataset={dataset}", timeout, keep_widgets=True, hold=hold, then=press)


# ------------------------------------------------------------------------------------ the room
def run_protocol_room(url: str, visitors: int = 40, links: list | None = None, trainings: int = 2,
             train_dataset: str = "digits", train_epochs: int = 30, timeout: float = 120.0,
             time_limit: float = 180.0, settle_s: float = 8.0, say=print) -> dict:
    """``visitors`` protocol visitors at once, each opening every link once (in a rotated order),
    while ``trainings`` trainings run (started through the Train page, ``settle_s`` seconds
    before the visitors). Bounded: a view waits at most ``timeout`` s, and no view starts later
    than ``time_limit`` s after the first."""
    links = list(links or DEFAULT_LINKS)
    _require_loopback(url)

    async def main():
        hold = asyncio.Event()
        trainers = [asyncio.create_task(start_training(url, train_dataset, train_epochs, timeout, hold))
                    for _ in range(trainings)]
        if trainings:
            await asyncio.sleep(settle_s)
        result = await _room_visitors(url, visitors, links, timeout, time_limit, say)
        hold.set()
        tviews = []
        for t in trainers:
            try:
                tviews.append(await asyncio.wait_for(t, timeout=15))
            except asyncio.TimeoutError:
                tviews.append(View(link="train", errors=["trainer did not close"]))
        result["trainings"] = trainings
        result["trainings_started"] = sum(1 for v in tviews if not v.errors)
        result["training_errors"] = [e for v in tviews for e in v.errors]
        return result

    return run_async(main)


async def _room_visitors(url: str, visitors: int, links: list, timeout: float, time_limit: float, say) -> dict:
    say(f"[wsroom] {visitors} visitors x {len(links)} links start")
    t0 = time.perf_counter()
    stop_at = t0 + time_limit

    async def visitor(i: int) -> list[View]:
        out = []
        for k in range(len(links)):
            name, link = links[(i + k) % len(links)]  # visitors start on different pages
            left = stop_at - time.perf_counter()
            if left <= 0:
                v = View(link=name, errors=["not started: the room's time limit passed"])
            else:
                v = await visit(url, link, timeout=min(timeout, left + timeout / 2))
                v.link = name
            out.append(v)
        return out

    per_visitor = await asyncio.gather(*[visitor(i) for i in range(visitors)])
    t_all = time.perf_counter()
    views = [v for vs in per_visitor for v in vs]
    done = [v for v in views if v.seconds is not None and not v.errors]
    last_end = max((v.t_end for v in done), default=None)
    return {
        "visitors": visitors, "links": [n for n, _ in links],
        "views": len(views), "views_ok": len(done),
        "errors": sum(len(v.errors) for v in views),
        "error_list": [f"{v.link}: {e}" for v in views for e in v.errors][:30],
        "wall_s": round(t_all - t0, 3),
        "all_done_after_s": round(last_end - t0, 3) if last_end else None,
        "views_per_s": round(len(done) / (last_end - t0), 3) if last_end else 0.0,
        "latency": percentiles([v.seconds for v in done]),
        "per_link": {n: percentiles([v.seconds for v in done if v.link == n]) for n, _ in links},
        "runs_per_view": round(statistics.fmean([v.runs for v in done]), 3) if done else None,
        "payload_mb_per_view": round(statistics.fmean([v.payload_bytes for v in done]) / 1e6, 4) if done else None,
    }


def sequential_views(url: str, link: str, n: int, timeout: float = 120.0) -> list[View]:
    """``n`` new visitors open ``link`` one after another (for per-view costs)."""
    _require_loopback(url)

    async def main():
        return [await visit(url, link, timeout) for _ in range(n)]

    return run_async(main)


def run_async(make_coro):
    """``asyncio.run(make_coro())`` in a thread of its own: callers may already run an event loop
    (Playwright's sync API does)."""
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(make_coro())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=target, name="wsroom", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class HeldSession:
    """One visitor who opened ``link`` and keeps the tab open (a context manager; its own event
    loop in a thread). Streamlit drops its compiled scripts whenever no session is left, so a
    per-view measurement with one visitor at a time would count compiling app.py and the page
    in every view; in a room other tabs are always open."""

    def __init__(self, url: str, link: str = "?dataset=digits", timeout: float = 120.0):
        self.url, self.link, self.timeout = url, link, timeout
        self._loop = asyncio.new_event_loop()
        self._event: asyncio.Event | None = None
        self._opened = threading.Event()
        self.view: View | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="held-session")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main():
            self._event = asyncio.Event()

            async def opened(ws, view, page_hash):
                self._opened.set()

            self.view = await visit(self.url, self.link, self.timeout, hold=self._event, then=opened)
            self._opened.set()  # also when the visit failed: the caller does not wait forever

        self._loop.run_until_complete(main())

    def __enter__(self) -> HeldSession:
        _require_loopback(self.url)
        self._thread.start()
        self._opened.wait(self.timeout)
        return self

    def __exit__(self, *exc) -> None:
        if self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)
        self._thread.join(10)


# ------------------------------------------------------------------------------------ byte meter
class TcpMeter:
    """A loopback TCP relay ``127.0.0.1:port -> target`` that counts bytes each way (what the
    server sent is ``down``): HTTP and websocket traffic as compressed on the wire. Runs its own
    event loop in a thread; use as a context manager."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.up = 0
        self.down = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tcp-meter")
        self._server = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst, upstream: bool):
            try:
                while True:
                    chunk = await src.read(65536)
                    if not chunk:
                        break
                    if upstream:
                        self.up += len(chunk)
                    else:
                        self.down += len(chunk)
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    dst.close()
                except (ConnectionError, OSError, RuntimeError):
                    pass

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpMeter:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the byte meter did not start")
        return self

    def __exit__(self, *exc) -> None:
        def stop():
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)


# ------------------------------------------------------------------------------------ bench part
def room_on_servers(visitors: int = 40, trainings: int = 2, replicas: int = 0, links: list | None = None,
                    env_extra: dict | None = None, time_limit: float = 180.0, say=print,
                    python: str | None = None) -> dict:
    """The room against a fresh ``streamlit run app.py`` (``replicas=0``) or against
    ``replicas`` replicas behind nginx (:mod:`deploy.local`), in demo mode; adds the server side's
    CPU seconds (all its processes) and peak resident memory to :func:`run_protocol_room`'s figures.
    ``python``: the servers' interpreter (a venv with PyTorch's CPU-only build, say)."""
    import sys

    import psutil

    from .loadtest import RssSampler, app_server, server_cpu, wait_idle

    env = {"CL_DEMO": "1", **(env_extra or {})}
    links = list(links or DEFAULT_LINKS)
    if replicas:
        from deploy.local import Cluster

        cm = Cluster(replicas, env_extra=env, say=say, python=python or sys.executable)
    else:
        cm = app_server(env, python=python or sys.executable)
    with cm as handle:
        if replicas:
            url, procs = handle.url, [psutil.Process(r.pid) for r in handle.replicas]
        else:
            url, proc, _runs = handle
            procs = [psutil.Process(proc.pid)]
        # warm every process: one view of each link on each replica's own port (through nginx a
        # cookie-less view lands on either), then idle
        direct = [f"http://127.0.0.1:{r.port}" for r in handle.replicas] if replicas else [url]
        warm = run_async(lambda: _gather_views_on(direct, [link for _, link in links]))
        for p in procs:
            wait_idle(p, timeout=90)
        samplers = [RssSampler(p.pid) for p in procs]
        for s in samplers:
            s.start()
        c0 = sum(server_cpu(p) for p in procs)
        result = run_protocol_room(url, visitors=visitors, links=links, trainings=trainings, time_limit=time_limit, say=say)
        result["server_cpu_s"] = round(sum(server_cpu(p) for p in procs) - c0, 2)
        for s in samplers:
            s.stop()
        result["peak_rss_mb_per_process"] = [round(s.peak / 2**20, 1) for s in samplers]
        result["warmup_errors"] = [e for v in warm for e in v.errors][:5]
    result["servers"] = f"{replicas} replicas behind nginx" if replicas else "one streamlit process"
    result["server_python"] = python or sys.executable
    import subprocess

    probe = subprocess.run([python or sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, timeout=120)
    result["server_torch"] = probe.stdout.strip() or "unknown"
    return result


async def _gather_views_on(urls: list[str], links: list[str]) -> list[View]:
    return list(await asyncio.gather(*[visit(u, link) for u in urls for link in links]))


def _part_wsroom(ctx) -> dict:
    """Protocol-level room (room_on_servers) on one process, then on 2 replicas behind nginx when
    nginx is installed (again with each interpreter in ``CL_BENCH_ROOM_PYTHONS``, separated by
    ``os.pathsep``); ``CL_BENCH_VISITORS`` visitors (default 40; 10 with --quick)."""
    import os
    import shutil

    from .common import _child_env

    visitors = int(os.environ.get("CL_BENCH_VISITORS", "10" if ctx.quick else "40"))
    out: dict = {"runs": []}
    out["runs"].append(room_on_servers(visitors, env_extra=_child_env(ctx), say=ctx.say))
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        out["runs"].append(room_on_servers(visitors, replicas=2, env_extra=_child_env(ctx), say=ctx.say))
        # CL_BENCH_ROOM_PYTHONS: other interpreters for the replicas (a venv with PyTorch's CPU-only build)
        for python in [p for p in os.environ.get("CL_BENCH_ROOM_PYTHONS", "").split(os.pathsep) if p]:
            out["runs"].append(room_on_servers(visitors, replicas=2, env_extra=_child_env(ctx), say=ctx.say,
                                               python=python))
    else:
        out["replicas_skipped"] = "nginx is not installed"
    for k in ("visitors", "errors", "all_done_after_s", "latency", "views_per_s"):
        out[k] = out["runs"][0].get(k)
    return out
