"""Live room, the audience's side (a phone): join by code, draw or take a photo, send, and see
where the picture landed on the room's map, what the model read and its nearest test images."""

import streamlit as st

from cl.errors import UserError
from cl.images import MAX_BYTES as MAX_IMAGE_BYTES
from ui import common, room, state
from ui import room_store as rs

state.context()  # the sidebar ran (the room brings its own model and data set)
phone = state.room_phone()
store = room.store()
raw_code = st.query_params.get("room")
code = rs.normalise_code(raw_code)

if code is None:
    st.title("Join a live room")
    if raw_code:
        st.error(f"'{raw_code}' is not a room code: a code is {rs.CODE_LENGTH} letters and digits, as shown on the "
                 "screen.", icon=":material/error:")
    typed = st.text_input("Room code", max_chars=12, placeholder="e.g. K7RMX", key="join_code")
    if st.button("Join", type="primary", key="join_go") and typed:
        if rs.normalise_code(typed):
            st.query_params["room"] = rs.normalise_code(typed)
            st.rerun()
        st.error(f"'{typed}' is not a room code: {rs.CODE_LENGTH} letters and digits, as shown on the screen.",
                 icon=":material/error:")
    st.stop()

try:
    current = store.room(code)
except rs.StoreUnavailable:
    st.error("The room cannot be reached just now; try again in a moment.", icon=":material/cloud_off:")
    st.stop()
if current is None:
    st.title(f"No room {code}")
    st.error(f"There is no open room {code}: it never existed, expired, or was lost. Check the code on the "
             "screen.", icon=":material/search_off:")
    st.stop()
if current.closed:
    st.title(f"Room {code} has closed")
    st.info("The presenter has closed this room; its drawings are deleted. Thanks for taking part!",
            icon=":material/lock:")
    st.stop()

session = state.session_id()
if code not in phone["joined"]:
    store.join(code, session)
    phone["joined"].append(code)

with common.user_errors():
    model = room.model_for(current)
classes = model.classes
drawing_set = current.dataset in ("mnist", "digits")
st.markdown(f"#### Room {code}: {'draw a digit' if drawing_set else 'take a photo or upload a picture'}")
st.caption("Draw with a finger, big and thick; the toolbar above the canvas undoes and clears." if drawing_set
           else "A photo of one object, filling the picture.")
if current.paused:
    st.info("The presenter has paused the room: wait a moment, then send.", icon=":material/pause:")


def show_result() -> None:
    """The last send's result, first on the page: a phone sees it without scrolling."""
    import torch

    got = phone.get("result")
    if not got or got["code"] != code:
        return
    res = got["result"]
    sub = res.submission
    st.success(f"Sent as #{sub.id}! The model reads it as **{classes[sub.predicted]}**"
               + (f" (you meant {classes[sub.meant]})" if sub.meant is not None else "") + ". Look at the screen.",
               icon=":material/check_circle:")
    c1, c2 = st.columns([1, 2])
    c1.image(res.preview, caption="what the model saw", width=112)
    with c2:
        st.image(got["map"], width="stretch")
        st.caption("Where it landed (red) among the test images (grey).")
    near = res.neighbours[:8]
    common.image_gallery(model.images[torch.tensor([h.index for h in near], dtype=torch.long)],
                         [classes[h.label] for h in near], ncol=4, scale=2)
    st.caption(f"Its {len(near)} nearest images among {model.describe()}. "
               f"You can send another in {rs.MIN_INTERVAL_S:.0f} s.")


show_result()
data, name = None, "image"
if drawing_set:
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:  # noqa: BLE001 - missing or failing to register: upload still works
        st_canvas = None
    if st_canvas is not None:
        canvas = st_canvas(stroke_width=22, stroke_color="#000000", background_color="#ffffff", height=300,
                           width=300, drawing_mode="freedraw", return_image_data=True, update_streamlit=True,
                           key=f"join_canvas_{phone['canvas']}")
        from ui import images as ui_images

        data = ui_images.canvas_png(canvas.image_data if canvas is not None else None)
        name = "your drawing"
    with st.expander("Or upload a picture"):
        upload = st.file_uploader("Image", key=f"join_upload_{phone['canvas']}",
                                  max_upload_size=common.upload_limit_mb(MAX_IMAGE_BYTES))
else:
    photo = st.camera_input("Photo", key=f"join_camera_{phone['canvas']}")
    upload = st.file_uploader("Or upload a picture", key=f"join_upload_{phone['canvas']}",
                              max_upload_size=common.upload_limit_mb(MAX_IMAGE_BYTES))
    if photo is not None:
        data, name = photo.getvalue(), "your photo"
if upload is not None:
    data, name = upload.getvalue(), upload.name
meant = st.pills("What did you mean? (optional)", list(range(len(classes))), format_func=lambda i: classes[i],
                 key=f"join_meant_{phone['canvas']}")

if st.button("Send", type="primary", icon=":material/send:", key="join_send", width="stretch"):
    if data is None:
        st.warning("Draw something first" if drawing_set else "Take a photo or choose a file first",
                   icon=":material/draw:")
    else:
        try:
            with st.spinner("Placing it on the map ..."):
                result = room.submit_image(current, session, data, name, None if meant is None else int(meant),
                                           room_store=store)
        except rs.RateLimited as err:
            st.warning(f"Not sent: {err}.", icon=":material/hourglass_top:")
        except rs.RoomGone:
            st.info("The room has closed in the meantime; nothing was sent.", icon=":material/lock:")
        except (UserError, rs.RoomError) as err:
            st.error(f"Not sent: {err}.", icon=":material/broken_image:")
        else:
            phone["result"] = {"code": code, "result": result,
                               "map": room.landed_png(current, result.submission.x, result.submission.y)}
            phone["canvas"] += 1  # a clean canvas and no leftover choice for the next drawing
            st.rerun()

