"""The live room's shared state: rooms, their submissions, who joined, hides, pause and close.

A room lives outside any one Streamlit process, so a phone served by one replica and the
presenter served by another see the same room. One small interface (:class:`RoomStore`), two
implementations with the same behaviour (the same tests run on both):

- :class:`SqliteRoomStore`, the embedded default: one SQLite file in the app's data folder
  (WAL mode), shared by every process on one machine; ``streamlit run app.py`` needs nothing else.
- :class:`RedisRoomStore`, chosen by ``CL_ROOM_STORE=redis://host:port/db``: replicas on several
  machines (the container, Kubernetes). Every key of a room expires with the room.

What a submission keeps is small: the image as the model saw it (a PNG of at most a few kB),
where it landed on the room's map, what the model read it as, and what the drawer said they
meant. Ids grow within a room, so a presenter asks only for the rows after the last it has seen.
The presenter's rights rest on a secret that only the presenter's session holds; the store keeps
its SHA-256, never the secret.

No Streamlit here (unit-tested directly, :mod:`tests.test_room_store`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Room codes: no 0/O, 1/I/L, 5/S, 2/Z, 8/B, U/V: a code read off a projector is typed right.
CODE_ALPHABET = "ACDEFGHJKMNPQRTWXY34679"
CODE_LENGTH = 5
TTL_S = 3 * 3600  # a room and its images are deleted this long after it opened
MAX_SUBMISSIONS = 400  # per room
MAX_ROOM_BYTES = 8 * 2**20  # images per room
MAX_IMAGE_BYTES = 16 * 1024  # one stored image (the model's 28x28 or 32x32 view is ~1-3 kB)
MAX_ROOMS = 50  # open rooms per server
MIN_INTERVAL_S = 5.0  # one phone's submissions in a room are at least this far apart
PURGE_EVERY_S = 60.0  # the SQLite store deletes expired rooms at most this often (Redis expires keys itself)


class RoomError(Exception):
    """A request the room refuses; the message is one line for the person."""


class RoomGone(RoomError):
    """No such room, or it closed or expired."""


class RateLimited(RoomError):
    def __init__(self, wait_s: float):
        self.wait_s = max(0.0, float(wait_s))
        super().__init__(f"you sent one a moment ago: wait {max(1, round(self.wait_s + 0.49))} s before sending again")


class NotPresenter(RoomError):
    """The secret does not match: only the presenter's session may hide, pause or close."""


class StoreUnavailable(RoomError):
    """The shared store (Redis) cannot be reached."""


@dataclass
class Room:
    code: str
    dataset: str
    model_path: str
    model_cid: str
    model_name: str
    method: str
    created: float
    expires: float
    paused: bool = False
    closed: bool = False

    @property
    def open(self) -> bool:
        return not self.closed and time.time() < self.expires


@dataclass
class Submission:
    id: int
    session: str
    png: bytes
    x: float
    y: float
    predicted: int
    meant: int | None
    created: float
    extra: dict = field(default_factory=dict)  # e.g. the submit-to-stored seconds, the replica


@dataclass
class RoomCounts:
    joined: int  # distinct sessions that opened the room's audience page
    drew: int  # distinct sessions with at least one stored submission
    submissions: int
    bytes: int


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_code(rng: secrets.SystemRandom | None = None) -> str:
    rng = rng or secrets.SystemRandom()
    return "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str | None) -> str | None:
    """A code as typed or scanned ("ab-c7 d") -> its canonical form, or ``None`` if it cannot be one."""
    if not text:
        return None
    code = "".join(ch for ch in str(text).upper() if ch.isalnum())
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        return None
    return code


def _check_submission(png: bytes, meant: int | None) -> None:
    if not isinstance(png, (bytes, bytearray)) or not png.startswith(b"\x89PNG"):
        raise RoomError("the stored image must be a PNG")
    if len(png) > MAX_IMAGE_BYTES:
        raise RoomError(f"the stored image is {len(png):,} bytes, over the {MAX_IMAGE_BYTES:,} byte limit")
    if meant is not None and (isinstance(meant, bool) or not isinstance(meant, int) or meant < 0):
        raise RoomError("'what I meant' must be a class index")


class RoomStore(ABC):
    """Rooms and their submissions, shared by every replica. All methods are thread-safe."""

    @abstractmethod
    def create_room(self, dataset: str, model_path: str, model_cid: str, model_name: str, method: str = "tsne",
                    ttl_s: float = TTL_S) -> tuple[Room, str]:
        """A new open room and its presenter secret (returned once, stored only as a digest).
        Raises :class:`RoomError` when the server already has :data:`MAX_ROOMS` open rooms."""

    @abstractmethod
    def room(self, code: str) -> Room | None:
        """The room, or ``None`` when there is none by that code or it expired (a closed room
        is returned, with ``closed``, until it expires)."""

    @abstractmethod
    def join(self, code: str, session: str) -> None:
        """Count ``session`` among those who opened the room (once per session)."""

    @abstractmethod
    def submit(self, code: str, session: str, png: bytes, x: float, y: float, predicted: int,
               meant: int | None = None, extra: dict | None = None, now: float | None = None) -> Submission:
        """Store a submission; raises :class:`RoomGone`, :class:`RateLimited` or :class:`RoomError`
        (paused, full) and stores nothing then."""

    @abstractmethod
    def since(self, code: str, after_id: int = 0) -> list[Submission]:
        """Submissions with ``id > after_id``, oldest first (hidden ones included)."""

    @abstractmethod
    def hidden(self, code: str) -> set[int]:
        """Ids of the submissions the presenter hid."""

    @abstractmethod
    def counts(self, code: str) -> RoomCounts:
        ...

    @abstractmethod
    def _set_flags(self, code: str, paused: bool | None = None, closed: bool | None = None) -> None:
        ...

    @abstractmethod
    def _set_hidden(self, code: str, submission_id: int, hidden: bool) -> None:
        ...

    @abstractmethod
    def _secret_digest(self, code: str) -> str | None:
        ...

    @abstractmethod
    def purge_expired(self, now: float | None = None) -> int:
        """Delete expired rooms with their images; returns how many rooms went."""

    # presenter-only actions: the secret is checked here, for both implementations
    def _authorise(self, code: str, secret: str | None) -> None:
        digest = self._secret_digest(code)
        if digest is None:
            raise RoomGone(f"room {code} does not exist or has expired")
        if not secret or not hmac.compare_digest(digest, secret_digest(secret)):
            raise NotPresenter("only the presenter who opened this room can change it")

    def hide(self, code: str, secret: str | None, submission_id: int, hidden: bool = True) -> None:
        self._authorise(code, secret)
        self._set_hidden(code, int(submission_id), bool(hidden))

    def pause(self, code: str, secret: str | None, paused: bool = True) -> None:
        self._authorise(code, secret)
        self._set_flags(code, paused=bool(paused))

    def close(self, code: str, secret: str | None) -> None:
        """Close the room: no more submissions; its images are deleted at once."""
        self._authorise(code, secret)
        self._set_flags(code, closed=True)

    def is_presenter(self, code: str, secret: str | None) -> bool:
        try:
            self._authorise(code, secret)
            return True
        except RoomError:
            return False


# ------------------------------------------------------------------------------------ SQLite
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    code TEXT PRIMARY KEY, dataset TEXT NOT NULL, model_path TEXT NOT NULL, model_cid TEXT NOT NULL,
    model_name TEXT NOT NULL, method TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0, closed INTEGER NOT NULL DEFAULT 0, secret_digest TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS submissions (
    code TEXT NOT NULL, id INTEGER NOT NULL, session TEXT NOT NULL, png BLOB NOT NULL, x REAL NOT NULL,
    y REAL NOT NULL, predicted INTEGER NOT NULL, meant INTEGER, created REAL NOT NULL, extra TEXT NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (code, id));
CREATE INDEX IF NOT EXISTS submissions_session ON submissions (code, session, created);
CREATE TABLE IF NOT EXISTS joins (code TEXT NOT NULL, session TEXT NOT NULL, PRIMARY KEY (code, session));
"""


def _room_from_row(row) -> Room:
    return Room(code=row["code"], dataset=row["dataset"], model_path=row["model_path"], model_cid=row["model_cid"],
                model_name=row["model_name"], method=row["method"], created=row["created"], expires=row["expires"],
                paused=bool(row["paused"]), closed=bool(row["closed"]))


class SqliteRoomStore(RoomStore):
    """Rooms in one SQLite file; several processes may share it (WAL, a busy timeout, and every
    check-then-write in one ``BEGIN IMMEDIATE`` transaction)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._purged_at = 0.0
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, *_):
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> _Tx:
        return self._Tx(self._db())

    def _delete_rooms(self, db: sqlite3.Connection, codes: list[str]) -> None:
        for code in codes:
            db.execute("DELETE FROM submissions WHERE code = ?", (code,))
            db.execute("DELETE FROM joins WHERE code = ?", (code,))
            db.execute("DELETE FROM rooms WHERE code = ?", (code,))

    def purge_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._tx() as db:
            codes = [r["code"] for r in db.execute("SELECT code FROM rooms WHERE expires <= ?", (now,))]
            self._delete_rooms(db, codes)
        return len(codes)

    def create_room(self, dataset, model_path, model_cid, model_name, method="tsne", ttl_s=TTL_S):
        self.purge_expired()
        secret = secrets.token_urlsafe(24)
        now = time.time()
        with self._tx() as db:
            n_open = db.execute("SELECT COUNT(*) FROM rooms WHERE closed = 0 AND expires > ?", (now,)).fetchone()[0]
            if n_open >= MAX_ROOMS:
                raise RoomError(f"this server already has {n_open} open rooms (at most {MAX_ROOMS}); "
                                "close one or try again later")
            for _ in range(20):
                code = new_code()
                if db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is None:
                    break
            else:
                raise RoomError("no free room code; try again")
            db.execute("INSERT INTO rooms (code, dataset, model_path, model_cid, model_name, method, created, expires, "
                       "secret_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (code, dataset, model_path, model_cid, model_name, method, now, now + ttl_s,
                        secret_digest(secret)))
        return Room(code, dataset, model_path, model_cid, model_name, method, now, now + ttl_s), secret

    def room(self, code):
        if time.time() - self._purged_at > PURGE_EVERY_S:
            # expired rooms go with their images even when no new room is opened
            self._purged_at = time.time()
            self.purge_expired()
        row = self._db().execute("SELECT * FROM rooms WHERE code = ?", (code,)).fetchone()
        if row is None or row["expires"] <= time.time():
            return None
        return _room_from_row(row)

    def join(self, code, session):
        with self._tx() as db:
            if db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is not None:
                db.execute("INSERT OR IGNORE INTO joins (code, session) VALUES (?, ?)", (code, session))

    def submit(self, code, session, png, x, y, predicted, meant=None, extra=None, now=None):
        _check_submission(png, meant)
        now = time.time() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT * FROM rooms WHERE code = ?", (code,)).fetchone()
            if row is None or row["expires"] <= now or row["closed"]:
                raise RoomGone(f"room {code} has closed" if row is not None else f"room {code} does not exist")
            if row["paused"]:
                raise RoomError("the presenter has paused the room: wait until it goes on")
            last = db.execute("SELECT MAX(created) FROM submissions WHERE code = ? AND session = ?",
                              (code, session)).fetchone()[0]
            if last is not None and now - last < MIN_INTERVAL_S:
                raise RateLimited(MIN_INTERVAL_S - (now - last))
            if row["n"] >= MAX_SUBMISSIONS:
                raise RoomError(f"the room is full ({MAX_SUBMISSIONS} drawings)")
            if row["bytes"] + len(png) > MAX_ROOM_BYTES:
                raise RoomError(f"the room is full ({MAX_ROOM_BYTES // 2**20} MB of images)")
            sid = row["n"] + 1
            db.execute("INSERT INTO submissions (code, id, session, png, x, y, predicted, meant, created, extra) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (code, sid, session, bytes(png), float(x), float(y), int(predicted), meant, now,
                        json.dumps(extra or {})))
            db.execute("UPDATE rooms SET n = ?, bytes = bytes + ? WHERE code = ?", (sid, len(png), code))
            db.execute("INSERT OR IGNORE INTO joins (code, session) VALUES (?, ?)", (code, session))
        return Submission(sid, session, bytes(png), float(x), float(y), int(predicted), meant, now, dict(extra or {}))

    def since(self, code, after_id=0):
        rows = self._db().execute("SELECT * FROM submissions WHERE code = ? AND id > ? ORDER BY id",
                                  (code, int(after_id))).fetchall()
        return [Submission(r["id"], r["session"], bytes(r["png"]), r["x"], r["y"], r["predicted"], r["meant"],
                           r["created"], json.loads(r["extra"])) for r in rows]

    def hidden(self, code):
        return {r[0] for r in self._db().execute("SELECT id FROM submissions WHERE code = ? AND hidden = 1", (code,))}

    def counts(self, code):
        db = self._db()
        joined = db.execute("SELECT COUNT(*) FROM joins WHERE code = ?", (code,)).fetchone()[0]
        drew = db.execute("SELECT COUNT(DISTINCT session) FROM submissions WHERE code = ?", (code,)).fetchone()[0]
        row = db.execute("SELECT n, bytes FROM rooms WHERE code = ?", (code,)).fetchone()
        return RoomCounts(joined, drew, row["n"] if row else 0, row["bytes"] if row else 0)

    def _set_flags(self, code, paused=None, closed=None):
        with self._tx() as db:
            if paused is not None:
                db.execute("UPDATE rooms SET paused = ? WHERE code = ?", (int(paused), code))
            if closed:
                db.execute("UPDATE rooms SET closed = 1, bytes = 0 WHERE code = ?", (code,))
                db.execute("DELETE FROM submissions WHERE code = ?", (code,))

    def _set_hidden(self, code, submission_id, hidden):
        with self._tx() as db:
            db.execute("UPDATE submissions SET hidden = ? WHERE code = ? AND id = ?", (int(hidden), code, submission_id))

    def _secret_digest(self, code):
        row = self._db().execute("SELECT secret_digest, expires FROM rooms WHERE code = ?", (code,)).fetchone()
        return row["secret_digest"] if row is not None and row["expires"] > time.time() else None


# ------------------------------------------------------------------------------------ Redis
# One submission, atomically: the room is open and not paused, this session's last submission
# is MIN_INTERVAL_S old, the room has room; then the row is appended and every key of the room
# shares its expiry. KEYS: room hash, submissions list, rate key, joined set, drew set.
# ARGV: row JSON, png length, now, min interval ms, max submissions, max bytes, session, row-without-id.
_SUBMIT_LUA = """
local room = redis.call('HMGET', KEYS[1], 'expires', 'closed', 'paused', 'n', 'bytes')
if not room[1] then return {'gone', 'none'} end
local now = tonumber(ARGV[3])
if tonumber(room[1]) <= now or room[2] == '1' then return {'gone', 'closed'} end
if room[3] == '1' then return {'paused', ''} end
local wait = redis.call('PTTL', KEYS[3])
if wait > 0 then return {'rate', tostring(wait)} end
local n = tonumber(room[4] or '0')
if n >= tonumber(ARGV[5]) then return {'full', 'n'} end
if tonumber(room[5] or '0') + tonumber(ARGV[2]) > tonumber(ARGV[6]) then return {'full', 'bytes'} end
n = n + 1
redis.call('HSET', KEYS[1], 'n', n)
redis.call('HINCRBY', KEYS[1], 'bytes', tonumber(ARGV[2]))
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', tonumber(ARGV[4]))
redis.call('SADD', KEYS[4], ARGV[7])
redis.call('SADD', KEYS[5], ARGV[7])
local at = math.ceil(tonumber(room[1]))
redis.call('EXPIREAT', KEYS[2], at)
redis.call('EXPIREAT', KEYS[4], at)
redis.call('EXPIREAT', KEYS[5], at)
return {'ok', tostring(n)}
"""


class RedisRoomStore(RoomStore):
    """Rooms in Redis; every key of a room expires with it (``EXPIREAT``), so Redis deletes an
    expired room's images itself. A lost connection is :class:`StoreUnavailable`."""

    def __init__(self, url: str, prefix: str = "ce:room:"):
        import redis

        self.url = url
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3,
                                           health_check_interval=10, retry_on_timeout=True)
        self._submit = self._redis.register_script(_SUBMIT_LUA)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def _k(self, code: str, part: str = "") -> str:
        return f"{self.prefix}{code}{':' + part if part else ''}"

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._errors as err:
            raise StoreUnavailable(f"the room store (Redis at {self.url.split('@')[-1]}) cannot be reached: "
                                   f"{type(err).__name__}") from err

    def purge_expired(self, now=None):
        # Redis deletes the keys itself; only the index of open rooms needs trimming.
        now = time.time() if now is None else now
        return int(self._call(self._redis.zremrangebyscore, self.prefix + "index", "-inf", now))

    def create_room(self, dataset, model_path, model_cid, model_name, method="tsne", ttl_s=TTL_S):
        self.purge_expired()
        n_open = int(self._call(self._redis.zcard, self.prefix + "index"))
        if n_open >= MAX_ROOMS:
            raise RoomError(f"this server already has {n_open} open rooms (at most {MAX_ROOMS}); "
                            "close one or try again later")
        secret = secrets.token_urlsafe(24)
        now = time.time()
        room = None
        for _ in range(20):
            room = Room(new_code(), dataset, model_path, model_cid, model_name, method, now, now + ttl_s)
            fields = {k: (int(v) if isinstance(v, bool) else v) for k, v in asdict(room).items()}
            fields.update(secret_digest=secret_digest(secret), n=0, bytes=0)
            key = self._k(room.code)
            if self._call(self._redis.hsetnx, key, "code", room.code):
                pipe = self._redis.pipeline()
                pipe.hset(key, mapping=fields)
                pipe.expireat(key, int(room.expires + 1))
                pipe.zadd(self.prefix + "index", {room.code: room.expires})
                self._call(pipe.execute)
                return room, secret
        raise RoomError("no free room code; try again")

    def room(self, code):
        raw = self._call(self._redis.hgetall, self._k(code))
        if not raw or b"expires" not in raw:
            return None
        d = {k.decode(): v.decode() for k, v in raw.items()}
        room = Room(code=d["code"], dataset=d["dataset"], model_path=d["model_path"], model_cid=d["model_cid"],
                    model_name=d["model_name"], method=d["method"], created=float(d["created"]),
                    expires=float(d["expires"]), paused=d.get("paused") == "1", closed=d.get("closed") == "1")
        return room if room.expires > time.time() else None

    def join(self, code, session):
        room = self.room(code)
        if room is not None:
            pipe = self._redis.pipeline()
            pipe.sadd(self._k(code, "joined"), session)
            pipe.expireat(self._k(code, "joined"), int(room.expires + 1))
            self._call(pipe.execute)

    def submit(self, code, session, png, x, y, predicted, meant=None, extra=None, now=None):
        import base64

        _check_submission(png, meant)
        now = time.time() if now is None else now
        row = {"session": session, "png": base64.b64encode(bytes(png)).decode(), "x": float(x), "y": float(y),
               "predicted": int(predicted), "meant": meant, "created": now, "extra": extra or {}}
        rate_key = self._k(code, "rate:" + hashlib.sha256(session.encode()).hexdigest()[:24])
        status, detail = self._call(
            self._submit, keys=[self._k(code), self._k(code, "subs"), rate_key, self._k(code, "joined"),
                                self._k(code, "drew")],
            args=[json.dumps(row), len(png), now, int(MIN_INTERVAL_S * 1000), MAX_SUBMISSIONS, MAX_ROOM_BYTES,
                  session])
        status, detail = status.decode(), detail.decode()
        if status == "gone":
            raise RoomGone(f"room {code} has closed" if detail == "closed" else f"room {code} does not exist")
        if status == "paused":
            raise RoomError("the presenter has paused the room: wait until it goes on")
        if status == "rate":
            raise RateLimited(int(detail) / 1000)
        if status == "full":
            raise RoomError(f"the room is full ({MAX_SUBMISSIONS} drawings)" if detail == "n"
                            else f"the room is full ({MAX_ROOM_BYTES // 2**20} MB of images)")
        return Submission(int(detail), session, bytes(png), float(x), float(y), int(predicted), meant, now,
                          dict(extra or {}))

    def since(self, code, after_id=0):
        import base64

        rows = self._call(self._redis.lrange, self._k(code, "subs"), int(after_id), -1)
        out = []
        for i, raw in enumerate(rows, start=int(after_id) + 1):
            r = json.loads(raw)
            out.append(Submission(i, r["session"], base64.b64decode(r["png"]), r["x"], r["y"], r["predicted"],
                                  r["meant"], r["created"], r.get("extra") or {}))
        return out

    def hidden(self, code):
        return {int(v) for v in self._call(self._redis.smembers, self._k(code, "hidden"))}

    def counts(self, code):
        pipe = self._redis.pipeline()
        pipe.scard(self._k(code, "joined"))
        pipe.scard(self._k(code, "drew"))
        pipe.hmget(self._k(code), "n", "bytes")
        joined, drew, (n, nbytes) = self._call(pipe.execute)
        return RoomCounts(int(joined), int(drew), int(n or 0), int(nbytes or 0))

    def _set_flags(self, code, paused=None, closed=None):
        if paused is not None:
            self._call(self._redis.hset, self._k(code), "paused", int(paused))
        if closed:
            pipe = self._redis.pipeline()
            pipe.hset(self._k(code), mapping={"closed": 1, "bytes": 0})
            pipe.delete(self._k(code, "subs"), self._k(code, "hidden"))
            pipe.zrem(self.prefix + "index", code)
            self._call(pipe.execute)

    def _set_hidden(self, code, submission_id, hidden):
        room = self.room(code)
        if room is None:
            return
        key = self._k(code, "hidden")
        pipe = self._redis.pipeline()
        (pipe.sadd if hidden else pipe.srem)(key, submission_id)
        pipe.expireat(key, int(room.expires + 1))
        self._call(pipe.execute)

    def _secret_digest(self, code):
        room = self.room(code)
        if room is None:
            return None
        value = self._call(self._redis.hget, self._k(code), "secret_digest")
        return value.decode() if value else None


# ------------------------------------------------------------------------------------ choosing
def store_from_env(data_dir: str | Path | None = None) -> RoomStore:
    """``$CL_ROOM_STORE`` (``redis://...``, ``rediss://...`` or ``sqlite:PATH``), else a SQLite
    file ``rooms.sqlite3`` in ``data_dir`` (the app's cache folder)."""
    spec = os.environ.get("CL_ROOM_STORE", "").strip()
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisRoomStore(spec)
    if spec.startswith("sqlite:"):
        return SqliteRoomStore(spec.removeprefix("sqlite:"))
    if spec:
        raise RoomError(f"CL_ROOM_STORE={spec!r} is neither redis://HOST:PORT nor sqlite:PATH")
    return SqliteRoomStore(Path(data_dir or ".") / "rooms.sqlite3")
