"""Measure every shipped checkpoint (alignment, uniformity, RankMe, spectrum, cosine histograms)
and store the result in its card; write the table to docs/measures.md.

    python scripts/measure_checkpoints.py --data-dir DATA        # all, whole test splits
    python scripts/measure_checkpoints.py --only mnist-best --limit 2000   # some, on a sample
    python scripts/measure_checkpoints.py --table                          # docs/measures.md from the cards

Each card gets ``measures`` (see :mod:`cl.measures`; it names the data set, split, number of
images, augmentation and seed) through :func:`cl.checkpoints.rewrite_card`, which keeps the
tensor bytes identical; the script checks the weights' SHA-256 before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "checkpoints"
DOC = ROOT / "docs" / "measures.md"
HAND_WRITTEN = "<!-- sections below are written by hand; scripts/measure_checkpoints.py keeps them -->"


def measure_one(path: Path, data_dir, limit: int | None, seed: int) -> dict:
    from cl.checkpoints import load_checkpoint, read_card, rewrite_card, weights_sha256
    from cl.data import load_dataset
    from cl.measures import measure

    before = weights_sha256(path)
    model, card = load_checkpoint(path)
    dataset = card["data"]["dataset"]
    # the real test split, never the shipped gallery: the card must say what it measured
    test = load_dataset(dataset, "test", data_dir, download=False, allow_gallery=False)
    m = measure(model, test, card["config"]["augmentation"], seed=seed, limit=limit)
    card = read_card(path)
    card["measures"] = m
    rewrite_card(path, card)
    if weights_sha256(path) != before:  # rewrite_card promises this; a shipped file must never change
        raise SystemExit(f"{path.name}: the weights changed while rewriting the card")
    return m


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(ckpt_dir: Path = CKPT) -> str:
    from cl.checkpoints import read_card

    lines = ["| model | data (images measured) | augmentation | loss | alignment | uniformity | uniform sphere | "
             "RankMe / d | positive cos |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    missing = []
    for path in sorted(ckpt_dir.glob("*.safetensors")):
        card = read_card(path)
        m = card.get("measures")
        if not m:
            missing.append(path.stem)
            continue
        d, c = m["data"], card.get("config") or {}
        loss = c.get("loss", "?") + (f" ({c['mining']})" if c.get("mining") not in (None, "none") else "")
        if c.get("negatives") == "random":
            loss += " (random negatives)"
        lines.append(f"| {path.stem} | {d['dataset']} {d['split']}, {d['n_images']:,} | {m['augmentation']} | {loss} | "
                     f"{fmt(m.get('alignment'), '.3f')} | {fmt(m.get('uniformity'), '.3f')} | "
                     f"{fmt(m.get('sphere_uniformity'), '.3f')} | {fmt(m.get('rankme'), '.1f')} / {m['embedding_dim']} | "
                     f"{fmt(m.get('positive_cosine_mean'), '.3f')} |")
    if missing:
        lines.append(f"\nNot measured yet: {', '.join(missing)}.")
    return "\n".join(lines)


INTRO = """# How the shipped models shape their embedding space

Computed by `python scripts/measure_checkpoints.py --data-dir DATA` with `cl.measures`
(formulas in its docstring) and stored in each checkpoint's card (`measures`); the app's Metrics and
Compare pages read them from there. Every figure comes from the model's whole test split as shipped
here (MNIST and Fashion-MNIST 10,000 images, the CIFAR-10 subset 1,017, digits 540), with two views
of each image drawn by the model's own augmentation (seed 0).

- **alignment**: mean squared distance between the L2-normalised embeddings of two augmented views
  of one image (Wang & Isola 2020, alpha 2; 0 = the views land on one point, 4 = opposite). The
  models trained without augmentation (`*-none-*`) see two identical views: 0 by construction.
- **uniformity**: log of the mean of exp(-2 ||u_i - u_j||^2) over all pairs of normalised test
  embeddings (t = 2): 0 = everything on one point (collapse), lower = spread more evenly.
  **uniform sphere** is the value points spread uniformly on the model's sphere would reach
  (its dimension d: 32 for the study's encoder, 64 for ours), the floor.
- **RankMe**: exp of the entropy of the normalised singular values of the N x d embedding matrix
  as the model outputs it (Garrido et al. 2023): 1 = one direction (collapse), d = all used equally.
- **positive cos**: mean cosine between the two views of an image.

"""

NOTES = """

Reading it:

- **Collapse.** Three models have collapsed by the definition below: both
  `*-simclr-triplet-batch-hard` models put every test image on one point (uniformity -0.000,
  RankMe 1.0, the first singular value carries 99.6-99.9 % of the spectrum, linear probes at
  chance, 0.11), and `mnist-simclr-contrastive` squeezes them into a narrow cone (uniformity
  -0.004, RankMe 2.0, 89 % in one direction), though its probe still reads 0.52 from the tiny
  differences left. `cifar10-simclr-contrastive` is on its way but not there (-0.101, RankMe 6.9).
- **No augmentation, alignment 0.** The `*-none-*` models and `fashion-mnist-best` (trained
  without augmentation) see two identical views, so their alignment is 0 by construction; only
  uniformity and RankMe say something about them.
- **NT-Xent spreads most of the SimCLR models and aligns least of all** (uniformity / alignment:
  MNIST -2.28 / 0.99, CIFAR-10 -1.97 / 0.74): its loss pushes every other image of the batch away
  and pulls the views of one image only weakly together (mean cosine 0.50 and 0.63). On MNIST the
  un-augmented pairwise model spreads more still (-2.46).
- **SupCon with our ConvNet** (`mnist-best`): views almost coincide (alignment 0.027), uniformity
  -1.99 and RankMe 10.0 of 64, about one direction per class.

The issue that asked for these gave, from exported test embeddings, -0.000 / 1.0 for the collapsed
models, -1.99 / 10.0 for mnist-best and -2.25 / 13.0 for mnist-simclr-ntxent. Ours agree except
the last uniformity, -2.28 on all 10,000 MNIST test images: the first 3,000 of them give -2.25
(checked against torch.pdist in float64), the 2,000-image test gallery -2.27, so the figure moves
by a few hundredths with the images it is computed on.

## What "collapsed" means

One definition, in `cl.measures.collapse`, used by every page (Study, Compare's rings, Metrics,
Retrieval, Embedding), the command line (`python -m cl measures`) and new models' cards
(`measures.collapsed`): a model has **collapsed** when its uniformity is above -0.05 **and** its
effective rank (RankMe) is below 3. In words: every test image points in nearly the same
direction (a uniformity of -0.05 means the images sit inside a cone of about 9 degrees; two classes
at right angles would already give -0.67), and the embeddings use fewer than three directions.
Both together, because each alone misleads: embeddings on one line through the origin have RankMe
1 yet two far-apart groups. Accuracy is not part of the definition. A linear probe and a kNN vote
only compare distances, so they can still tell classes apart inside a collapsed space:
`mnist-simclr-triplet-batch-hard` reads kNN-30 0.775 although two of its test images' embeddings
are on average 0.0014 apart, 0.04 % of their length (3.46), where embeddings pointing in random
directions would be 141 % of it apart. t-SNE does the same: it keeps only who is whose neighbour and
gives every neighbourhood about the same size on the map, so it blows differences of 0.0014 up to
an ordinary-looking cloud. The Embedding page says so, with these numbers, above a collapsed
model's map (`cl.measures.spread` computes them exactly from the embeddings).

## How far to trust an accuracy

Every accuracy (linear probe, top-3, kNN-30) is a share of correctly classified test images, so
it is only as precise as the number of images scored. The app, `python -m cl evaluate` and
`python -m cl train`, and new cards give each one a **95 % interval**, written like
"0.62 (0.39-0.82, 16 images)": the accuracy would land in that range on most other draws of as
many test images. It is Wilson's score interval (`cl.uncertainty`), which stays inside 0-1 and
behaves for small counts and for accuracies near 0 or 1; the JSON outputs keep it under
`intervals` (value, low, high, images, correct). The interval says nothing about another training
seed: it is the noise of the scoring alone.

Some figures are flagged, with a sentence why, or not shown at all:

- **Too few images scored.** Below 93 images the interval is wider than +-0.10 for an accuracy
  near 0.5 (the worst case), which is wider than the differences the app compares (the study's
  scenarios differ by 0.05-0.2). The paper protocol scores 20 % of the test split, so a folder of
  a few hundred images gets such a warning. The shipped models are scored on 108 (digits), 204
  (CIFAR-10) and 2,000 images (MNIST, Fashion-MNIST): +-0.09, +-0.07 and +-0.02 at worst.
- **Top-3 with 3 classes or fewer** is 1 by construction (the three guesses hold every class) and
  is not shown; with 4 or 5 classes, chance alone reaches 0.75 or 0.6, and it is flagged.
- **kNN-30 with small classes**: when a class has fewer than 30 images among those the vote is
  fitted on, a 30-neighbour vote cannot be won by that class, so the figure leans to the larger
  classes; fitted on 30 images or fewer, it is the majority class for every image.
- **The per-epoch kNN curve** on the Train page carries each point's interval as a band; on fewer
  than 93 images it says its ups and downs are noise.

**A difference between two accuracies** is called an effect only when its own 95 % interval
(Newcombe's hybrid score interval, built from the two Wilson intervals) leaves out 0; otherwise the
Study page says *within noise*. It treats the two figures as independent; two models scored on the
same images are correlated, which only makes the true interval narrower, so the test is
conservative. On the shipped data a change must exceed about 0.03 on MNIST's 2,000 scored images
and about 0.09 on CIFAR-10's 204 to count: of the study's "stronger augmentation lowered accuracy"
cases, ours are all within noise (MNIST pairwise FER -> SimCLR -0.005; CIFAR-10 -0.020 and -0.088).

![Metrics: each accuracy with its 95 % interval and the number of images scored](img/metrics-intervals.png)

*The Metrics page for `digits-best`: under each accuracy its 95 % interval and the number of
test images it was scored on (108, the paper protocol's 20 % of the 540 digits test images).*
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--only", nargs="+", metavar="NAME", help="checkpoint names (default: every shipped one)")
    p.add_argument("--limit", type=int, help="measure a seeded random sample of this many test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", action="store_true", help="only write docs/measures.md from the cards")
    p.add_argument("--checkpoints", default=str(CKPT), help="folder of the checkpoints")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from cl.errors import UserError

    ckpt_dir = Path(args.checkpoints)
    if not args.table:
        paths = sorted(ckpt_dir.glob("*.safetensors"))
        if args.only:
            paths = [ckpt_dir / f"{n}.safetensors" for n in args.only]
        for path in paths:
            t0 = time.perf_counter()
            try:
                m = measure_one(path, args.data_dir, args.limit, args.seed)
            except UserError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            print(f"{path.stem:42s} alignment {m['alignment']:.3f}  uniformity {m['uniformity']:.3f}  "
                  f"RankMe {m['rankme']:.1f}/{m['embedding_dim']}  ({m['data']['n_images']:,} "
                  f"{m['data']['dataset']} test images, {time.perf_counter() - t0:.1f} s)", flush=True)
    if ckpt_dir.resolve() == CKPT.resolve():
        # Sections written by hand (the batch pictures, map trust) follow the marker and are kept.
        old = DOC.read_text() if DOC.exists() else ""
        kept = old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else ""
        DOC.write_text(INTRO + table(ckpt_dir) + NOTES + ("\n" + kept if kept else ""))
        print(f"wrote {DOC.relative_to(ROOT)}")
    else:
        print(table(ckpt_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
