"""The live room's store (ui/room_store.py): the same tests on the embedded SQLite store and on a
real redis-server started for the test in a temporary folder."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ui import room_store as rs

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if not shutil.os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc, port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return rs.SqliteRoomStore(tmp_path / "rooms.sqlite3")
    url, _proc, _port = request.getfixturevalue("redis_url")
    s = rs.RedisRoomStore(url, prefix=f"test:{tmp_path.name}:")
    return s


def png(value: int = 200, size: int = 28) -> bytes:
    arr = np.zeros((size, size), np.uint8)
    arr[4:-4, size // 2 - 2:size // 2 + 2] = value
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def new_room(store, **kw):
    return store.create_room("mnist", "/ckpt/mnist-best.safetensors", "cid1", "mnist-best", **kw)


def test_create_and_read_a_room(store):
    room, secret = new_room(store)
    assert len(room.code) == rs.CODE_LENGTH and set(room.code) <= set(rs.CODE_ALPHABET)
    assert rs.normalise_code(room.code.lower()[:2] + "-" + room.code[2:]) == room.code
    got = store.room(room.code)
    assert got == room and got.open and not got.paused
    assert store.room("ACDEF" if room.code != "ACDEF" else "ACDEG") is None
    assert secret not in repr(got) and len(secret) >= 24


def test_submissions_come_back_in_order_and_only_the_new_ones(store):
    room, _secret = new_room(store)
    t0 = time.time()
    images = [png(100 + 10 * i) for i in range(6)]
    for i, data in enumerate(images):
        s = store.submit(room.code, f"phone{i}", data, x=float(i), y=-float(i), predicted=i % 10,
                         meant=i if i % 2 else None, extra={"replica": "a"}, now=t0 + i * 0.01)
        assert s.id == i + 1
    rows = store.since(room.code)
    assert [r.id for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.png for r in rows] == images  # the bytes themselves, unchanged
    assert [(r.x, r.y, r.predicted, r.meant) for r in rows][:2] == [(0.0, 0.0, 0, None), (1.0, -1.0, 1, 1)]
    assert rows[0].extra == {"replica": "a"}
    assert [r.id for r in store.since(room.code, 4)] == [5, 6]
    assert store.since(room.code, 6) == []
    c = store.counts(room.code)
    assert (c.drew, c.submissions, c.bytes) == (6, 6, sum(map(len, images)))


def test_joined_counts_each_session_once(store):
    room, _ = new_room(store)
    for sid in ["a", "b", "a", "c", "b"]:
        store.join(room.code, sid)
    store.submit(room.code, "a", png(), 0, 0, 1)
    c = store.counts(room.code)
    assert (c.joined, c.drew) == (3, 1)
    store.join("NOPE7", "a")  # an unknown room: nothing happens, no error
    assert store.counts("NOPE7").joined == 0


def test_rate_limit_per_session_others_unaffected(store):
    room, _ = new_room(store)
    t0 = time.time()
    store.submit(room.code, "fast", png(), 0, 0, 1, now=t0)
    with pytest.raises(rs.RateLimited) as info:
        store.submit(room.code, "fast", png(), 0, 0, 1, now=t0 + 0.1)
    assert 0 < info.value.wait_s <= rs.MIN_INTERVAL_S
    assert "wait" in str(info.value) and " s " in str(info.value)
    store.submit(room.code, "other", png(), 0, 0, 2, now=t0 + 0.2)  # another phone is not held up
    assert store.counts(room.code).submissions == 2


def test_rate_limit_clears_after_the_interval(store):
    room, _ = new_room(store)
    store.submit(room.code, "p", png(), 0, 0, 1)
    if isinstance(store, rs.RedisRoomStore):
        time.sleep(rs.MIN_INTERVAL_S + 0.2)  # Redis keeps its own clock
        store.submit(room.code, "p", png(), 0, 0, 1)
    else:
        store.submit(room.code, "p", png(), 0, 0, 1, now=time.time() + rs.MIN_INTERVAL_S + 0.1)
    assert store.counts(room.code).submissions == 2


def test_ten_a_second_from_one_phone_stores_one(store):
    room, _ = new_room(store)
    refused = 0
    for _ in range(10):
        try:
            store.submit(room.code, "spam", png(), 0, 0, 1)
        except rs.RateLimited:
            refused += 1
        time.sleep(0.1)
    assert refused == 9 and store.counts(room.code).submissions == 1


def test_only_the_presenter_can_hide_pause_and_close(store):
    room, secret = new_room(store)
    s = store.submit(room.code, "p", png(), 0, 0, 1)
    for wrong in [None, "", "guess", secret[:-1]]:
        with pytest.raises(rs.NotPresenter):
            store.hide(room.code, wrong, s.id)
        with pytest.raises(rs.NotPresenter):
            store.pause(room.code, wrong)
        with pytest.raises(rs.NotPresenter):
            store.close(room.code, wrong)
        assert not store.is_presenter(room.code, wrong)
    assert store.hidden(room.code) == set() and not store.room(room.code).paused
    assert store.is_presenter(room.code, secret)
    store.hide(room.code, secret, s.id)
    assert store.hidden(room.code) == {s.id}
    store.hide(room.code, secret, s.id, hidden=False)
    assert store.hidden(room.code) == set()


def test_paused_room_refuses_then_goes_on(store):
    room, secret = new_room(store)
    store.pause(room.code, secret)
    assert store.room(room.code).paused
    with pytest.raises(rs.RoomError, match="paused"):
        store.submit(room.code, "p", png(), 0, 0, 1)
    store.pause(room.code, secret, False)
    store.submit(room.code, "p", png(), 0, 0, 1)
    assert store.counts(room.code).submissions == 1


def test_closed_room_refuses_and_deletes_its_images(store):
    room, secret = new_room(store)
    store.submit(room.code, "p", png(), 0, 0, 1)
    store.close(room.code, secret)
    assert store.room(room.code).closed and not store.room(room.code).open
    assert store.since(room.code) == []
    with pytest.raises(rs.RoomGone, match="closed"):
        store.submit(room.code, "q", png(), 0, 0, 1)
    with pytest.raises(rs.RoomGone, match="does not exist"):
        store.submit("NOPE7", "q", png(), 0, 0, 1)


def test_rooms_expire_with_their_images(store):
    room, _ = new_room(store, ttl_s=1.2)
    store.submit(room.code, "p", png(), 0, 0, 1)
    time.sleep(2.2)
    assert store.room(room.code) is None
    store.purge_expired()
    assert store.since(room.code) == []
    with pytest.raises(rs.RoomGone):
        store.submit(room.code, "p", png(), 0, 0, 1)


def test_bounds_per_room(store, monkeypatch):
    monkeypatch.setattr(rs, "MAX_SUBMISSIONS", 3)
    room, _ = new_room(store)
    for i in range(3):
        store.submit(room.code, f"p{i}", png(), 0, 0, 1)
    with pytest.raises(rs.RoomError, match="full"):
        store.submit(room.code, "p9", png(), 0, 0, 1)
    monkeypatch.setattr(rs, "MAX_SUBMISSIONS", 100)
    monkeypatch.setattr(rs, "MAX_ROOM_BYTES", 4 * len(png()))
    store.submit(room.code, "p5", png(), 0, 0, 1)
    with pytest.raises(rs.RoomError, match="MB of images"):
        store.submit(room.code, "p6", png(), 0, 0, 1)
    assert store.counts(room.code).submissions == 4


def test_bad_stored_images_are_refused(store):
    room, _ = new_room(store)
    for bad in [b"GIF89a....", b"", b"\x89PNG" + b"0" * rs.MAX_IMAGE_BYTES]:
        with pytest.raises(rs.RoomError):
            store.submit(room.code, "p", bad, 0, 0, 1)
    with pytest.raises(rs.RoomError):
        store.submit(room.code, "p", png(), 0, 0, 1, meant=-1)
    assert store.counts(room.code).submissions == 0


def test_rooms_per_server_are_bounded(store, monkeypatch):
    monkeypatch.setattr(rs, "MAX_ROOMS", 2)
    store.purge_expired(time.time() + 10 * rs.TTL_S)  # start from an empty server
    new_room(store)
    _, secret = room_b = new_room(store)
    with pytest.raises(rs.RoomError, match="open rooms"):
        new_room(store)
    store.close(room_b[0].code, secret)
    new_room(store)  # a closed room frees its place


def test_concurrent_submissions_from_many_threads_lose_nothing(store):
    room, _ = new_room(store)
    errors = []

    def phone(i):
        try:
            store.submit(room.code, f"t{i}", png(i % 250), i, i, i % 10)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=phone, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.since(room.code)
    assert [r.id for r in rows] == list(range(1, 41)) and {r.session for r in rows} == {f"t{i}" for i in range(40)}


def test_sqlite_store_is_shared_between_two_processes(tmp_path):
    """Two replicas on one machine open the same file: a room made by one is seen by the other."""
    path = tmp_path / "rooms.sqlite3"
    room, _ = new_room(rs.SqliteRoomStore(path))
    image = base64.b64encode(png()).decode()
    code = (f"from ui import room_store as rs; s = rs.SqliteRoomStore({str(path)!r}); import base64; "
            f"s.submit({room.code!r}, 'other-process', base64.b64decode({image!r}), 1, 2, 3)")
    subprocess.run([shutil.os.sys.executable, "-c", code], check=True, cwd=str(rs.Path(rs.__file__).parent.parent))
    rows = rs.SqliteRoomStore(path).since(room.code)
    assert [(r.session, r.x, r.y, r.predicted) for r in rows] == [("other-process", 1.0, 2.0, 3)]


def test_redis_restarted_without_its_data_says_the_room_is_lost(tmp_path):
    if not shutil.os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
            "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        store = rs.RedisRoomStore(f"redis://127.0.0.1:{port}/0")
        room, _ = new_room(store)
        store.submit(room.code, "p", png(), 0, 0, 1)
        proc.terminate()
        proc.wait(10)
        with pytest.raises(rs.StoreUnavailable, match="cannot be reached"):
            store.room(room.code)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        assert store.room(room.code) is None  # the same client reconnects; the room is gone, said plainly
        with pytest.raises(rs.RoomGone):
            store.submit(room.code, "p", png(), 0, 0, 1)
    finally:
        proc.terminate()
        proc.wait(10)


def test_store_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CL_ROOM_STORE", raising=False)
    assert isinstance(rs.store_from_env(tmp_path), rs.SqliteRoomStore)
    monkeypatch.setenv("CL_ROOM_STORE", f"sqlite:{tmp_path / 'x.db'}")
    assert rs.store_from_env().path == tmp_path / "x.db"
    monkeypatch.setenv("CL_ROOM_STORE", "redis://127.0.0.1:1/0")
    assert isinstance(rs.store_from_env(), rs.RedisRoomStore)
    monkeypatch.setenv("CL_ROOM_STORE", "postgres://x")
    with pytest.raises(rs.RoomError, match="neither"):
        rs.store_from_env()


def test_sqlite_deletes_expired_rooms_without_a_new_room(tmp_path, monkeypatch):
    store = rs.SqliteRoomStore(tmp_path / "rooms.sqlite3")
    room, _ = new_room(store, ttl_s=0.5)
    store.submit(room.code, "p", png(), 0, 0, 1)
    time.sleep(0.7)
    monkeypatch.setattr(rs, "PURGE_EVERY_S", 0.0)
    assert store.room("ACDEF") is None  # any lookup purges
    import sqlite3

    db = sqlite3.connect(tmp_path / "rooms.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM rooms").fetchone()[0] == 0


def test_redis_with_its_append_only_file_keeps_the_room_through_a_restart(tmp_path):
    """What deploy.local runs: redis-server with --appendonly yes; a restart keeps the room."""
    if not shutil.os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
            "--appendonly", "yes", "--appendfsync", "always"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        store = rs.RedisRoomStore(f"redis://127.0.0.1:{port}/0")
        room, secret = new_room(store)
        store.submit(room.code, "p", png(), 1.5, 2.5, 7, meant=7)
        proc.terminate()
        proc.wait(10)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            try:
                got = store.room(room.code)
                break
            except rs.StoreUnavailable:
                time.sleep(0.1)
        assert got == room
        assert [(r.x, r.y, r.predicted, r.meant) for r in store.since(room.code)] == [(1.5, 2.5, 7, 7)]
        store.submit(room.code, "q", png(), 0, 0, 1)  # the room goes on
        assert store.is_presenter(room.code, secret) and store.counts(room.code).submissions == 2
    finally:
        proc.terminate()
        proc.wait(10)
