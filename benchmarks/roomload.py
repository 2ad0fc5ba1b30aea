"""The live room under load: protocol-level phones (Streamlit's websocket protocol, as
benchmarks/wsroom.py) each send drawings to one room while a real browser presents it.

    python -m benchmarks.roomload URL [--phones 40] [--drawings 2] [--kill-replica-after S]

Before the room, ``--warm`` sessions (default 6) open the Join page, as a speaker who tries the link
before the talk: every replica has then loaded PyTorch and the room's model (they join the room's
count). Each phone is a new session on the Join page (``/join?room=CODE``); it sends what the frontend
sends after a drawing: the canvas component's state (the PNG as a data URL) and the "Send"
button's trigger, then reads the page until the run ends and takes the "Sent as #N" line. The
presenter is Chromium on the Live room page (1400x1000); its map records when each submission's
thumbnail arrived (``window.roomArrivals``). Latency = that moment minus the phone's send.

With ``--cluster`` the URL is ignored: ``deploy.local`` starts 2 replicas behind nginx with
redis-server in demo mode, and ``--kill-replica-after S`` SIGKILLs the replica that does not
serve the presenter S seconds into the room (its phones reconnect through nginx as new sessions
and go on). Prints one JSON object: sends, stored, errors, latency percentiles, the presenter
page's CPU seconds and bytes per refresh (from the replica's /proc and the browser's websocket).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import signal
import sys
import time

import numpy as np

from benchmarks.common import percentiles
from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS
from benchmarks.wsroom import View, _require_loopback, _ws_url, rerun_msg

SENT = re.compile(r"Sent as #(\d+)")
PRESENTER = {"viewport": {"width": 1400, "height": 1000}}


def drawing(seed: int) -> bytes:
    """A canvas-like RGBA PNG (300x300, transparent, dark strokes) of a rough digit."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    pts = [(int(x), int(y)) for x, y in rng.integers(50, 250, size=(4, 2))]
    d.line(pts, fill=(0, 0, 0, 255), width=22, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def _run_collect(ws, view: View, timeout: float) -> list:
    """Read one run; return (kind, proto) of the elements it drew (alerts, buttons, components)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    elements: list = []
    done_at = None
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError("the page did not finish in time")
        wait = deadline - now if done_at is None else max(0.0, done_at + 0.3 - now)
        try:
            data = await asyncio.wait_for(ws.recv(), timeout=wait)
        except asyncio.TimeoutError:
            if done_at is not None:
                return elements
            raise TimeoutError("the page did not finish in time") from None
        if isinstance(data, str):
            continue
        view.payload_bytes += len(data)
        msg = ForwardMsg()
        msg.ParseFromString(data)
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            done_at = None
            view.runs += 1
        elif kind == "script_finished":
            # a run that ends for a rerun (the page's st.rerun after a send) is not the end
            if ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished) == "FINISHED_SUCCESSFULLY":
                done_at = time.perf_counter()
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            ek = el.WhichOneof("type")
            if ek == "exception":
                view.errors.append(f"exception shown: {el.exception.message[:160]}")
            elif ek in ("button", "alert", "bidi_component"):
                elements.append((ek, getattr(el, ek)))


async def phone(url: str, code: str, index: int, drawings: int, gap: float, timeout: float, log: list) -> None:
    """One phone: joins, sends ``drawings`` drawings ``gap`` s apart; a lost connection (a killed
    replica) is a reconnect, as the frontend does, into a new session."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState
    from websockets.asyncio.client import connect

    sent = 0
    attempts = 0
    seen: set[int] = set()
    while sent < drawings and attempts < drawings + 3:
        attempts += 1
        view = View(link=f"join?room={code}")
        try:
            async with connect(_ws_url(url), subprotocols=["streamlit"], max_size=None, open_timeout=timeout,
                               ping_interval=None, close_timeout=2) as ws:
                replica = ws.response.headers.get("X-Replica") if ws.response is not None else None
                await ws.send(rerun_msg("join", f"room={code}"))
                elements = await _run_collect(ws, view, timeout)
                while sent < drawings:
                    # the last run's canvas: after a send the page gives a fresh one (a new key)
                    canvas = next((el for k, el in reversed(elements) if k == "bidi_component"), None)
                    send = next((el for k, el in reversed(elements) if k == "button" and el.label == "Send"), None)
                    if canvas is None or send is None:
                        log.append({"phone": index, "error": "no canvas or Send button on the Join page"})
                        return
                    png = drawing(index * 10 + sent)
                    state = {"drawing": {"raw": {"objects": [{"type": "path"}]},
                                         "data": "data:image/png;base64," + base64.b64encode(png).decode()}}
                    states = [WidgetState(id=canvas.id, json_value=json.dumps(state)),
                              WidgetState(id=send.id, trigger_value=True)]
                    t_send = time.time()
                    await ws.send(rerun_msg("join", f"room={code}", states))
                    elements = await _run_collect(ws, view, timeout)
                    texts = " ".join(el.body for k, el in elements if k == "alert")
                    # the run that stored it shows the previous result first; the rerun after it, the new one
                    found = SENT.findall(texts)
                    m = int(found[-1]) if found else None
                    if m is None or m in seen:
                        log.append({"phone": index, "error": f"not stored: {texts[:160]}", "t": t_send})
                        if "wait" in texts:
                            await asyncio.sleep(gap)
                            continue
                        return
                    seen.add(m)
                    log.append({"phone": index, "id": m, "t_send": t_send, "replica": replica,
                                "t_done": time.time(), "errors": list(view.errors)})
                    sent += 1
                    if sent < drawings:
                        await asyncio.sleep(gap)
        except Exception as err:  # noqa: BLE001 - a dropped connection: reconnect as a new session
            log.append({"phone": index, "reconnect": f"{type(err).__name__}"})
            await asyncio.sleep(1.0)


def _cpu_seconds(pids) -> float | None:
    """User + system CPU seconds of these processes together (``None`` if any is gone)."""
    if not pids:
        return None
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None
    return total


async def room_run(url: str, phones: int, drawings: int, spread: float, timeout: float, kill=None,
                   server_pids=None, warm: int = 0) -> dict:
    """``server_pids``: a list of process ids, or a function giving them now (replicas restart)."""
    pids = server_pids if callable(server_pids) else (lambda: server_pids)
    from playwright.async_api import async_playwright

    from ui import room_store as rs

    _require_loopback(url)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        page = await (await browser.new_context(**PRESENTER)).new_page()
        ws_bytes = []
        page.on("websocket", lambda w: w.on("framereceived", lambda f: ws_bytes.append(
            (time.time(), len(f) if isinstance(f, (bytes, str)) else 0))))
        resp = await page.goto(f"{url}/room?dataset=mnist&model=mnist-best", timeout=180000)
        presenter_replica = resp.headers.get("x-replica") if resp is not None else None
        await page.get_by_role("button", name="Open a room").click(timeout=180000)
        await page.locator("h2", has_text="Room").first.wait_for(timeout=180000)
        code = (await page.locator("h2", has_text="Room").first.inner_text()).split()[-1]
        await page.wait_for_function("() => window.roomArrivals !== undefined", timeout=120000)
        await asyncio.sleep(3)
        # Warm-up, as a speaker who tries the link before the talk: a few sessions open the Join page,
        # so every replica behind the proxy has imported PyTorch and loaded the room's model and map.
        from benchmarks.wsroom import visit

        warm_views = await asyncio.gather(*[visit(url, f"join?room={code}", timeout=timeout) for _ in range(warm)])
        warm_s = [v.seconds for v in warm_views if v.seconds is not None]
        log: list = []
        room_cpu0 = _cpu_seconds(pids())
        t0 = time.time()
        idle_bytes_from = len(ws_bytes)

        async def staggered(i):
            await asyncio.sleep(spread * i / max(1, phones))
            await phone(url, code, i, drawings, rs.MIN_INTERVAL_S + 0.5, timeout, log)

        tasks = [staggered(i) for i in range(phones)]
        if kill is not None:
            tasks.append(kill(presenter_replica))
        await asyncio.gather(*tasks)
        t_phones = time.time() - t0
        room_cpu1 = _cpu_seconds(pids())
        stored = [e for e in log if "id" in e]
        deadline = time.time() + 30
        arrivals: dict = {}
        while time.time() < deadline:
            arrivals = await page.evaluate("() => window.roomArrivals")
            if all(str(e["id"]) in arrivals for e in stored):
                break
            await asyncio.sleep(0.5)
        shown = await page.evaluate("() => Object.keys(window.roomArrivals).length")
        cpu0 = _cpu_seconds(pids())
        n0 = len(ws_bytes)
        await asyncio.sleep(10)  # the presenter alone, its room full: what a refresh costs
        cpu1 = _cpu_seconds(pids())
        idle = ws_bytes[n0:]
        await browser.close()
    lat = [arrivals[str(e["id"])] / 1000 - e["t_send"] for e in stored if str(e["id"]) in arrivals]
    errors = [e for e in log if "error" in e]
    return {"room": code, "phones": phones, "drawings_each": drawings, "sends_stored": len(stored),
            "lost": len(stored) - sum(str(e["id"]) in arrivals for e in stored), "errors": len(errors),
            "error_samples": [e["error"] for e in errors[:5]], "reconnects": sum("reconnect" in e for e in log),
            "on_presenter_map": shown, "phases_s": round(t_phones, 1),
            "warm_up_join_views": {"n": warm, "seconds": sorted(round(x, 1) for x in warm_s),
                                   "errors": sum(len(v.errors) for v in warm_views)},
            "server_cpu_s_during_phones": None if room_cpu0 is None or room_cpu1 is None
            else round(room_cpu1 - room_cpu0, 1),
            "load_average_after": os.getloadavg()[0],
            "send_to_map_s": percentiles(lat) if lat else None,
            # (seconds into the room, seconds to the map, the phone's replica) per send, in send order
            "timeline": sorted((round(e["t_send"] - t0, 1), round(arrivals[str(e["id"])] / 1000 - e["t_send"], 2),
                                (e.get("replica") or "").rsplit(":", 1)[-1])
                               for e in stored if str(e["id"]) in arrivals),
            "presenter_ws_frames_during_room": len(ws_bytes) - idle_bytes_from,
            "presenter_idle_10s": {"frames": len(idle), "bytes": sum(b for _t, b in idle),
                                   "server_cpu_s": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3)},
            "presenter_replica": presenter_replica}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?", default=None)
    ap.add_argument("--phones", type=int, default=40)
    ap.add_argument("--drawings", type=int, default=2)
    ap.add_argument("--spread", type=float, default=20.0, help="phones join over this many seconds")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--cluster", action="store_true", help="start 2 replicas + nginx + redis (demo mode)")
    ap.add_argument("--kill-replica-after", type=float, default=None)
    ap.add_argument("--warm", type=int, default=6, help="sessions that open the Join page before the room (0: none)")
    ap.add_argument("--server-pid", type=int, default=None, help="the presenter's server process (CPU per refresh)")
    args = ap.parse_args(argv)

    if not args.cluster:
        out = asyncio.run(room_run(args.url.rstrip("/"), args.phones, args.drawings, args.spread, args.timeout,
                                   server_pids=[args.server_pid] if args.server_pid else None, warm=args.warm))
        print(json.dumps(out))
        return 0 if out["lost"] == 0 and out["errors"] == 0 else 1
    from deploy.local import Cluster

    with Cluster(2, env_extra={"CL_DEMO": "1"}, say=lambda m: print(m, file=sys.stderr)) as cluster:
        killed = {}

        async def kill(presenter_replica):
            if args.kill_replica_after is None:
                return
            await asyncio.sleep(args.kill_replica_after)
            port = int(presenter_replica.split(",")[-1].rsplit(":", 1)[1]) if presenter_replica else None
            victim = next(r for r in cluster.replicas if r.port != port)
            killed.update(port=victim.port, at=time.time())
            os.kill(victim.pid, signal.SIGKILL)

        async def run():
            out = await room_run(cluster.url, args.phones, args.drawings, args.spread, args.timeout, kill,
                                 server_pids=lambda: [r.pid for r in cluster.replicas], warm=args.warm)
            return out

        out = asyncio.run(run())
        out["killed_replica"] = killed or None
        out["store"] = cluster.env.get("CL_ROOM_STORE")
    print(json.dumps(out))
    return 0 if out["lost"] == 0 and out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
