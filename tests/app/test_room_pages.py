"""The live room's pages through AppTest (pages/room.py, the presenter; pages/join.py, a phone)
and the submit path a phone's image takes (ui/room.py), on the shipped digits model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.testing.v1 import AppTest

from cl.errors import UserError
from ui import room_store as rs

from test_app_helpers import _ServerPagesManager, bomb_png, digit_png, hostile_files

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
DIGITS = str(CKPT / "digits-best.safetensors")


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(app_test_module, "PagesManager", _ServerPagesManager)
    monkeypatch.setenv("CL_CHECKPOINTS_DIR", str(CKPT))
    monkeypatch.setenv("CL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CL_DATA_DIR", raising=False)  # digits: bundled, the same everywhere
    monkeypatch.setenv("CL_ROOM_STORE", f"sqlite:{tmp_path / 'rooms.sqlite3'}")
    monkeypatch.setenv("CL_PUBLIC_URL", "https://talk.example.org")
    from ui import room

    room.store.clear()
    yield tmp_path
    room.store.clear()


def open_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    for k, v in {"dataset": "digits", "model": "digits-best", **params}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at) -> str:
    return " ".join(str(x.value) for x in [*at.markdown, *at.caption, *at.error, *at.info, *at.warning,
                                           *at.success, *at.title])


def test_presenter_opens_a_room_and_sees_code_link_and_controls(env):
    at = open_page("room")
    at.button(key="room_open").click().run()
    assert not at.exception, [e.message for e in at.exception]
    presented = at.session_state["room_presented"]
    code, secret = presented["code"], presented["secret"]
    assert rs.normalise_code(code) == code
    text = texts(at)
    assert f"Room **{code}**" in text and f"talk.example.org/join?room={code}" in text
    assert secret not in text  # the presenter's secret is never shown, never in the link
    keys = {b.key for b in at.button}
    assert {"room_pause", "room_close", "room_new"} <= keys
    at.button(key="room_pause").click().run()
    assert rs.SqliteRoomStore(env / "rooms.sqlite3").room(code).paused
    at.button(key="room_close").click().run()
    assert rs.SqliteRoomStore(env / "rooms.sqlite3").room(code).closed
    assert "closed" in texts(at)


def test_a_phone_sends_and_the_presenter_sees_it(env):
    presenter = open_page("room")
    presenter.button(key="room_open").click().run()
    code = presenter.session_state["room_presented"]["code"]
    phone = open_page("join", room=code.lower())
    assert not phone.exception and f"Room {code}" in texts(phone)
    store = rs.SqliteRoomStore(env / "rooms.sqlite3")
    assert store.counts(code).joined == 1
    from ui import room

    current = store.room(code)
    result = room.submit_image(current, phone.session_state["session_id"], digit_png(), meant=1, room_store=store)
    assert result.submission.id == 1 and 0 <= result.submission.predicted < 10
    # an independent check of the placement: the stored point is where the fitted map puts the image
    model = room.model_for(current)
    tensor = room.read_image(model, digit_png(), "x", "digits")
    from cl.retrieval import embed_one

    want = model.placer.place(embed_one(model.net, tensor)[None])[0]
    np.testing.assert_allclose([result.submission.x, result.submission.y], want, atol=1e-3)
    votes = np.bincount([h.label for h in result.neighbours], minlength=10)
    assert votes[result.submission.predicted] == votes.max()
    presenter.run()
    assert not presenter.exception
    assert {m.label: m.value for m in presenter.metric}["Drawings"] == "1"
    assert {m.label: m.value for m in presenter.metric}["Phones joined"] == "1"
    assert any(b.key == "hide_1" for b in presenter.button)
    presenter.button(key="hide_1").click().run()
    assert store.hidden(code) == {1}
    assert {m.label: m.value for m in presenter.metric}["Drawings"] == "0"
    presenter.selectbox(key="room_unhide").select(1).run()  # show it again
    assert not presenter.exception and store.hidden(code) == set()
    assert {m.label: m.value for m in presenter.metric}["Drawings"] == "1"
    presenter.run()  # and it stays shown; with nothing hidden the box is gone
    assert store.hidden(code) == set() and not any(s.key == "room_unhide" for s in presenter.selectbox)


def test_bad_images_are_refused_with_one_line_and_nothing_stored(env):
    presenter = open_page("room")
    presenter.button(key="room_open").click().run()
    code = presenter.session_state["room_presented"]["code"]
    store = rs.SqliteRoomStore(env / "rooms.sqlite3")
    from ui import room

    current = store.room(code)
    blank = digit_png()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (200, 200), 255).save(buf, format="PNG")
    bad = [(name, data) for name, data, _mime in hostile_files()] + [
        ("bomb.png", bomb_png(12_000)), ("huge.png", b"\x89PNG" + b"0" * (21 * 2**20)), ("blank.png", buf.getvalue())]
    for name, data in bad:
        with pytest.raises(UserError) as info:
            room.submit_image(current, f"s-{name}", data, name, room_store=store)
        message = str(info.value)
        assert "\n" not in message and message, name
        if name == "blank.png":
            assert "blank" in message and "draw bigger" in message
        if name == "huge.png":
            assert "MB limit" in message
    assert store.counts(code).submissions == 0
    room.submit_image(current, "ok", blank, room_store=store)
    assert store.counts(code).submissions == 1


def test_rate_limit_says_wait_and_others_go_through(env):
    presenter = open_page("room")
    presenter.button(key="room_open").click().run()
    code = presenter.session_state["room_presented"]["code"]
    store = rs.SqliteRoomStore(env / "rooms.sqlite3")
    from ui import room

    current = store.room(code)
    room.submit_image(current, "fast", digit_png(), room_store=store)
    with pytest.raises(rs.RateLimited, match=r"wait \d s"):
        room.submit_image(current, "fast", digit_png(), room_store=store)
    room.submit_image(current, "other", digit_png(), room_store=store)
    assert store.counts(code).submissions == 2


def test_an_audience_member_cannot_control_the_room(env):
    presenter = open_page("room")
    presenter.button(key="room_open").click().run()
    code = presenter.session_state["room_presented"]["code"]
    # a phone that edits its URL (any parameters it likes) sees no controls and holds no secret
    phone = open_page("join", room=code, secret="x", close="1", pause="1")
    keys = {b.key for b in phone.button}
    assert not keys & {"room_pause", "room_close", "room_new"} and not any(k and k.startswith("hide_") for k in keys)
    assert "room_presented" not in phone.session_state or phone.session_state["room_presented"] is None
    # the Live room page in the phone's own session offers a new room, never this one's controls
    phone.switch_page("pages/room.py").run()
    assert "room_pause" not in {b.key for b in phone.button} and f"Room **{code}**" not in texts(phone)
    store = rs.SqliteRoomStore(env / "rooms.sqlite3")
    assert not store.room(code).paused and not store.room(code).closed


def test_unknown_malformed_and_closed_rooms_get_a_clear_page(env):
    phone = open_page("join", room="QQQQQ")
    assert "No room QQQQQ" in texts(phone) or "not a room code" in texts(phone)
    phone = open_page("join", room="ACDEF")
    assert "no open room ACDEF" in texts(phone)
    phone = open_page("join", room="hello world")
    assert "is not a room code" in texts(phone)
    phone = open_page("join")
    assert any(t.key == "join_code" for t in phone.text_input)
    presenter = open_page("room")
    presenter.button(key="room_open").click().run()
    code = presenter.session_state["room_presented"]["code"]
    presenter.button(key="room_close").click().run()
    phone = open_page("join", room=code)
    assert f"Room {code} has closed" in texts(phone)


def test_a_refresh_carries_the_new_submissions_not_the_room():
    """The presenter's map payload: its size grows with the rows that are new since the last
    refresh and does not depend on how many the room already holds."""
    import json

    from test_room_store import png

    from ui import room

    def subs(ids):
        return [rs.Submission(i, f"s{i}", png(100 + i % 100), float(i), float(-i), i % 10, None, 0.0) for i in ids]

    classes = [str(c) for c in range(10)]

    def size(start, new):
        return len(json.dumps(room.map_payload("ACDEF", None, start, subs(new), set(), classes)))

    idle_small, idle_large = size(5, []), size(300, [])
    assert abs(idle_small - idle_large) <= 2  # only the digits of the last id differ
    one, ten = size(300, [301]) - idle_large, size(300, range(301, 311)) - idle_large
    assert one > 100 and 8 * one <= ten <= 12 * one
    # the grey background travels once, with the model, not on later refreshes
    assert "bg" not in room.map_payload("ACDEF", None, 3, [], set(), classes)


def test_a_photo_room_asks_for_a_photo_and_takes_a_colour_upload(env):
    """Fashion-MNIST: the phone gets a camera and an upload instead of a canvas; a colour photo
    is read in the data set's format and stored."""
    import io

    from PIL import Image

    presenter = open_page("room", dataset="fashion-mnist", model="fashion-mnist-best")
    presenter.button(key="room_open").click().run()
    assert not presenter.exception, [e.message for e in presenter.exception]
    code = presenter.session_state["room_presented"]["code"]
    phone = open_page("join", room=code)
    assert "take a photo or upload" in texts(phone)
    store = rs.SqliteRoomStore(env / "rooms.sqlite3")
    current = store.room(code)
    assert current.dataset == "fashion-mnist"
    photo = Image.new("RGB", (640, 480), (245, 245, 240))
    photo.paste((40, 60, 160), (200, 80, 440, 420))  # a dark garment-like block on a light table
    buf = io.BytesIO()
    photo.save(buf, format="JPEG")
    from ui import room

    result = room.submit_image(current, "photo-phone", buf.getvalue(), "photo.jpg", room_store=store)
    assert 0 <= result.submission.predicted < 10
    stored = Image.open(io.BytesIO(store.since(code)[0].png))
    assert stored.size == (28, 28)  # the image as the model saw it, not the photo
