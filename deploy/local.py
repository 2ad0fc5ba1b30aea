"""N Streamlit replicas behind nginx, on one machine: ``python -m deploy.local --replicas 2``.

What the hosted container runs (Dockerfile) and what a laptop can run to see the same:

- ``--replicas`` processes of ``streamlit run app.py``, each on its own loopback port, all with
  the same cookie secret (an upload's XSRF token is then valid on any replica), the same runs
  folder and cache folder (a model trained on one replica is a file every replica can open);
- nginx (Debian's package) on ``--host:--port`` with session affinity by cookie, websocket
  upgrade, the frontend's files served from a copy compressed once (``deploy/nginx.conf.template``);
- redis-server (Debian's package) on a loopback port, the live room's shared store
  (``CL_ROOM_STORE`` for every replica, ui/room_store.py): a phone's drawing stored by one replica
  is read by the presenter's replica. Its append-only file in the run folder keeps the rooms
  through a Redis restart. Without redis-server (or with ``--no-redis``) the replicas share the
  SQLite store in the cache folder instead, which works for replicas on one machine;
- a supervisor: every ``HEALTH_EVERY`` s each replica's ``/_stcore/health`` is asked; a replica that
  exited, failed ``HEALTH_FAILS`` checks in a row after it had answered once, or did not answer
  within ``STARTUP_S`` of its start is restarted (nginx meanwhile sends its visitors to the others);
  a redis-server that exited is started again on the same port and folder.
  Ctrl-C or SIGTERM stops everything.

Only this module's own child processes are started and stopped (by their process ids).
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
HEALTH_EVERY = 2.0
HEALTH_TIMEOUT = 5.0
HEALTH_FAILS = 6  # ~40 s without an answer: a replica busy with a room answers late, not never
STARTUP_S = 180.0  # a (re)started replica has this long to answer its first health check
COMPRESS_SUFFIXES = (".js", ".css", ".json", ".html", ".svg", ".txt", ".map", ".ttf", ".woff", ".mjs")
MIME_TYPES_CANDIDATES = ("/etc/nginx/mime.types", "/usr/local/nginx/conf/mime.types", "/opt/homebrew/etc/nginx/mime.types")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_nginx() -> str:
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if path is None:
        raise SystemExit("nginx is not installed (Debian/Ubuntu: apt-get install nginx)")
    return path


def compressed_static(cache: Path | None = None) -> Path:
    """A copy of Streamlit's frontend files with a ``.gz`` beside each text file, made once per
    Streamlit version (nginx's gzip_static then sends the .gz: no compression per request)."""
    import streamlit

    src = Path(streamlit.__file__).parent / "static"
    base = Path(cache or os.environ.get("CL_CACHE_DIR") or Path(tempfile.gettempdir()) / "contrastive-explorer")
    dest = base / f"streamlit-static-{streamlit.__version__}"
    if (dest / ".complete").exists():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix="static-", dir=base if base.exists() else None))
    shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    for f in tmp.rglob("*"):
        if f.is_file() and f.suffix in COMPRESS_SUFFIXES and f.stat().st_size >= 1024:
            with open(f, "rb") as fin, gzip.open(str(f) + ".gz", "wb", compresslevel=9) as fout:
                shutil.copyfileobj(fin, fout)
    (tmp / ".complete").write_text(streamlit.__version__)
    base.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another launcher made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def render_config(listen: str, ports: list[int], run_dir: Path, static_dir: Path, access_log: str = "off",
                  max_body_mb: int = 200) -> str:
    mime = next((p for p in MIME_TYPES_CANDIDATES if os.path.exists(p)), None)
    if mime is None:
        raise SystemExit("nginx's mime.types was not found (is nginx installed?)")
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in ports)
    text = TEMPLATE.read_text()
    for key, value in {"RUN_DIR": str(run_dir), "MIME_TYPES": mime, "ACCESS_LOG": access_log,
                       "UPSTREAM_SERVERS": servers, "LISTEN": listen, "STATIC_DIR": str(static_dir),
                       "MAX_BODY_MB": str(max_body_mb)}.items():
        text = text.replace("${" + key + "}", value)
    return text


def find_redis() -> str | None:
    return shutil.which("redis-server") or next((p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
                                                 if os.path.exists(p)), None)


class Redis:
    """One supervised redis-server on a loopback port, its data (append-only file) in ``folder``."""

    def __init__(self, binary: str, port: int, folder: Path):
        self.binary, self.port, self.folder = binary, port, folder
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._log = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory", "256mb",
             "--maxmemory-policy", "volatile-ttl"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def healthy(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Replica:
    def __init__(self, index: int, port: int, env: dict, run_dir: Path, python: str):
        self.index, self.port, self.env, self.run_dir, self.python = index, port, env, run_dir, python
        self.proc: subprocess.Popen | None = None
        self.fails = 0
        self.ready = False  # answered a health check since its last start
        self.started_at = 0.0
        self.restarts = 0
        self._log = None

    def start(self) -> None:
        if self._log is None:
            self._log = open(self.run_dir / f"replica-{self.index}.log", "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        self.fails = 0
        self.ready = False
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


class Cluster:
    """Replicas + nginx + the supervisor (see the module doc). A context manager; ``url`` is the
    proxy's address, ``replicas[i].pid`` each replica's process id."""

    def __init__(self, replicas: int = 2, host: str = "127.0.0.1", port: int | None = None,
                 env_extra: dict | None = None, python: str = sys.executable, run_dir: Path | None = None,
                 access_log: bool = False, supervise: bool = True, say=None, redis: bool = True):
        if replicas < 1:
            raise SystemExit("--replicas must be at least 1")
        self.host, self.port = host, port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="ce-cluster-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
        env.setdefault("CL_RUNS_DIR", str(self.run_dir / "runs"))
        env.update(env_extra or {})
        self.redis: Redis | None = None
        binary = find_redis() if redis and not env.get("CL_ROOM_STORE") else None
        if binary is not None:
            self.redis = Redis(binary, free_port(), self.run_dir / "redis")
            env["CL_ROOM_STORE"] = self.redis.url
        self.env = env
        self.replicas = [Replica(i, free_port(), env, self.run_dir, python) for i in range(replicas)]
        self.access_log = access_log
        self.supervise = supervise
        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self.nginx: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.events: list[tuple[float, str]] = []

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 180.0) -> Cluster:
        static = compressed_static()
        if self.redis is not None:
            self.redis.start()
            t0 = time.time()
            while not self.redis.ready():
                if not self.redis.alive() or time.time() - t0 > 30:
                    raise RuntimeError(f"redis-server did not start (log: {self.redis.folder}/redis.log)")
                time.sleep(0.05)
        for r in self.replicas:
            r.start()
        conf = self.run_dir / "nginx.conf"
        log = str(self.run_dir / "nginx-access.log") if self.access_log else "off"
        conf.write_text(render_config(f"{self.host}:{self.port}", [r.port for r in self.replicas], self.run_dir,
                                      static, access_log=log))
        self.nginx = subprocess.Popen([find_nginx(), "-p", str(self.run_dir), "-c", str(conf), "-e",
                                       str(self.run_dir / "nginx-error.log")],
                                      stdout=subprocess.DEVNULL, stderr=open(self.run_dir / "nginx.out", "ab"))
        t0 = time.time()
        while not all(healthy(r.port) for r in self.replicas):
            for r in self.replicas:
                if not r.alive():
                    raise RuntimeError(f"replica {r.index} exited (log: {self.run_dir}/replica-{r.index}.log)")
            if self.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.run_dir / 'nginx.out').read_text()[-500:]}")
            if time.time() - t0 > timeout:
                raise RuntimeError("the replicas did not answer their health checks in time")
            time.sleep(0.2)
        for r in self.replicas:
            r.ready = True
        if self.supervise:
            self._watch = threading.Thread(target=self._supervise, daemon=True, name="supervisor")
            self._watch.start()
        store = f"; live rooms in redis-server :{self.redis.port}" if self.redis is not None else ""
        self.say(f"{len(self.replicas)} replica(s) behind nginx at {self.url} "
                 f"(ports {', '.join(str(r.port) for r in self.replicas)}{store}; logs in {self.run_dir})")
        return self

    def _supervise(self) -> None:
        while not self._stop.wait(HEALTH_EVERY):
            if self.redis is not None and not self.redis.alive() and not self._stop.is_set():
                self.events.append((time.time(), "redis restarted"))
                self.say(f"redis-server (port {self.redis.port}) is down: restarting it")
                self.redis.stop()
                self.redis.restarts += 1
                self.redis.start()
            for r in self.replicas:
                if self._stop.is_set():
                    return
                if r.alive() and healthy(r.port, timeout=HEALTH_TIMEOUT):
                    r.fails, r.ready = 0, True
                    continue
                if r.alive() and not r.ready:  # still starting: only a start that never ends counts
                    if time.time() - r.started_at < STARTUP_S:
                        continue
                else:
                    r.fails += 1
                if not r.alive() or not r.ready or r.fails >= HEALTH_FAILS:
                    self.events.append((time.time(), f"replica {r.index} restarted"))
                    self.say(f"replica {r.index} (port {r.port}) is down: restarting it")
                    r.stop(timeout=5)
                    r.restarts += 1
                    r.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(HEALTH_EVERY * 2 + 5)
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for r in self.replicas:
            r.stop()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=2, help="Streamlit processes (default 2: one per core)")
    ap.add_argument("--host", default="127.0.0.1", help="address nginx listens on (0.0.0.0 in a container)")
    ap.add_argument("--port", type=int, default=8501)
    ap.add_argument("--demo", action="store_true", help="demo mode (CL_DEMO=1), as the hosted container")
    ap.add_argument("--run-dir", default=None, help="folder for nginx.conf, logs and (by default) the runs folder")
    ap.add_argument("--access-log", action="store_true", help="write nginx's access log to the run folder")
    ap.add_argument("--no-redis", action="store_true",
                    help="no redis-server: the live rooms use the SQLite store in the cache folder (one machine only)")
    args = ap.parse_args(argv)
    cluster = Cluster(args.replicas, args.host, args.port, {"CL_DEMO": "1"} if args.demo else None,
                      run_dir=Path(args.run_dir) if args.run_dir else None, access_log=args.access_log,
                      redis=not args.no_redis)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        cluster.start()
        print(f"open {cluster.url}", flush=True)
        while not done.wait(1.0):
            if cluster.nginx is not None and cluster.nginx.poll() is not None:
                print("nginx exited; stopping", file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
