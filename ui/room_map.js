// The live room's map (ui/room.py live_map): the test gallery as grey dots and every submission
// as its own thumbnail, the newest framed in red. Each render brings only the rows after the last
// one this browser has ("from"); the browser keeps what it has, per room, in `rooms`.
const rooms = new Map();
// when each submission reached this browser, by id: what benchmarks/roomload.py measures
window.roomArrivals = window.roomArrivals || {};

function draw(canvas, st, height) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 800;
  canvas.style.height = height + "px";
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const bg = st.bg;
  if (!bg) return;
  const pad = 36;
  const scale = Math.min((width - 2 * pad) / (bg.span[0] || 1), (height - 2 * pad) / (bg.span[1] || 1));
  const ox = (width - scale * bg.span[0]) / 2, oy = (height - scale * bg.span[1]) / 2;
  const px = (x) => ox + (x - bg.lo[0]) * scale;
  const py = (y) => height - (oy + (y - bg.lo[1]) * scale);
  ctx.fillStyle = "rgba(120,120,120,0.35)";
  for (let i = 0; i < bg.x.length; i++) {
    ctx.beginPath();
    ctx.arc(px(bg.lo[0] + bg.x[i] * bg.step), py(bg.lo[1] + bg.y[i] * bg.step), 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  const side = Math.max(22, Math.min(44, width / 30));
  const shown = [...st.rows.values()].filter((r) => !st.hidden.has(r.id)).sort((a, b) => a.id - b.id);
  const newest = shown.length ? shown[shown.length - 1].id : -1;
  for (const r of shown) {
    const im = st.imgs.get(r.id);
    const big = r.id === newest ? 1.8 : 1;
    const s = side * big, x = px(r.x) - s / 2, y = py(r.y) - s / 2;
    ctx.lineWidth = r.id === newest ? 4 : 1.5;
    ctx.strokeStyle = r.id === newest ? "#e0312b" : "#1f5fa8";
    if (im && im.complete) ctx.drawImage(im, x, y, s, s);
    ctx.strokeRect(x, y, s, s);
  }
  canvas.dataset.shown = String(shown.length);
  canvas.dataset.newest = String(newest);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const canvas = parentElement.querySelector("canvas.room-map");
  if (!data || !canvas) return;
  let st = rooms.get(data.room);
  if (data.bg || !st || data.from > st.last) {
    if (!data.bg) {
      // this browser lacks earlier rows (the element was remounted): ask for all of them
      setTriggerValue("resync", Date.now());
      return;
    }
    st = { bg: data.bg, rows: new Map(), imgs: new Map(), hidden: new Set(), last: 0 };
    rooms.set(data.room, st);
  }
  const redraw = () => draw(canvas, st, data.height || 640);
  for (const r of data.rows) {
    if (!(r.id in window.roomArrivals)) window.roomArrivals[r.id] = Date.now();
    st.rows.set(r.id, r);
    const im = new Image();
    im.onload = redraw;
    im.src = r.png;
    st.imgs.set(r.id, im);
    st.last = Math.max(st.last, r.id);
  }
  st.hidden = new Set(data.hidden);
  redraw();
  const onResize = () => redraw();
  window.addEventListener("resize", onResize);
  return () => window.removeEventListener("resize", onResize);
}
