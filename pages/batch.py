"""Batch: what the loss sees, one training batch at a time (cl.batchview).

Deep link: /batch?model=mnist-simclr-triplet-batch-hard&loss=triplet&sampler=batch-hard&weights=untrained&seed=3
"""

import numpy as np
import streamlit as st

from cl.batchview import data_text, headline
from cl.data import resolve_data_dir
from cl.losses import LOSSES
from ui import batchview as view
from ui import common, own, state
from ui import images as ui_images
from ui.sidebar import LOSS_HELP

# Triplet losses: how the triplets are made; pair losses: how the negatives are drawn.
TRIPLET_SAMPLERS = {"study": "the study's: one drawn negative of another class",
                    "random": "random negatives: any other image, its class unseen",
                    "batch-hard": "batch-hard: each anchor's farthest positive, closest negative",
                    "semi-hard": "semi-hard: the closest negative beyond the positive"}
PAIR_SAMPLERS = {"study": "negatives of another class (the study)", "random": "random negatives: any other image"}
WEIGHTS = {"trained": "trained", "untrained": "untrained (epoch 0)"}
LINK = ("loss", "sampler", "weights", "seed", "anchors")
ANCHOR_CHOICES = (8, 12, 16)

EXPLAIN = {
    "pairwise": "Each line is one pair: an anchor with its own augmented copy (similar: the loss pulls their cosine "
                "towards 1) or with another image (dissimilar: pushed until their cosine is at most 0); a pair "
                "marked satisfied costs nothing.",
    "contrastive": "Each line is one pair: similar pairs cost their squared distance, dissimilar ones cost only "
                   "while they are closer than the margin; a pair marked satisfied costs nothing.",
    "study": "Every dot is a triplet the batch could make (an anchor, its positive, a negative of another class); "
             "above the upper line the negative is already a margin farther than the positive (easy: zero loss); "
             "the rings are the triplets the loss uses.",
    "random": "The negatives are drawn from every image, so a ring drawn as a cross is a negative of the anchor's own "
              "class (a false negative) that the loss still pushes away; the dots are the triplets the batch could "
              "make with true negatives.",
    "batch-hard": "For each anchor the miner takes its farthest positive and closest negative (rings) among all the "
                  "batch's triplets (dots); when every dot sits at distance 0 on the line 0, the model has collapsed: "
                  "all images on one point, each triplet costing exactly the margin.",
    "semi-hard": "For each anchor-positive pair the miner takes the closest negative that is still farther than the "
                 "positive, inside the margin band when there is one (rings), among all the batch's triplets (dots).",
    "ntxent": "Each row is an anchor (one augmented view): its loss is the cross-entropy of finding its other view "
              "(boxed) among the whole batch by cosine similarity; a cross marks an image of the same class that "
              "NT-Xent still pushes away (a false negative).",
    "supcon": "Each row is an anchor: every other image of its class in the batch is a positive (boxed), and the loss "
              "raises the softmax probability of the positives against all the others.",
}

ctx = state.context()
st.title("What the loss sees")
if ctx.model is not None and ctx.model.own:
    own.needs_a_model("Showing what the loss sees")
common.require_model(ctx)
m = ctx.model
mc = m.config
st.caption("One training batch, drawn as the model's recipe draws it (the same sampler, augmentations and loss), "
           "and each pair, triplet or anchor's share of the loss. Tap an anchor to see its row.")

# ---- the view's settings, from a pasted link first
key = f"batch_{m.path}"  # another model starts from its own loss and sampler
own_sampler = mc.get("mining") if mc.get("mining") not in (None, "none") else (
    "random" if mc.get("negatives") == "random" else "study")
link = {k: str(st.query_params[k]) for k in LINK if k in st.query_params}
if link and link != state.batch_link_written():
    bad = []
    if "loss" in link:
        (state.set_widget(f"{key}_loss", link["loss"]) if link["loss"] in LOSSES else bad.append("loss"))
    if "sampler" in link:
        (state.set_widget(f"{key}_sampler", link["sampler"]) if link["sampler"] in TRIPLET_SAMPLERS
         else bad.append("sampler"))
    if "weights" in link:
        (state.set_widget("batch_weights", link["weights"]) if link["weights"] in WEIGHTS else bad.append("weights"))
    if "anchors" in link:
        (state.set_widget("batch_anchors", int(link["anchors"])) if link["anchors"] in ("8", "12", "16")
         else bad.append("anchors"))
    if "seed" in link:
        try:
            seed_value = int(link["seed"])
            if not 0 <= seed_value < 2**31:
                raise ValueError
            state.set_widget("batch_seed", seed_value)
        except ValueError:
            bad.append("seed")
    if bad:
        st.info(f"The link's {', '.join(bad)} could not be used; showing the model's own setting instead.")

c1, c2 = st.columns(2)
own_loss = mc.get("loss") if mc.get("loss") in LOSSES else LOSSES[0]
if state.widget(f"{key}_loss") not in LOSSES:
    state.set_widget(f"{key}_loss", own_loss)
loss = c1.selectbox("Loss", list(LOSSES), key=f"{key}_loss", format_func=lambda x: LOSS_HELP.get(x, x),
                    help=f"The model was trained with {own_loss}; any other loss can look at the same batch.")
samplers = TRIPLET_SAMPLERS if loss == "triplet" else PAIR_SAMPLERS if loss in ("pairwise", "contrastive") else {}
sampler = "study"
if samplers:
    if state.widget(f"{key}_sampler") not in samplers:
        state.set_widget(f"{key}_sampler", own_sampler if own_sampler in samplers else "study")
    sampler = c2.selectbox("Triplets" if loss == "triplet" else "Negatives", list(samplers), key=f"{key}_sampler",
                           format_func=samplers.get)
if state.widget("batch_weights") not in WEIGHTS:
    state.set_widget("batch_weights", "trained")


def _next_batch() -> None:
    state.set_widget("batch_seed", int(state.widget("batch_seed", 0) or 0) + 1)


row = st.container(horizontal=True, wrap=True, vertical_alignment="bottom", gap="small")
weights = row.segmented_control("Model", list(WEIGHTS), key="batch_weights", format_func=WEIGHTS.get,
                                help="Untrained: the same architecture with the weights the recipe starts from "
                                     "(epoch 0), for this seed.") or "trained"
if not isinstance(state.widget("batch_seed"), int):
    state.set_widget("batch_seed", 0)
seed = int(row.number_input("Seed", 0, 2**31 - 1, key="batch_seed", width=130,
                            help="Seeds the sampler and the augmentations: another seed, another batch."))
row.button("Another batch", icon=":material/casino:", on_click=_next_batch, key="batch_next")
if state.widget("batch_anchors") not in ANCHOR_CHOICES:
    state.set_widget("batch_anchors", 16)
n_anchors = row.segmented_control("Anchors", ANCHOR_CHOICES, key="batch_anchors",
                                  help="How many anchors the batch holds (8 images with two views are 16 anchors); "
                                       "the recipe's own batch is larger: see the command line's --batch-size.") or 16

want = {"loss": loss, "sampler": sampler if samplers else None, "weights": weights, "seed": str(seed),
        "anchors": None if n_anchors == 16 else str(n_anchors)}
for k in LINK:
    if want[k] is None and k in st.query_params:
        del st.query_params[k]
    elif want[k] is not None and st.query_params.get(k) != want[k]:
        st.query_params[k] = want[k]
state.set_batch_link_written({k: v for k, v in want.items() if v is not None})

mining = sampler if sampler in ("batch-hard", "semi-hard") else "none"
negatives = "random" if sampler == "random" else "label-aware"
with common.user_errors():
    data_root = str(resolve_data_dir().resolve())
    b = view.loss_batch(m.path, m.cid, weights == "untrained", loss, mining, negatives, seed, int(n_anchors), data_root)
s = b.summary()
urls = view.row_urls(b)

explain = EXPLAIN[sampler if loss == "triplet" else loss]
st.markdown(f"**{LOSS_HELP.get(loss, loss)}.** {explain}")
st.caption(f"{m.name} ({'untrained: epoch 0' if weights == 'untrained' else 'trained'}), the first batch of seed "
           f"{seed}: {s['n_images']} images from {data_text(b.data)}; the encoder in training mode (BatchNorm on "
           "this batch, as in a training step), float32.")
for note in b.data.get("notes", []):
    if "not on this machine" in note:
        st.caption(f":material/info: {note}.")

# ---- the picture, and the tapped anchor's row under it
anchors = view.anchors_of(b)
finite = np.where(np.isfinite(b.contributions), b.contributions, -np.inf)
owner = b.terms["anchor"] if b.family == "views" else b.terms["a"]
default_anchor = int(owner[int(np.argmax(finite))]) if len(finite) else int(anchors[0])
chart_key = f"batch_chart_{m.cid}_{loss}_{sampler}_{weights}_{seed}_{n_anchors}"  # a new batch starts from its own default
event = state.widget(chart_key)
selected = view.tapped(event, "anchor", "anchor" if b.family == "views" else "a")
if selected is None or selected not in set(int(a) for a in anchors):
    selected = default_anchor

if b.family == "views":
    chart = view.heatmap(b, urls, selected)
elif b.family == "triplets":
    chart = view.facenet(b, selected)
else:
    chart = view.pair_rows(b, urls, selected)
st.altair_chart(chart, on_select="rerun", selection_mode="anchor", key=chart_key,
                width="content" if b.family != "triplets" else "stretch")
if b.family == "triplets" and b.candidates and not b.candidates.get("listed"):
    st.caption(f"{b.candidates['total']:,} candidate triplets: counted, too many to draw.")
st.caption({"views": "Tap a row of the matrix to see that anchor's row.",
            "triplets": "Tap a ring to see that anchor's triplets; the faded dots are other anchors' candidates.",
            "pairs": "Tap an anchor's image (left) to see its pair."}[b.family])

label = view.label_of(b, selected)
st.subheader(f"Anchor {selected}: {label}")
if b.family == "views":
    t = b.terms
    pp = t["positive_probability"][selected]
    term = b.contributions[selected]
    pos = np.flatnonzero(b.matrix["positive"][selected])
    role = f" ({b.row_role[selected]})" if b.row_role[selected].startswith("view") else ""
    st.markdown(f"Image #{b.row_index[selected]}{role}; its loss "
                f"**{'-' if not np.isfinite(term) else format(term, '.3f')}**, probability of its "
                f"positive{'s' if len(pos) > 1 else ''} **{'-' if not np.isfinite(pp) else format(pp, '.1%')}**"
                + (f", {t['n_false_negatives'][selected]} false negative(s)" if loss == "ntxent" else "")
                + ("; no positive in this batch, so it adds nothing to the loss" if len(pos) == 0 else "") + ".")
    st.image(ui_images.grid_png(b.images[[selected, *pos]], ncol=1 + len(pos), scale=3),
             caption="the anchor, then its positive(s)")
    st.altair_chart(view.probability_bars(b, urls, selected), width="content")
else:
    t = b.terms
    mine = np.flatnonzero(t["a"] == selected)
    for k in mine:
        if b.family == "triplets":
            rows = [int(t["a"][k]), int(t["p"][k]), int(t["n"][k])]
            mark = "✓ satisfied (zero loss)" if t["satisfied"][k] else f"loss {b.contributions[k]:.3f}"
            fn = " · the negative is of the anchor's own class (false negative)" if t["false_negative"][k] else ""
            text = (f"anchor {view.label_of(b, rows[0])}, positive {view.label_of(b, rows[1])}, negative "
                    f"{view.label_of(b, rows[2])}: d(a,p) {t['d_ap'][k]:.3f}, d(a,n) {t['d_an'][k]:.3f}, "
                    f"{t['kind'][k]} · {mark}{fn}")
        else:
            rows = [int(t["a"][k]), int(t["b"][k])]
            measure = "cosine" if "cosine" in t else "distance"
            mark = "✓ satisfied (zero loss)" if t["satisfied"][k] else f"loss {b.contributions[k]:.3f}"
            text = (f"{'similar' if t['similar'][k] else 'dissimilar'} pair: {view.label_of(b, rows[0])} and "
                    f"{view.label_of(b, rows[1])}, {measure} {t[measure][k]:.3f} · {mark}")
        st.image(ui_images.grid_png(b.images[rows], ncol=len(rows), scale=3), caption=text)
    if b.family == "triplets" and b.candidates and b.candidates.get("listed"):
        cand = b.candidates
        here = cand["a"] == selected
        counts = {k: int((cand["kind"][here] == k).sum()) for k in ("easy", "semi-hard", "hard")}
        st.caption(f"This anchor's candidate triplets: {counts['easy']} easy, {counts['semi-hard']} semi-hard, "
                   f"{counts['hard']} hard.")


# ---- the batch in figures (below the picture: on a phone the tap and its row come first)
st.subheader("This batch in figures")
st.caption(headline(b))
if weights == "trained":
    with common.user_errors():
        before = view.loss_batch(m.path, m.cid, True, loss, mining, negatives, seed, int(n_anchors), data_root)
    st.caption(f"The same batch at epoch 0 (the untrained encoder): loss {before.value:.4f} (now {b.value:.4f}); "
               f"the batch's embeddings were {before.summary()['mean_embedding_distance']:.3g} apart on average "
               f"(now {s['mean_embedding_distance']:.3g}).")
metrics = st.container(horizontal=True, gap="small")
metrics.metric("Loss", f"{b.value:.4f}", help=f"What the loss class returns for this batch: the {b.reduction}.")
if b.family == "views":
    p = s["mean_positive_probability"]
    metrics.metric("Probability of the positive", "-" if p is None else f"{p:.1%}",
                   help=f"Mean over anchors; chance is {s['chance_probability']:.1%} (one of the other "
                        f"{s['n_anchors'] - 1}).")
    if loss == "ntxent":
        metrics.metric("False negatives", s["n_false_negative_pairs"],
                       help="Pairs (anchor, image of its own class) that NT-Xent treats as negatives.")
    else:
        metrics.metric("Anchors with a positive", f"{s['n_anchors_with_positive']} of {s['n_anchors']}")
elif b.family == "triplets":
    metrics.metric("Satisfied triplets", f"{s['n_satisfied']} of {s['n_picked']}", help="Triplets with zero loss.")
    sh = s["candidate_shares"]
    metrics.metric("Candidates easy / semi / hard", f"{sh['easy']:.0%} / {sh['semi-hard']:.0%} / {sh['hard']:.0%}",
                   help=f"{s['n_candidates']:,} candidate triplets in the batch.")
    metrics.metric("Mean distance", f"{s['mean_embedding_distance']:.3g}",
                   help="Between the batch's embeddings: near 0 when the model has collapsed.")
else:
    metrics.metric("Satisfied pairs", f"{s['n_satisfied']} of {len(b.contributions)}",
                   help=f"{s['n_similar']} similar, {s['n_dissimilar']} dissimilar pairs.")

with st.expander("Every term of the batch"):
    import pandas as pd

    table = pd.DataFrame({k: v for k, v in b.terms.items()})
    table.insert(0, "loss term", b.contributions)
    st.dataframe(table, hide_index=True)
    flags = (f"--loss {loss}" + (f" --mining {mining}" if mining != "none" else "")
             + (" --negatives random" if negatives == "random" else "")
             + (f" --batch-size {b.config['batch_size']}" if n_anchors != 16 else "")
             + (" --untrained" if weights == "untrained" else ""))
    st.caption(f"Their mean ({b.reduction}) is {b.mean_contribution():.6f}; the loss class returns {b.value:.6f}. "
               f"The same batch on the command line: `python -m cl batch {m.name}.safetensors {flags} --seed {seed} "
               f"--json`.")
