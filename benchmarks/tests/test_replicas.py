"""Two replicas behind nginx (deploy/local.py), and one of them killed while visitors keep coming.

Visitors whose session is on the other replica see no error; views that start after the kill
are all served (nginx moves the dead replica's visitors over); a browser on the killed replica
gets its page back from the URL after a reload; the runs folder the replicas share is unchanged;
the supervisor restarts the dead replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from benchmarks import wsroom
from benchmarks.loadtest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, page_errors, wait_until_settled

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")]
LINKS = ["?dataset=digits", "train?dataset=digits", "metrics?dataset=digits", "compare?dataset=digits"]


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _port(replica_header: str | None) -> int | None:
    if not replica_header:
        return None
    last = replica_header.split(",")[-1].strip()  # "a, b" when nginx had to try a second upstream
    return int(last.rsplit(":", 1)[1])


def test_killing_one_replica_costs_the_other_replicas_visitors_nothing(tmp_path):
    from deploy.local import Cluster, healthy

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(ROOT / "checkpoints" / "digits-best.safetensors", runs / "earlier-run.safetensors")
    before = _digests(runs)
    browser_page = pw = browser = None
    with Cluster(2, env_extra={"CL_DEMO": "1", "CL_RUNS_DIR": str(runs)}, run_dir=tmp_path / "cluster",
                 say=lambda _m: None) as cluster:
        ports = [r.port for r in cluster.replicas]
        # warm both replicas (imports, first runs) so the kill lands in steady traffic
        async def warm_up():
            return await asyncio.gather(*[wsroom.visit(cluster.url, LINKS[k % 2], timeout=120) for k in range(6)])

        warm = wsroom.run_async(warm_up)
        assert not [e for v in warm for e in v.errors], [v.errors for v in warm]
        assert {_port(v.replica) for v in warm} == set(ports), "nginx spread new sessions over both replicas"

        victim = cluster.replicas[0]
        if os.path.exists(CHROMIUM):
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                sync_playwright = None
            if sync_playwright is not None:
                pw = sync_playwright().start()
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
                browser_page = browser.new_context(**DESKTOP).new_page()
                resp = browser_page.goto(f"{cluster.url}/metrics?dataset=digits", timeout=120000)
                wait_until_settled(browser_page, timeout=120)
                # the browser's cookie pins it to one replica: that one is killed
                victim = next(r for r in cluster.replicas if r.port == _port(resp.headers.get("x-replica")))
        survivor = next(r for r in cluster.replicas if r is not victim)

        kill_at = {}

        async def room():
            t0 = time.perf_counter()
            views: list = []

            async def visitor(i: int):
                k = i
                while time.perf_counter() - t0 < 20:
                    # a generous budget per view: the test checks errors, not speed on a shared machine
                    v = await wsroom.visit(cluster.url, LINKS[k % len(LINKS)], timeout=180)
                    views.append(v)
                    k += 1

            async def killer():
                await asyncio.sleep(6)
                kill_at["t"] = time.perf_counter()
                os.kill(victim.pid, signal.SIGKILL)

            await asyncio.gather(*[visitor(i) for i in range(4)], killer())
            return views

        views = wsroom.run_async(room)
        t_kill = kill_at["t"]
        on_survivor = [v for v in views if _port(v.replica) == survivor.port]
        after_kill = [v for v in views if v.t_start > t_kill + 1.0]
        assert on_survivor and not [e for v in on_survivor for e in v.errors], \
            [v.errors for v in on_survivor if v.errors]
        assert len(after_kill) >= 4 and not [e for v in after_kill for e in v.errors], \
            [v.errors for v in after_kill if v.errors]
        assert all(_port(v.replica) == survivor.port for v in after_kill if v.t_start < t_kill + 3.0)
        assert any(_port(v.replica) == victim.port and v.t_end < t_kill for v in views), "both served before"

        if browser_page is not None:
            # the killed replica's browser: Streamlit's reconnect, then a reload brings the view back
            browser_page.reload(timeout=120000)
            wait_until_settled(browser_page, timeout=120)
            assert not page_errors(browser_page)
            assert "dataset=digits" in browser_page.url
            assert browser_page.locator("[data-testid=stSidebar]").get_by_text("digits").count() > 0
            browser.close()
            pw.stop()

        # the supervisor saw the dead replica and starts it again
        t0 = time.time()
        while time.time() - t0 < 90 and not (victim.restarts and healthy(victim.port)):
            time.sleep(0.5)
        assert victim.restarts >= 1 and healthy(victim.port)
        assert healthy(survivor.port) and survivor.restarts == 0
    assert _digests(runs) == before, "the shared runs folder is unchanged"


def test_a_live_room_loses_nothing_when_a_phones_replica_is_killed(tmp_path):
    """Two replicas, nginx and redis-server (deploy/local.py); a real browser presents a room, protocol
    phones send drawings, and the replica that does not serve the presenter is killed mid-room: every
    stored drawing (those sent before the kill included) reaches the presenter's map, no phone sees an
    error (those on the killed replica reconnect through nginx), and the supervisor restarts it."""
    import shutil as _shutil

    from benchmarks import roomload
    from deploy.local import Cluster, healthy

    if _shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    with Cluster(2, env_extra={"CL_DEMO": "1", "CL_RUNS_DIR": str(tmp_path / "runs")}, run_dir=tmp_path / "cluster",
                 say=lambda _m: None) as cluster:
        assert cluster.redis is not None and cluster.env["CL_ROOM_STORE"] == cluster.redis.url
        killed = {}

        async def kill(presenter_replica):
            await asyncio.sleep(9)  # every phone has joined and sent once; each waits to send again
            port = _port(presenter_replica)
            victim = next(r for r in cluster.replicas if r.port != port)
            killed.update(replica=victim, port=victim.port)
            os.kill(victim.pid, signal.SIGKILL)

        out = asyncio.run(roomload.room_run(cluster.url, phones=8, drawings=3, spread=6, timeout=180, kill=kill))
        assert killed, "the kill ran"
        assert out["errors"] == 0, out["error_samples"]
        # a drawing stored just as its replica died may be on the map without its phone having seen "Sent"
        assert out["sends_stored"] == 24 and out["lost"] == 0 and out["on_presenter_map"] >= 24, out
        assert out["reconnects"] >= 1, "some phones were on the killed replica and reconnected"
        victim = killed["replica"]
        t0 = time.time()
        while time.time() - t0 < 90 and not (victim.restarts and healthy(victim.port)):
            time.sleep(0.5)
        assert victim.restarts >= 1 and healthy(victim.port)
