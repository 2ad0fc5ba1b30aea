"""Live room, the presenter's side: open a room for the active model, show its QR code and link,
and watch the audience's drawings land on the model's map as they arrive."""

import time

import numpy as np
import streamlit as st

from ui import common, room, state
from ui import room_store as rs

ctx = state.context()
st.title("Live room")
store = room.store()
presented = state.room_presented()
if not state.room_chosen_here() and state.room_cookie() is not None:
    # this browser opened a room before this session began (a reload, a restarted replica)
    remembered_code, remembered_secret = state.room_cookie()
    try:
        if store.is_presenter(remembered_code, remembered_secret):
            state.set_room_presented(remembered_code, remembered_secret)
            presented = state.room_presented()
    except rs.StoreUnavailable:
        pass
current = None
if presented:
    try:
        current = store.room(presented["code"])
    except rs.StoreUnavailable as err:
        st.error(f"{err}. The room's drawings are kept there; the page tries again on the next refresh.",
                 icon=":material/cloud_off:")
        st.stop()
    if current is None:
        st.warning(f"Room {presented['code']} is gone: it expired, or the room store lost it (a restart without "
                   "persistence). Open a new room.", icon=":material/warning:")
        state.set_room_presented(None)

if current is None or current.closed:
    if state.room_cookie() is not None and current is None:
        state.remember_room(None, None)  # this browser no longer presents the remembered room
    if current is not None and current.closed:
        st.info(f"Room {current.code} is closed and its drawings are deleted.", icon=":material/lock:")
    st.markdown("Ask the audience to draw: each phone opens a link (or scans a code), draws or takes a photo, and "
                "its picture lands on this map where the model puts it. The room uses the model chosen in the "
                "sidebar; MNIST with `mnist-best` is the classic.")
    common.require_model(ctx)
    m = ctx.model
    if m.dataset != ctx.dataset:
        st.info("The active model was trained on another data set; choose one of this data set's models.")
        st.stop()
    st.caption(f"{common.model_line(ctx)} A room stays open {rs.TTL_S // 3600} h at most; closing it deletes "
               f"its drawings. At most {rs.MAX_SUBMISSIONS} drawings, one per phone every {rs.MIN_INTERVAL_S:.0f} s.")
    if st.button(f"Open a room for {m.name}", type="primary", icon=":material/groups:", key="room_open"):
        with st.spinner("Loading the model and its map ..."), common.user_errors():
            room.room_model(m.path, m.cid, ctx.dataset)  # warm this process before the phones arrive
            try:
                new, secret = store.create_room(ctx.dataset, m.path, m.cid, m.name)
            except rs.RoomError as err:
                st.error(str(err), icon=":material/error:")
                st.stop()
        state.set_room_presented(new.code, secret)
        state.push_flash("success", f"Room {new.code} is open.")
        st.rerun()
    st.stop()

code, secret = current.code, presented["secret"]
state.remember_room(code, secret)
with common.user_errors():
    model = room.model_for(current)
classes = model.classes
base = room.public_base_url()
link = room.join_url(code, base)


def _close() -> None:
    store.close(code, secret)


def _unhide() -> None:
    back = state.widget("room_unhide")
    if back is not None:
        store.hide(code, secret, int(back), hidden=False)
        state.set_widget("room_unhide", None)  # the choice is done: the box is empty again


def _another() -> None:
    state.set_room_presented(None)


def _pause(paused: bool) -> None:
    store.pause(code, secret, paused)


def _resync() -> None:
    view = state.room_view()
    view.update(sent=0, bg_sent=False)


side, main = st.columns([1, 2.4])
with side:
    st.image(room.qr_png(link), width="stretch")
    st.markdown(f"## Room **{code}**")
    st.markdown(f"#### {link.split('://', 1)[-1]}")
    st.caption(f"{'Draw a digit' if current.dataset in ('mnist', 'digits') else 'Take a photo or upload'} on your "
               f"phone; the map is {current.model_name}'s t-SNE of {len(model.rows):,} {current.dataset} test images "
               f"({'shipped' if model.source == 'shipped' else 'computed here'}).")
    if room.is_local(link):
        st.warning("This link names this computer as localhost: phones cannot open it. Start the app with "
                   "`--server.address 0.0.0.0` and open this page by the machine's network address, or set "
                   "CL_PUBLIC_URL.", icon=":material/wifi_off:")
    if current.paused:
        st.button("Go on", on_click=_pause, args=(False,), icon=":material/play_arrow:", key="room_resume")
    else:
        st.button("Pause", on_click=_pause, args=(True,), icon=":material/pause:", key="room_pause")
    st.button("Close the room", on_click=_close, icon=":material/lock:", key="room_close",
              help="No more drawings; the room's drawings are deleted now.")
    st.button("Open another room", on_click=_another, icon=":material/add:",
              key="room_new", help="This room stays open until it expires or you close it.")


@st.fragment(run_every=1.0)
def live() -> None:
    view = state.room_view()
    try:
        new = store.since(code, max(view["rows"], default=0))
        hidden = store.hidden(code)
        counts = store.counts(code)
        fresh = store.room(code)
    except rs.StoreUnavailable as err:
        st.error(f"{err}. Retrying every second.", icon=":material/cloud_off:")
        return
    if fresh is None or fresh.closed:
        st.info(f"Room {code} has {'closed' if fresh is not None else 'expired'}.", icon=":material/lock:")
        return
    for r in new:
        view["rows"][r.id] = r
    rows = view["rows"]
    to_send = [rows[i] for i in sorted(rows) if i > view["sent"]]
    room.live_map(code, None if view["bg_sent"] else model, view["sent"], to_send, hidden, classes, key=f"map_{code}",
                  height=560, on_resync=_resync)
    view["bg_sent"] = True
    if to_send:
        view["sent"] = to_send[-1].id
    shown = [r for i, r in sorted(rows.items()) if i not in hidden]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Phones joined", counts.joined)
    c2.metric("Drew", counts.drew)
    c3.metric("Drawings", len(shown), help=f"{len(rows) - len(shown)} hidden" if len(rows) > len(shown) else None)
    said = [r for r in shown if r.meant is not None]
    right = sum(r.meant == r.predicted for r in said)
    c4.metric("Read right", f"{right} of {len(said)}" if said else "-",
              help="Among the drawings whose drawer said what they meant: how many the model read as that class.")
    if fresh.paused:
        st.info("Paused: phones are asked to wait.", icon=":material/pause:")
    if shown:
        counts_by_class = np.bincount([r.predicted for r in shown], minlength=len(classes))
        st.bar_chart({"class": classes, "drawings": counts_by_class.tolist()}, x="class", y="drawings", height=180,
                     x_label="how the model read them (majority of the 10 nearest images on the map)")
    recent = shown[-8:][::-1]
    if recent:
        st.caption("Newest first; the newest is framed in red on the map.")
        cols = st.columns(8)
        for col, r in zip(cols, recent, strict=False):
            col.image(r.png, width=56, caption=f"#{r.id} {classes[r.predicted]}")
            col.button("Hide", key=f"hide_{r.id}", on_click=store.hide, args=(code, secret, r.id))
    if len(rows) > len(shown):
        st.selectbox("Hidden drawings", sorted(hidden), index=None, placeholder="show one again", key="room_unhide",
                     format_func=lambda i: f"#{i}", on_change=_unhide)


with main:
    live()
st.caption(f"Room {code} closes by itself at {time.strftime('%H:%M', time.localtime(current.expires))} (server time); "
           "its drawings are deleted then.")
