"""The study as its talk tells it: the 3 x 2 scenario grids, its three observations as numbers,
and its outlook answered with models.

Everything here reads what is shipped: the metrics from the checkpoints' cards
(:func:`cl.checkpoints.read_card`), the t-SNE coordinates from the shipped layouts
(:func:`cl.layouts.load_layout`), and the shape measure (:mod:`cl.structure`) from
``checkpoints/study.json``, which :func:`build_structure` writes (it is the only step that runs
the models: it embeds each checkpoint's test gallery). ``python -m cl study --out DIR`` writes the
figures and tables for slides with :func:`write_study`.

The grids: rows are the augmentation (none / FER / SimCLR), columns the loss (pairwise cosine /
triplet), as on the study's slides. The outlook models (:data:`OUTLOOK`) all use the study's
encoder and the triplet scenarios' budget (paper recipe, SGD lr 0.15, 10 epochs, batch 1,024) with
SimCLR augmentation. Their loss settings are the library's defaults, recorded in each card's
config: triplet and contrastive margin 1.0 (on the encoder's sigmoid outputs, as the study's
triplet), NT-Xent temperature 0.5 (SimCLR's), SupCon temperature 0.1 (its paper's). The pair and
plain-triplet models reuse one SimCLR view per image drawn once (the study's "augment once"); the
view losses (NT-Xent, SupCon) and the mined triplets pair each un-augmented image with a fresh
SimCLR view every epoch. Labels: NT-Xent never reads them (the batch's other images are its
negatives); random negatives draw negatives from all images, and every image is an anchor while no
class exceeds the study's 5,000-per-class cap (true for the data here), so neither needs labels
to train; tests/cl/test_study.py checks both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .catalog import PAPER_AUGMENTATIONS
from .checkpoints import Card, as_card, write_atomically
from .checkpoints import shipped_checkpoints_dir as checkpoints_dir
from .reference import NO_LABELS, OUTLOOK, PAPER_TABLE, outlook_names, outlook_train_args, scenario_name  # noqa: F401 - re-exported for pages and tests
from .uncertainty import DIFFERENCE_METHOD

# The study's grid is PAPER_TABLE's keys, in its order: per data set, augmentations (rows) x losses (columns).
DATASETS = tuple(dict.fromkeys(d for d, _aug, _loss in PAPER_TABLE))
ROWS = PAPER_AUGMENTATIONS
COLS = tuple(dict.fromkeys(loss for _d, _aug, loss in PAPER_TABLE))
DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10"}
AUG_TITLES = {"none": "no augmentation", "fer": "FER", "simclr": "SimCLR"}
STRUCTURE_FILE = "study.json"

def paper_figures(dataset: str, aug: str, loss: str) -> tuple[float, float, float] | None:
    return PAPER_TABLE.get((dataset, aug, loss))


def study_best(dataset: str) -> tuple[str, tuple[float, float, float]]:
    """The study's best scenario on ``dataset`` by linear accuracy: (name, its figures)."""
    (d, aug, loss), figs = max(((k, v) for k, v in PAPER_TABLE.items() if k[0] == dataset), key=lambda kv: kv[1][0])
    return scenario_name(d, aug, loss), figs


# ------------------------------------------------------------------ reading what is shipped
def card_figures(path: str | os.PathLike) -> dict | None:
    """Paper-protocol figures and data of one checkpoint, from its card; ``None`` if missing."""
    from .errors import UserError

    try:
        card = Card.read(path)
    except (UserError, OSError, ValueError):
        return None
    m, d = card.figures("paper"), card.data
    if m.linear_acc is None or m.top3_acc is None or m.knn_acc is None:
        return None
    from .measures import collapse

    ms = card.measures or {}
    return {"acc": float(m.linear_acc), "top3": float(m.top3_acc), "knn": float(m.knn_acc),
            "collapsed": collapse(ms), "uniformity": ms.get("uniformity"), "rankme": ms.get("rankme"),
            "embedding_dim": ms.get("embedding_dim"),
            "n_test": int(m.n_test or 0), "test_split": m.split or "test",
            "n_train": int(d.n_images), "n_full": int(d.n_full or 0),
            "complete": bool(d.complete), "seconds": float(card.training.seconds),
            "config": card.config, "command": card.command or ""}


def train_images_text(f: dict) -> str:
    return f"{f['n_train']:,}" + ("" if f["complete"] else f" of {f['n_full']:,}")


def layout_of(path: str | os.PathLike, compute: bool = False) -> tuple[np.ndarray, np.ndarray, str] | None:
    """``(xy, labels, source)``: the shipped t-SNE layout of the checkpoint's test gallery, or,
    when that is missing or stale and ``compute`` is true, a fresh t-SNE of the gallery's
    embeddings (:func:`cl.projection.project`, seed 0). ``None`` when neither is possible."""
    from .layouts import read_layouts

    data = read_layouts(path)
    if data is not None and "tsne" in data:
        meta = data["meta"]
        return (data["tsne"], data["labels"].astype(np.int64),
                f"{meta.get('n', len(data['labels'])):,} images of the {meta.get('gallery', 'test gallery')}")
    if not compute:
        return None
    emb, labels, source = _gallery_embedding(path)
    if emb is None:
        return None
    from .projection import ProjectionParams, project

    return project(emb, ProjectionParams("tsne")), labels, source


def _gallery_embedding(path):
    from .checkpoints import load_checkpoint
    from .evaluation import embed
    from .layouts import gallery_for

    model, card = load_checkpoint(path)
    dataset = as_card(card).data.dataset
    gallery = gallery_for(dataset) if dataset else None
    if gallery is None:
        return None, None, None
    return embed(model, gallery.images), gallery.labels.numpy(), f"{len(gallery):,} images of the {gallery.source}"


# ------------------------------------------------------------------ the shape measure, shipped
def build_structure(names: list[str], ckpt_dir: str | os.PathLike | None = None, progress=print) -> Path:
    """Embed each named checkpoint's test gallery, measure its shape (:func:`cl.structure.shape`)
    and write ``checkpoints/study.json`` (entries for other checkpoints are kept)."""
    from .layouts import weights_digest

    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    out = ckpt_dir / STRUCTURE_FILE
    entries = _read_structure_file(out)
    for name in names:
        path = ckpt_dir / f"{name}.safetensors"
        if not path.exists():
            continue
        emb, labels, source = _gallery_embedding(path)
        if emb is None:
            continue
        lin, elo, per_class = measure_shape(emb, labels)
        entries[name] = {"linearity": round(lin, 4), "elongation": round(elo, 3), "n_images": int(len(labels)),
                         "data": source, "weights_sha256": weights_digest(path),
                         "per_class_linearity": {str(k): round(v, 4) for k, v in per_class.items()}}
        if progress:
            progress(f"structure {name}: linearity {lin:.3f}, elongation {elo:.2f} ({source})")
    write_atomically(out, json.dumps({"format": "contrastive-explorer-study/1",
                                      "measure": "cl.structure.shape: mean over classes of s1^2/sum(s_i^2) "
                                                 "(linearity) and s1/s2 (elongation) of the centred class embeddings",
                                      "models": dict(sorted(entries.items()))}, indent=1, sort_keys=True).encode())
    return out


def measure_shape(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float, dict]:
    """(mean linearity, mean elongation, {class: linearity}) by :mod:`cl.structure`."""
    from . import structure

    s = structure.shape(embeddings, labels)
    return s.linearity, s.elongation, {k: v["linearity"] for k, v in s.per_class.items()}


def _read_structure_file(path: Path) -> dict:
    try:
        return dict(json.loads(path.read_text()).get("models") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def load_structure(ckpt_dir: str | os.PathLike | None = None, check: bool = True) -> dict:
    """name -> shape entry from ``checkpoints/study.json``; with ``check``, entries whose
    checkpoint's weights changed since (or vanished) are dropped, so a value is never stale."""
    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    entries = _read_structure_file(ckpt_dir / STRUCTURE_FILE)
    if not check:
        return entries
    from .layouts import weights_digest

    good = {}
    for name, e in entries.items():
        path = ckpt_dir / f"{name}.safetensors"
        try:
            if weights_digest(path) == e.get("weights_sha256"):
                good[name] = e
        except OSError:
            pass
    return good


# ------------------------------------------------------------------ the three observations
def grid_figures(ckpt_dir=None) -> dict[str, dict]:
    """name -> card figures for the 12 paper scenarios that are here."""
    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    out = {}
    for d in DATASETS:
        for a in ROWS:
            for loss in COLS:
                f = card_figures(ckpt_dir / f"{scenario_name(d, a, loss)}.safetensors")
                if f is not None:
                    out[scenario_name(d, a, loss)] = f
    return out


def scenario_table(cards: dict[str, Card | dict]) -> list[dict]:
    """The study's 12 scenarios (:data:`PAPER_TABLE`), each beside the checkpoint named after it
    (:func:`scenario_name`), from ``cards`` (checkpoint name -> card). Matched by name, never by
    config: the outlook models (``mnist-simclr-triplet-batch-hard``, ...) share a scenario's data
    set, augmentation and loss but are other models. ``checkpoint`` is None where none is here."""
    def fig(card: Card, key: str):
        v = getattr(card.figures("paper"), key)
        return round(float(v), 3) if v is not None else None

    rows = []
    for (data, aug, loss), (acc, top3, knn) in PAPER_TABLE.items():
        row = {"data set": data, "augmentation": aug, "loss": loss, "paper acc": acc, "paper top-3": top3,
               "paper kNN": knn, "ours acc": None, "ours top-3": None, "ours kNN": None, "ours test images": None,
               "ours train images": None, "checkpoint": None}
        name = scenario_name(data, aug, loss)
        if cards.get(name) is not None:
            card = as_card(cards[name])
            d = card.data
            row.update({"ours acc": fig(card, "linear_acc"), "ours top-3": fig(card, "top3_acc"),
                        "ours kNN": fig(card, "knn_acc"),
                        "ours test images": card.figures("paper").n_test,
                        "ours train images": f"{d.n_images:,}" + ("" if d.complete else f" of {d.n_full:,}"),
                        "checkpoint": name})
        rows.append(row)
    return rows


def observations(figures: dict[str, dict], structure: dict) -> dict:
    """The study's three observations as numbers computed from our checkpoints (and, beside
    them, the study's own figures).

    1. ``augmentation``: per data set and loss, linear accuracy none -> FER -> SimCLR and the two
       changes, each with Newcombe's 95 % interval and a verdict (:func:`cl.uncertainty.verdict`:
       ``higher``, ``lower`` or ``within noise``); ``not_monotone`` lists the (data set, loss)
       where a stronger augmentation lowered it by more than its noise, ``within_noise`` those
       where it lowered it by less (counted as no change), ``not_monotone_paper`` the study's own
       decreases (its report gives no counts to test them with).
    2. ``gain``: per data set, the mean over losses of (best augmented accuracy - no-augmentation
       accuracy), ours and the study's.
    3. ``shape``: per data set and augmentation, the linearity of pairwise and of triplet, and how
       many of the scenario pairs have pairwise more line-like than triplet.
    """
    from .uncertainty import difference

    aug_rows, not_monotone, not_monotone_paper, within_noise = [], [], [], []
    gain = {}
    for d in DATASETS:
        gains, gains_paper = [], []
        for loss in COLS:
            ours = [figures.get(scenario_name(d, a, loss), {}).get("acc") for a in ROWS]
            paper = [PAPER_TABLE[(d, a, loss)][0] for a in ROWS]  # the grid is the table's keys
            n_test = next((figures[scenario_name(d, a, loss)]["n_test"] for a in ROWS
                           if scenario_name(d, a, loss) in figures), None)
            scored = [float(x) for x in ours if x is not None]
            complete = len(scored) == len(ours)
            changes = []
            if complete and n_test:
                for i, j in ((0, 1), (1, 2)):
                    diff = difference(scored[j], n_test, scored[i], n_test)
                    verdict = ("within noise" if not diff["effect"] else "higher" if diff["diff"] > 0 else "lower")
                    changes.append({"from": ROWS[i], "to": ROWS[j], "diff": diff["diff"], "low": diff["low"],
                                    "high": diff["high"], "verdict": verdict})
            aug_rows.append({"dataset": d, "loss": loss, "ours": ours, "paper": paper, "n_test": n_test,
                             "changes": changes})
            if complete:
                if any(c["verdict"] == "lower" for c in changes):
                    not_monotone.append(f"{d} {loss}")
                elif any(c["diff"] < 0 for c in changes):
                    within_noise.append(f"{d} {loss}")
                gains.append(max(scored[1], scored[2]) - scored[0])
            if paper[2] < paper[1] or paper[1] < paper[0]:
                not_monotone_paper.append(f"{d} {loss}")
            gains_paper.append(max(paper[1], paper[2]) - paper[0])
        gain[d] = {"ours": float(np.mean(gains)) if gains else None, "paper": float(np.mean(gains_paper))}
    shape_rows = []
    wins = total = 0
    for d in DATASETS:
        for a in ROWS:
            p = structure.get(scenario_name(d, a, "pairwise"), {}).get("linearity")
            t = structure.get(scenario_name(d, a, "triplet"), {}).get("linearity")
            shape_rows.append({"dataset": d, "augmentation": a, "pairwise": p, "triplet": t,
                               "n_images": structure.get(scenario_name(d, a, "pairwise"), {}).get("n_images")})
            if p is not None and t is not None:
                total += 1
                wins += p > t
    return {"augmentation": aug_rows, "not_monotone": not_monotone, "within_noise": within_noise,
            "not_monotone_paper": not_monotone_paper, "difference_method": DIFFERENCE_METHOD,
            "gain": gain, "shape": shape_rows, "pairwise_more_linear": (wins, total)}


def outlook_rows(ckpt_dir=None, structure: dict | None = None) -> list[dict]:
    """One row per outlook model that is here, with the study's best scenario and our reproduction
    of it for comparison."""
    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    structure = structure or {}
    rows = []
    for d in DATASETS:
        best_name, best_paper = study_best(d)
        ours_best = card_figures(ckpt_dir / f"{best_name}.safetensors")
        for model in OUTLOOK:
            suffix, title, labels_text = model.suffix, model.title, model.labels_text
            name = f"{d}-simclr-{suffix}"
            f = card_figures(ckpt_dir / f"{name}.safetensors")
            if f is None:
                continue
            rows.append({"model": name, "dataset": d, "what": title, "labels": labels_text,
                         "uses_labels": suffix not in NO_LABELS,
                         **{k: f[k] for k in ("acc", "top3", "knn", "n_test", "seconds", "collapsed", "uniformity",
                                              "rankme", "embedding_dim")},
                         "train_images": train_images_text(f),
                         "linearity": structure.get(name, {}).get("linearity"),
                         "study_best": best_name, "study_best_paper": best_paper,
                         "study_best_ours": (ours_best["acc"], ours_best["top3"], ours_best["knn"]) if ours_best else None,
                         "vs_our_best": round(f["acc"] - ours_best["acc"], 4) if ours_best else None,
                         "vs_study_best": round(f["acc"] - best_paper[0], 4)})
    return rows


def fmt3(values) -> str:
    return " / ".join("-" if v is None else f"{v:.3f}" for v in values)


def fmt2(values) -> str:
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def outlook_markdown(rows: list[dict]) -> str:
    lines = ["| model | labels | linear / top-3 / kNN (paper protocol) | images scored | train images | seconds | "
             "linearity | vs the study's best: study / ours (linear) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        best_ours = f"{r['study_best_ours'][0]:.3f}" if r["study_best_ours"] else "-"
        lin = f"{r['linearity']:.3f}" if r["linearity"] is not None else "-"
        lines.append(f"| {r['model']} | {'yes' if r['uses_labels'] else '**none**'} | {fmt3((r['acc'], r['top3'], r['knn']))} | "
                     f"{r['n_test']:,} test | {r['train_images']} | {r['seconds']:.0f} | {lin} | "
                     f"{r['study_best']}: {r['study_best_paper'][0]:.2f} / {best_ours} |")
    return "\n".join(lines)


def observations_markdown(obs: dict) -> str:
    out = ["| observation | data set | loss / augmentation | ours | study | computed on |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in obs["augmentation"]:
        said = "; ".join(f"{c['diff']:+.3f} {c['verdict']}" for c in r.get("changes") or [])
        out.append(f"| 1. accuracy none -> FER -> SimCLR | {r['dataset']} | {r['loss']} | {fmt3(r['ours'])}"
                   + (f" ({said})" if said else "") + f" | {fmt2(r['paper'])} | paper protocol, "
                   f"{r['n_test'] or 0:,} test images scored |")
    for d, g in obs["gain"].items():
        ours = "-" if g["ours"] is None else f"{g['ours']:+.3f}"
        out.append(f"| 2. mean gain of the best augmentation over none | {d} | both | {ours} | {g['paper']:+.3f} | "
                   "linear accuracy, as above |")
    for r in obs["shape"]:
        vals = " / ".join("-" if v is None else f"{v:.3f}" for v in (r["pairwise"], r["triplet"]))
        out.append(f"| 3. linearity pairwise / triplet | {r['dataset']} | {r['augmentation']} | {vals} | (t-SNE pictures) | "
                   f"{r['n_images'] or 0:,} test-gallery images |")
    return "\n".join(out)


# ------------------------------------------------------------------ figures for slides
def _noise(n: int) -> str:
    """``", each +-0.02 at most (95 %)"``: the widest Wilson interval of an accuracy on ``n`` images."""
    from .uncertainty import half_width

    return f", each +-{half_width(n):.2f} at most (95 %)" if n else ""


def _panel(ax, xy, labels, classes, title, caption):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(k) % 10) for k in labels], s=2.5, linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=15, fontweight="bold")
    ax.set_xlabel(caption, fontsize=11.5)


def _missing(ax, title, text):
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=15, fontweight="bold")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=ax.transAxes, wrap=True)


def _legend(fig, classes):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cmap = plt.get_cmap("tab10")
    handles = [Line2D([], [], marker="o", ls="", color=cmap(i), label=c) for i, c in enumerate(classes)]
    ncol = min(10, len(classes)) if max(len(c) for c in classes) <= 3 else 5  # long names: two rows
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=11, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


def scenario_grid_figure(dataset: str, out: Path, ckpt_dir=None, structure: dict | None = None,
                         compute: bool = True) -> Path:
    """The 3 x 2 grid PNG (rows none / FER / SimCLR, columns pairwise / triplet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import SPECS

    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    structure = structure or {}
    classes = list(SPECS[dataset].classes)
    fig, axes = plt.subplots(3, 2, figsize=(11, 15.5))
    sources = set()
    for i, a in enumerate(ROWS):
        for j, loss in enumerate(COLS):
            name = scenario_name(dataset, a, loss)
            path = ckpt_dir / f"{name}.safetensors"
            title = f"{AUG_TITLES[a]} / {loss}"
            f = card_figures(path)
            lay = layout_of(path, compute=compute) if path.exists() else None
            if f is None or lay is None:
                _missing(axes[i, j], title, f"{name}: not here")
                continue
            xy, labels, source = lay
            sources.add(source)
            paper = paper_figures(dataset, a, loss)
            lin = structure.get(name, {}).get("linearity")
            caption = (f"ours {fmt3((f['acc'], f['top3'], f['knn']))}   study {fmt2(paper)}"
                       + (f"\nlinearity {lin:.2f}" if lin is not None else ""))
            _panel(axes[i, j], xy, labels, classes, title, caption)
    any_f = next(iter(grid_figures(ckpt_dir).values()), None)
    fig.suptitle(f"{DATASET_TITLES[dataset]}: the study's six scenarios (t-SNE of the test embeddings)", fontsize=17,
                 fontweight="bold", y=0.995)
    n_test = next((g["n_test"] for k, g in grid_figures(ckpt_dir).items() if k.startswith(dataset + "-")), 0)
    n_train = next((train_images_text(g) for k, g in grid_figures(ckpt_dir).items() if k.startswith(dataset + "-")), "?")
    fig.text(0.5, 0.045, f"Captions: linear / top-3 / kNN-30 accuracy, paper protocol ({n_test:,} {dataset} test images "
             f"scored{_noise(n_test)}); ours trained on {n_train} train images. Points: {'; '.join(sorted(sources))}.",
             ha="center", fontsize=10, wrap=True)
    _legend(fig, classes)
    fig.tight_layout(rect=(0, 0.06, 1, 0.985))
    del any_f
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def outlook_grid_figure(dataset: str, out: Path, ckpt_dir=None, structure: dict | None = None,
                        compute: bool = True) -> Path:
    """The outlook models' t-SNE grid (3 x 2) with their figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data import SPECS

    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    structure = structure or {}
    classes = list(SPECS[dataset].classes)
    fig, axes = plt.subplots(3, 2, figsize=(11, 15.5))
    best_name, best_paper = study_best(dataset)
    n_test, n_train, sources = 0, "?", set()
    for k, model in enumerate(OUTLOOK):
        suffix, title = model.suffix, model.title
        ax = axes[k // 2, k % 2]
        name = f"{dataset}-simclr-{suffix}"
        path = ckpt_dir / f"{name}.safetensors"
        f = card_figures(path)
        lay = layout_of(path, compute=compute) if f is not None else None
        head = title + (" (no labels)" if suffix in NO_LABELS else "")
        if f is None or lay is None:
            _missing(ax, head, f"{name}: not trained here yet\n(python -m cl grid --preset outlook)")
            continue
        n_test, n_train = f["n_test"], train_images_text(f)
        xy, labels, source = lay
        sources.add(source)
        lin = structure.get(name, {}).get("linearity")
        _panel(ax, xy, labels, classes, head, f"ours {fmt3((f['acc'], f['top3'], f['knn']))}"
               + (f"   linearity {lin:.2f}" if lin is not None else ""))
    fig.suptitle(f"{DATASET_TITLES[dataset]}: the outlook, SimCLR augmentation, the study's encoder and triplet budget\n"
                 f"(the study's best scenario, {best_name}: {fmt2(best_paper)})", fontsize=15, fontweight="bold", y=0.995)
    fig.text(0.5, 0.045, f"Captions: linear / top-3 / kNN-30 accuracy, paper protocol ({n_test:,} {dataset} test images "
             f"scored{_noise(n_test)}); trained on {n_train} train images. Points: {'; '.join(sorted(sources)) or '-'}.",
             ha="center", fontsize=10, wrap=True)
    _legend(fig, classes)
    fig.tight_layout(rect=(0, 0.06, 1, 0.975))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def write_study(out_dir: str | os.PathLike, ckpt_dir=None, datasets=DATASETS, compute: bool = True,
                progress=print) -> dict:
    """Write ``D-scenarios.png``, ``D-outlook.png`` per data set, and ``study.md`` (the outlook
    table against the study's best scenario, and the three observations' numbers)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = Path(ckpt_dir or checkpoints_dir())
    structure = load_structure(ckpt_dir)
    files = []
    for d in datasets:
        files.append(scenario_grid_figure(d, out / f"{d}-scenarios.png", ckpt_dir, structure, compute))
        files.append(outlook_grid_figure(d, out / f"{d}-outlook.png", ckpt_dir, structure, compute))
        if progress:
            progress(f"figures {files[-2].name}, {files[-1].name}")
    obs = observations(grid_figures(ckpt_dir), structure)
    rows = outlook_rows(ckpt_dir, structure)
    text = ("# The study, reproduced\n\nAll accuracies: paper protocol (logistic regression fitted on a seeded 80 % of "
            "the test embeddings, scored on the other 20 %; the number scored is given). Train images: the "
            "partial MNIST train split (17,387 of 60,000) and the CIFAR-10 subset (5,085 of 50,000) of this "
            "project's data directory. Linearity: `cl.structure.shape` on the test-gallery embeddings.\n\n"
            "## The outlook models against the study's best scenario\n\n" + outlook_markdown(rows)
            + "\n\n## The three observations\n\n" + observations_markdown(obs) + "\n")
    (out / "study.md").write_text(text)
    (out / "study.json").write_text(json.dumps({"observations": obs, "outlook": rows}, indent=1, default=float))
    files += [out / "study.md", out / "study.json"]
    return {"files": [str(f) for f in files], "observations": obs, "outlook": rows}
