"""``python -m cl``: the command line.

Every user error (bad argument, missing data, unreadable image, bad checkpoint) ends with exit
code 2 and one line on stderr. ``--json`` prints one JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from . import allocator, distributed
from .errors import ConfigError, UserError
from .reference import PAPER_TABLE


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**32), got {value}")
    return value


CONSOLE_SCRIPT = "contrastive-explorer"  # the installed command (pyproject.toml [project.scripts])


def _prog() -> str:
    """How the user called us, for usage lines and messages."""
    return CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "python -m cl"


def build_parser() -> argparse.ArgumentParser:
    from .augmentations import AUGMENTATIONS
    from .encoder import ENCODERS
    from .losses import LOSSES
    from .samplers import MINERS, NEGATIVES
    from .training import PRECISIONS, RECIPES

    p = _Parser(prog=_prog(), description="Contrastive Explorer: train and inspect contrastive encoders.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    d = sub.add_parser("datasets", help="list data sets, their sizes and whether they are available here")
    d.add_argument("--data-dir")
    d.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train an encoder and save a checkpoint")
    t.add_argument("--dataset", required=True)
    t.add_argument("--augmentation", choices=AUGMENTATIONS)
    t.add_argument("--loss", choices=LOSSES)
    t.add_argument("--recipe", choices=RECIPES, default="default")
    t.add_argument("--encoder", choices=ENCODERS)
    t.add_argument("--encoder-width", type=_positive_int, help="channels of the ConvNet's first layer")
    t.add_argument("--views", type=int, choices=(1, 2),
                   help="augmented views per image: 1 (SupCon positives from the batch) or 2")
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--optimizer", choices=("sgd", "adamw"))
    t.add_argument("--weight-decay", type=float, help="the optimiser's weight decay (0 or more)")
    t.add_argument("--temperature", type=_positive_float, help="NT-Xent / SupCon temperature")
    t.add_argument("--margin", type=float, help="margin of the pairwise, triplet and contrastive losses")
    t.add_argument("--max-per-class", type=_positive_int,
                   help="paper recipe: at most this many anchors per class (the study: 5,000)")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--negatives", choices=NEGATIVES, default="label-aware")
    t.add_argument("--mining", choices=MINERS, default="none")
    t.add_argument("--augment-once", dest="augment_once", action="store_const", const=True,
                   help="augment each positive once and reuse it every epoch (the study's behaviour)")
    t.add_argument("--fresh-augment", dest="augment_once", action="store_const", const=False,
                   help="fresh random augmentation every epoch")
    t.add_argument("--augment-anchor", dest="augment_anchor", action="store_const", const=True)
    t.add_argument("--no-augment-anchor", dest="augment_anchor", action="store_const", const=False)
    t.add_argument("--time-budget", type=_positive_float, help="stop training after this many seconds")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=_positive_int)
    t.add_argument("--precision", choices=PRECISIONS,
                   help="bf16: train under bfloat16 autocast; auto (our recipe's default): bf16 where the "
                        "hardware computes it natively; the paper recipe uses fp32")
    t.add_argument("--data-dir")
    t.add_argument("--no-eval", action="store_true", help="skip evaluating after training")
    t.add_argument("--tensorboard", metavar="DIR",
                   help="write a TensorBoard run into this new or empty folder: per-epoch loss, images/s, kNN-30, "
                        "alignment, uniformity, effective rank, and the test embeddings for the projector "
                        "(needs: pip install tensorboard)")
    t.add_argument("--out", required=True)
    t.add_argument("--json", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint, or embeddings made elsewhere (--embeddings)")
    e.add_argument("checkpoint", nargs="?")
    e.add_argument("--embeddings", metavar="FILE", help="an .npz or .parquet of embeddings with labels, instead of a "
                                                        "checkpoint (paper protocol)")
    e.add_argument("--protocol", choices=("paper", "standard"), default="paper")
    e.add_argument("--dataset", help="evaluate on this data set instead of the one in the card")
    e.add_argument("--data-dir")
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--json", action="store_true")

    n = sub.add_parser("neighbors", help="top-k test images most similar to an image file, or to one row of an "
                                         "embeddings file (--embeddings FILE --query ROW|PATH)")
    n.add_argument("checkpoint", nargs="?")
    n.add_argument("image", nargs="?")
    n.add_argument("--embeddings", metavar="FILE", help="an .npz or .parquet of embeddings, instead of a checkpoint")
    n.add_argument("--query", help="with --embeddings: the query row's number or its image path")
    n.add_argument("--k", type=_positive_int, default=10)
    n.add_argument("--invert", choices=("auto", "yes", "no"), default="auto")
    n.add_argument("--data-dir")
    n.add_argument("--json", action="store_true")

    g = sub.add_parser("grid", help="run the study's 12 scenarios and tabulate them beside the paper")
    g.add_argument("--preset", choices=("paper", "outlook"), required=True,
                   help="paper: the study's 12 scenarios; outlook: 6 SimCLR models per data set (mining, "
                        "contrastive, NT-Xent, SupCon, random negatives) with the triplet budget")
    g.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=("mnist", "cifar10"))
    g.add_argument("--augmentations", nargs="+", default=["none", "fer", "simclr"], choices=("none", "fer", "simclr"))
    g.add_argument("--losses", nargs="+", default=["pairwise", "triplet"], choices=("pairwise", "triplet"))
    g.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs (for quick checks)")
    g.add_argument("--seed", type=_seed, default=0)
    g.add_argument("--data-dir")
    g.add_argument("--out", required=True)
    g.add_argument("--json", action="store_true")

    s = sub.add_parser("study", help="the study's scenario grids, outlook grid and observations as PNG figures and a table")
    s.add_argument("--out", required=True)
    s.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"], choices=("mnist", "cifar10"))
    s.add_argument("--checkpoints", help="folder of the checkpoints (default: the shipped ones)")
    s.add_argument("--structure", action="store_true",
                   help="first (re)compute the shape measure of every grid and outlook model (runs the models)")
    s.add_argument("--json", action="store_true")

    x = sub.add_parser("export", help="write a checkpoint's embeddings for the Embedding Projector, NumPy or a "
                                      "spreadsheet, or the encoder as ONNX")
    x.add_argument("checkpoint")
    x.add_argument("--dataset", help="embed this data set instead of the one in the card (e.g. folder:PATH.zip)")
    x.add_argument("--split", choices=("test", "train"), default="test",
                   help="the images embedded (onnx: the images ONNX Runtime is checked on)")
    x.add_argument("--format", choices=("projector", "npz", "csv", "onnx"), required=True,
                   help="onnx: the encoder itself, its preprocessing in the model's metadata and export.json")
    x.add_argument("--data-dir")
    x.add_argument("--out", required=True, help="folder to write into (created if missing)")
    x.add_argument("--json", action="store_true")

    c = sub.add_parser("card", help="print a checkpoint's metadata card")
    c.add_argument("checkpoint")
    c.add_argument("--json", action="store_true")

    pr = sub.add_parser("project", help="2-D projection of a checkpoint's test embeddings, or of an embeddings file")
    pr.add_argument("checkpoint", nargs="?")
    pr.add_argument("--embeddings", metavar="FILE", help="an .npz or .parquet of embeddings, instead of a checkpoint")
    pr.add_argument("--method", choices=("tsne", "umap", "pca"), default="tsne")
    pr.add_argument("--limit", type=_positive_int)
    pr.add_argument("--seed", type=_seed, default=0)
    pr.add_argument("--data-dir")
    pr.add_argument("--out", help="write a PNG scatter here")
    pr.add_argument("--json", action="store_true")

    me = sub.add_parser("measures", help="alignment, uniformity, RankMe and cosine histograms of a checkpoint's "
                                          "test embeddings")
    me.add_argument("checkpoint")
    me.add_argument("--dataset", help="measure on this data set instead of the one in the card")
    me.add_argument("--limit", type=_positive_int, help="a seeded random sample of this many test images")
    me.add_argument("--augmentation", choices=AUGMENTATIONS, help="default: the model's own training augmentation")
    me.add_argument("--seed", type=_seed, default=0, help="seeds the sample and the augmented views")
    me.add_argument("--data-dir")
    me.add_argument("--json", action="store_true")

    pl = sub.add_parser("place", help="where K augmented views of one test image land on the model's 2-D layout")
    pl.add_argument("checkpoint")
    pl.add_argument("--index", type=int, required=True, help="which test-gallery image (0-based)")
    pl.add_argument("--k", type=_positive_int, default=16, help="number of augmented views (default 16)")
    pl.add_argument("--augmentation", help="default: the model's own training augmentation")
    pl.add_argument("--method", choices=("tsne", "umap", "pca"), default="tsne")
    pl.add_argument("--seed", type=_seed, default=0)
    pl.add_argument("--data-dir")
    pl.add_argument("--json", action="store_true")

    b = sub.add_parser("batch", help="one training batch as the checkpoint's recipe builds it: the pairs, triplets "
                                     "or anchors the loss sees and each one's share of the loss")
    b.add_argument("checkpoint")
    b.add_argument("--loss", choices=LOSSES, help="default: the model's own loss")
    b.add_argument("--mining", choices=MINERS, help="triplet loss: online mining (default: the model's own)")
    b.add_argument("--negatives", choices=NEGATIVES, help="the study's pairs and triplets: how negatives are drawn")
    b.add_argument("--seed", type=_seed, default=0, help="seeds the sampler and the augmentations (another batch)")
    b.add_argument("--batch-size", type=_positive_int, help="items in the batch (default: 16 anchors)")
    b.add_argument("--untrained", action="store_true",
                   help="the same architecture before training (epoch 0: the recipe's initial weights for --seed)")
    b.add_argument("--data-dir")
    b.add_argument("--json", action="store_true")

    return p


def _emit(args, payload: dict, text: str | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, default=_json_default))
    elif text is not None:
        print(text)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _progress_bar(args, total: int, desc: str):
    if args.json or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- commands
def cmd_datasets(args) -> int:
    from .data import SPECS, dataset_status

    rows = [dataset_status(name, args.data_dir) for name in SPECS]
    lines = [f"{'name':<14} {'train':>8} {'test':>7}  available  source"]
    for r in rows:
        partial = "" if r.get("train_complete", True) else " (partial)"
        lines.append(f"{r['name']:<14} {r['n_train']:>8,} {r['n_test']:>7,}  {'yes' if r['available'] else 'no':<9}  "
                     f"{r.get('train_source') or r.get('train_error', '')}{partial}")
    _emit(args, {"datasets": rows}, "\n".join(lines))
    return 0


def cmd_train(args) -> int:
    from .training import resolve_config
    from .workflow import config_from_args, make_model

    config = config_from_args(args)
    resolved = resolve_config(config)
    from .data import dataset_spec

    dataset_spec(args.dataset)
    bar = None
    state = {"bar": None}

    def progress(ev):
        if state["bar"] is None:
            state["bar"] = _progress_bar(args, ev["steps"] * ev["epochs"], f"train {args.dataset}")
        b = state["bar"]
        if b is not None:
            b.update(1)
            b.set_postfix(epoch=ev["epoch"], loss=f"{ev['loss']:.4f}", img_s=f"{ev['images_per_s']:.0f}")
        elif not args.json and ev["step"] == ev["steps"]:
            # No terminal (a log file, CI): one line per epoch instead of a bar.
            print(f"epoch {ev['epoch']}/{ev['epochs']}: last batch loss {ev['loss']:.4f}, "
                  f"{ev['elapsed']:.1f} s of training", file=sys.stderr, flush=True)

    from .training import pick_device

    with distributed.session(pick_device(resolved.device)):  # torchrun: join the other processes; else nothing
        made = make_model(resolved, args.out, data_dir=args.data_dir, evaluate=not args.no_eval,
                          progress=progress if distributed.is_main() else None, tensorboard=args.tensorboard)
        if not distributed.is_main():
            return 0  # rank 0 alone reports and writes
    card = made.card
    bar = state["bar"]
    if bar is not None:
        bar.close()
    saved = card.to_dict()  # the JSON as written: the payload repeats its parts unchanged
    payload = {"checkpoint": str(args.out), "dataset": args.dataset, "n_parameters": card.n_parameters,
               "n_train": card.data.n_images, "train_data": saved["data"], "epochs": resolved.epochs,
               "epochs_completed": card.training.epochs_completed, "seconds": card.training.seconds,
               "stopped": card.training.stopped, "metrics": saved["metrics"], "config": card.config,
               "tensorboard": args.tensorboard}
    text = (f"saved {args.out}: {card.n_parameters:,} parameters, trained {card.training.seconds:.1f} s on "
            f"{card.data.n_images:,} {args.dataset} train images")
    if "paper" in card.metrics:
        m = card.metrics["paper"]
        text += f"\npaper protocol on {m.n_test:,} {args.dataset} test images:\n" + _accuracy_lines(m.summary())
    if args.tensorboard:
        text += f"\nTensorBoard run in {args.tensorboard}: tensorboard --logdir {args.tensorboard}"
    _emit(args, payload, text)
    return 0


def _accuracy_lines(r: dict, extra: tuple[str, ...] = ()) -> str:
    """The three accuracies with their 95 % intervals, and why any of them is flagged or not shown."""
    from .uncertainty import figure_text, flags

    names = {"linear_acc": "linear probe", "top3_acc": "top-3", "knn_acc": "kNN-30"}
    lines = [f"  {names[k]:<13} {figure_text(r, k)}" for k in names if k in r] + list(extra)
    why = {f["why"] for f in flags(r).values()}
    lines += [f"  [!] {w}" for w in sorted(why)]
    lines.append("  (95 % Wilson score intervals from the number of images scored)")
    return "\n".join(lines)


def _load_for_eval(checkpoint: str, dataset: str | None, data_dir):
    if not checkpoint:
        raise ConfigError("name a checkpoint, or an embeddings file with --embeddings FILE")
    from .workflow import open_model

    opened = open_model(checkpoint, dataset, "test", data_dir)
    return opened.model, opened.card, opened.dataset, opened.data


def _rounded(value: float | None, digits: int) -> float | None:
    """``round`` that passes a missing figure through (a card without it, a query without a match scale)."""
    return None if value is None else round(value, digits)


def _precision_line(r: dict) -> tuple[str]:
    """Evaluate's precision@10 line, flagged when it cannot reach 1 (cl.uncertainty.flags)."""
    from .uncertainty import flags

    return (f"  precision@10  {r['precision_at_10']:.3f}" + (" [!]" if "precision_at_10" in flags(r) else ""),)


def _own_embeddings(args):
    """The checked embeddings file of ``--embeddings`` (never together with a checkpoint)."""
    from .own_embeddings import load_own_embeddings

    if args.checkpoint:
        raise ConfigError("give a checkpoint or --embeddings FILE, not both")
    return load_own_embeddings(args.embeddings)


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .evaluation import evaluate_embeddings, evaluate_model, preload_probe_modules

    preload_probe_modules()
    if args.embeddings:
        own = _own_embeddings(args)
        if not own.has_labels:
            raise ConfigError(f"{own.name}: has no labels; a probe and kNN need each row's class")
        if args.protocol != "paper":
            raise ConfigError("an embeddings file has no train split of its own: use --protocol paper")
        test_set = own.image_set()
        r = evaluate_embeddings(own.embeddings, test_set, "paper", seed=args.seed)
        payload = {k: v for k, v in r.items() if k not in ("predictions", "scored_indices")}
        payload["embeddings"] = args.embeddings
        text = (f"paper protocol, {own.name}: probe fitted on {r['n_fit']:,} rows, scored on {r['n_test']:,} rows "
                f"({test_set.describe()})\n" + _accuracy_lines(r, _precision_line(r)))
        _emit(args, payload, text)
        return 0
    model, card, name, test_set = _load_for_eval(args.checkpoint, args.dataset, args.data_dir)
    train_set = load_dataset(name, "train", args.data_dir, allow_gallery=False) if args.protocol == "standard" else None
    r = evaluate_model(model, test_set, args.protocol, train_set, seed=args.seed)
    payload = {k: v for k, v in r.items() if k not in ("predictions", "scored_indices")}
    payload["checkpoint"] = args.checkpoint
    text = (f"{args.protocol} protocol, {name}: probe fitted on {r['n_fit']:,} images, scored on {r['n_test']:,} test "
            f"images ({test_set.describe()})\n" + _accuracy_lines(r, _precision_line(r)))
    _emit(args, payload, text)
    return 0


def cmd_neighbors(args) -> int:
    from .evaluation import embed
    from .retrieval import NeighborIndex, SimilarityScale, embed_one, ink_share, is_blank, prepare_query

    if args.embeddings:
        return _neighbors_in_file(args)
    if not args.image:
        raise ConfigError("name a checkpoint and an image file (or --embeddings FILE --query ROW|PATH)")
    model, card, name, test_set = _load_for_eval(args.checkpoint, None, args.data_dir)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    prepared = prepare_query(args.image, test_set.channels, test_set.size, name, invert=invert)
    index = NeighborIndex(embed(model, test_set.images), test_set.labels.numpy())
    scale = SimilarityScale(index.z.numpy())
    hits = scale.rate(index.query(embed_one(model, prepared.tensor), k=args.k))
    rows = [{"index": h.index, "label": h.label, "class": test_set.classes[h.label], "origin": test_set.origins[h.index],
             "similarity": round(h.similarity, 6), "match_percentile": _rounded(h.percentile, 2)} for h in hits]
    blank = is_blank(prepared.tensor)
    payload = {"neighbors": rows, "gallery": test_set.provenance(), "preprocessing": prepared.steps,
               "inverted": prepared.inverted, "blank_query": blank, "ink_share": round(ink_share(prepared.tensor), 4),
               "match_reference": scale.describe()}
    text = "\n".join([f"gallery: {test_set.describe()}; preprocessing: {'; '.join(prepared.steps) or 'none'}"]
                     + _neighbor_lines(rows)
                     + [f"match: the percentile of a similarity among {scale.describe()}"]
                     + (["warning: the image is blank as the model sees it; its neighbours mean nothing"] if blank else []))
    _emit(args, payload, text)
    return 0


def _neighbor_lines(rows: list[dict]) -> list[str]:
    from .retrieval import fmt_match

    return [f"{i + 1:>3}. #{r['index']:<6} {r['class']:<12} {r['origin']}  similarity {r['similarity']:.3f}  "
            f"{fmt_match(r['match_percentile'])}" for i, r in enumerate(rows)]


def _neighbors_in_file(args) -> int:
    """The nearest rows of one row of an embeddings file (no model: the query is a row of the file)."""
    from .retrieval import NeighborIndex, SimilarityScale

    own = _own_embeddings(args)
    if args.image:
        raise ConfigError("with --embeddings the query is a row of the file: use --query ROW|PATH, not an image")
    if args.query is None:
        raise ConfigError("with --embeddings, say which row to query: --query ROW (0-based) or --query PATH")
    if args.query in own.origins:
        row = own.origins.index(args.query)
    elif args.query.isdigit() and int(args.query) < len(own):
        row = int(args.query)
    else:
        raise ConfigError(f"--query {args.query!r} is neither a row (0 to {len(own) - 1}) nor an image path of {own.name}")
    index = NeighborIndex(own.embeddings, own.labels)
    scale = SimilarityScale(own.embeddings)
    hits = scale.rate(index.query(own.embeddings[row], k=args.k, exclude=row))

    def name(label: int) -> str:
        return own.classes[label] if label >= 0 else "-"

    rows = [{"index": h.index, "label": h.label, "class": name(h.label), "origin": own.origins[h.index],
             "similarity": round(h.similarity, 6), "match_percentile": _rounded(h.percentile, 2)} for h in hits]
    query = {"index": row, "class": name(int(own.labels[row])), "origin": own.origins[row]}
    payload = {"query": query, "neighbors": rows, "gallery": own.provenance(), "match_reference": scale.describe()}
    text = "\n".join([f"gallery: {own.name}, {len(own):,} rows; query: row {row} {query['origin']} ({query['class']}), "
                      "excluded"] + _neighbor_lines(rows)
                     + [f"match: the percentile of a similarity among {scale.describe()}"])
    _emit(args, payload, text)
    return 0


def cmd_grid(args) -> int:
    from .training import TrainConfig
    from .workflow import make_model

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {out}: {err.strerror}") from None
    if args.preset == "outlook":
        return _grid_outlook(args, out)
    rows = []
    scenarios = [(d, a, loss) for d in args.datasets for a in args.augmentations for loss in args.losses]
    for i, (dataset, aug, loss) in enumerate(scenarios, 1):
        name = f"{dataset}-{aug}-{loss}"
        if not args.json:
            print(f"[{i}/{len(scenarios)}] {name} ...", file=sys.stderr, flush=True)
        cfg = TrainConfig(dataset=dataset, recipe="paper", augmentation=aug, loss=loss, seed=args.seed, epochs=args.epochs)
        card = make_model(cfg, out / f"{name}.safetensors", data_dir=args.data_dir).card
        m, standard = card.figures("paper"), card.figures("standard")
        paper = PAPER_TABLE[(dataset, aug, loss)]
        rows.append({"scenario": name, "dataset": dataset, "augmentation": aug, "loss": loss,
                     "n_train": card.data.n_images, "train_complete": card.data.complete,
                     "n_test": m.n_test, "seconds": card.training.seconds,
                     "paper_acc": paper[0], "paper_top3": paper[1], "paper_knn": paper[2],
                     "acc": _rounded(m.linear_acc, 4), "top3": _rounded(m.top3_acc, 4), "knn": _rounded(m.knn_acc, 4),
                     "standard_acc": _rounded(standard.linear_acc, 4)})
    table = ["| scenario | train images | paper acc / top-3 / kNN | ours acc / top-3 / kNN | ours standard acc | train s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        partial = "" if r["train_complete"] else " (partial)"
        table.append(f"| {r['scenario']} | {r['n_train']:,}{partial} | {r['paper_acc']:.2f} / {r['paper_top3']:.2f} / "
                     f"{r['paper_knn']:.2f} | {r['acc']:.3f} / {r['top3']:.3f} / {r['knn']:.3f} | "
                     f"{r['standard_acc']:.3f} | {r['seconds']:.0f} |")
    text = "\n".join(table)
    (out / "results.md").write_text(
        "Paper protocol (probe on 80 % of the test embeddings, scored on the other 20 %).\n\n" + text + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    _emit(args, {"rows": rows, "table": str(out / "results.md")}, text)
    return 0


def _grid_outlook(args, out: Path) -> int:
    """The outlook models (cl.study.OUTLOOK): each is exactly one ``python -m cl train`` command."""
    from .reference import OUTLOOK
    from .study import outlook_markdown, outlook_rows
    from .training import TrainConfig
    from .workflow import make_model

    jobs = [(d, model) for d in args.datasets for model in OUTLOOK]
    for i, (dataset, model) in enumerate(jobs, 1):
        name = f"{dataset}-simclr-{model.suffix}"
        if not args.json:
            print(f"[{i}/{len(jobs)}] {name} ...", file=sys.stderr, flush=True)
        config = TrainConfig(**model.settings(dataset, args.seed, epochs=args.epochs))
        make_model(config, out / f"{name}.safetensors", data_dir=args.data_dir)
    rows = outlook_rows(out)
    text = outlook_markdown(rows)
    (out / "results.md").write_text(
        "Paper protocol (probe on 80 % of the test embeddings, scored on the other 20 %).\n\n" + text + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=float))
    _emit(args, {"rows": rows, "table": str(out / "results.md")}, text)
    return 0


def cmd_study(args) -> int:
    from .study import DATASETS, build_structure, checkpoints_dir, outlook_names, scenario_name, write_study

    ckpt = Path(args.checkpoints) if args.checkpoints else checkpoints_dir()
    if not ckpt.is_dir():
        raise ConfigError(f"no checkpoint folder {ckpt}")
    say = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.structure:
        names = [scenario_name(*scenario) for scenario in PAPER_TABLE]
        names += [n for d in DATASETS for n in outlook_names(d)]
        build_structure(names, ckpt, progress=say)
    try:
        result = write_study(args.out, ckpt, datasets=args.datasets, progress=say)
    except OSError as err:
        raise ConfigError(f"cannot write to {args.out}: {err.strerror}") from None
    _emit(args, result, "\n".join(result["files"]))
    return 0


def cmd_export(args) -> int:
    from .data import portable_provenance
    from .evaluation import embed
    from .export import export_embeddings
    from .workflow import open_model

    if args.format == "onnx":
        return _export_onnx(args)
    opened = open_model(args.checkpoint, args.dataset, args.split, args.data_dir)
    model, card, data = opened.model, opened.card, opened.data
    result = export_embeddings(embed(model, data.images), data, args.format, args.out, card=card.to_dict(),
                               checkpoint=args.checkpoint, provenance=portable_provenance(data.provenance(), args.data_dir))
    text = (f"{result['n_images']:,} embeddings ({result['dim']} dimensions) of {data.describe()} -> "
            f"{args.out}: {', '.join(result['files'])}")
    _emit(args, {k: v for k, v in result.items() if k != "card"}, text)
    return 0


def _export_onnx(args) -> int:
    from .checkpoints import load_checkpoint
    from .onnx_export import export_onnx, require_exporter
    from .workflow import data_for_card

    require_exporter()  # before any work: one line saying what to install
    model, card = load_checkpoint(args.checkpoint)
    name = Path(args.checkpoint).stem
    data, why = None, ""
    try:  # the images ONNX Runtime is checked on; without them the model is still exported
        data = data_for_card(card, args.dataset, args.split, args.data_dir, download=False, source=name)[1]
    except UserError as err:
        if args.dataset:  # asked for by name: a bad argument, not a missing extra
            raise
        why = f"no {args.split} images here ({err})"
    result = export_onnx(model, card, args.out, name, verify_images=None if data is None else data.images,
                         no_images_why=why)
    v = result["verification"]
    checked = (f"ONNX Runtime vs PyTorch on the first {v['n_images']} of {data.describe()}: max |diff| "
               f"{v['max_abs_diff']:.2e} ({'within' if v['passed'] else 'OVER'} {v['tolerance']:g})"
               if "n_images" in v and data is not None else f"not checked: {v['skipped']}")
    text = (f"{name} -> {args.out}: {', '.join(result['files'])}; input {result['input']['shape']} = pixel * 2/255 - 1, "
            f"output {result['output']['shape']}\n{checked}")
    _emit(args, {k: v for k, v in result.items() if k != "card"}, text)
    if v.get("passed") is False:  # a bug, not a user error: say so, and do not pretend it worked
        print(f"error: the ONNX model differs from PyTorch by {v['max_abs_diff']:.2e} (more than {v['tolerance']:g}); "
              f"please report it", file=sys.stderr)
        return 1
    return 0


def cmd_card(args) -> int:
    from .checkpoints import read_card

    card = read_card(args.checkpoint)
    _emit(args, card, json.dumps(card, indent=2, default=_json_default))
    return 0


def cmd_project(args) -> int:
    import numpy as np

    from .evaluation import embed
    from .projection import ProjectionParams, project

    if args.embeddings:
        own = _own_embeddings(args)
        test_set, name, title = own.image_set(), own.name, own.name
    else:
        model, card, name, test_set = _load_for_eval(args.checkpoint, None, args.data_dir)
        title = Path(args.checkpoint).stem
    images, labels = test_set.images, test_set.labels.numpy()
    keep = np.arange(len(labels))
    if args.limit and args.limit < len(labels):
        keep = np.random.default_rng(args.seed).permutation(len(labels))[: args.limit]
        images, labels = images[keep], labels[keep]
    from .maptrust import map_trust

    t0 = time.perf_counter()
    emb = own.embeddings[keep] if args.embeddings else embed(model, images)
    xy = project(emb, ProjectionParams(args.method, seed=args.seed))
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    trust = {**map_trust(emb, xy).summary(), "seconds": round(time.perf_counter() - t0, 3)}
    if args.out:
        _scatter_png(xy, labels, test_set.classes, args.out, f"{title}: {args.method}, "
                     f"{len(labels):,} {name} test images")
    _emit(args, {"method": args.method, "n_points": len(labels), "seconds": seconds, "dataset": name, "out": args.out,
                 "trust": trust},
          f"{args.method} of {len(labels):,} {name} test images in {seconds:.1f} s" + (f" -> {args.out}" if args.out else "")
          + f"\ntrustworthiness {trust['trustworthiness']:.3f}, continuity {trust['continuity']:.3f}, "
          f"{trust['mean_kept'] * trust['k']:.1f} of each image's {trust['k']} nearest neighbours (cosine) kept on the map")
    return 0


def cmd_place(args) -> int:
    from .placement import place_in_checkpoint

    r = place_in_checkpoint(args.checkpoint, args.index, args.k, args.augmentation, args.method, args.seed,
                            args.data_dir)
    _emit(args, r, f"{r['k']} '{r['augmentation']}' views of {r['dataset']} test-gallery image #{r['index']} "
                   f"({r['class']}) on the {r['layout']} {r['method']} layout of {r['n_points']:,} images, "
                   f"placed in {r['seconds']['place']:.2f} s:\n  original {r['original'][0]:.3f} {r['original'][1]:.3f}\n"
                   + "\n".join(f"  view {i:2d}  {x:.3f} {y:.3f}" for i, (x, y) in enumerate(r["views"])))
    return 0


def cmd_measures(args) -> int:
    from .measures import COLLAPSE_RULE, collapse, measure
    from .workflow import open_model

    opened = open_model(args.checkpoint, args.dataset, "test", args.data_dir)
    aug = args.augmentation or opened.card.config.get("augmentation") or "none"
    m = measure(opened.model, opened.data, aug, seed=args.seed, limit=args.limit)
    d = m["data"]

    def f(v, spec):  # a single image has no pairs: no uniformity
        return "-" if v is None else format(v, spec)

    top = " ".join(f"{v:.3g}" for v in m["singular_values"][:8])
    text = (f"{Path(args.checkpoint).stem}: {d['n_images']:,} {d['dataset']} {d['split']} images "
            f"({d['sample']}), two views each by augmentation {aug}, seed {args.seed}\n"
            f"alignment   {f(m['alignment'], '.4f')}  (mean squared distance of the two views: 0 = they coincide, 4 = opposite)\n"
            f"uniformity  {f(m['uniformity'], '.4f')}  (0 = all on one point; points uniform on the "
            f"{m['embedding_dim']}-d sphere: {f(m['sphere_uniformity'], '.4f')})\n"
            f"RankMe      {f(m['rankme'], '.2f')} of {m['embedding_dim']}  (directions used: 1 = collapsed)\n"
            f"collapsed   {({True: 'yes', False: 'no', None: '-'})[collapse(m)]}  ({COLLAPSE_RULE})\n"
            f"singular values (largest 8 of {len(m['singular_values'])}): {top}\n"
            f"mean cosine of the two views {f(m['positive_cosine_mean'], '.3f')}; pairs of images: "
            f"{m['n_same_class_pairs']:,} same class, {m['n_other_pairs']:,} other")
    _emit(args, {"checkpoint": args.checkpoint, **m}, text)
    return 0


def cmd_batch(args) -> int:
    from .batchview import batch_from_checkpoint, data_text, headline, to_json

    b = batch_from_checkpoint(args.checkpoint, untrained=args.untrained, loss=args.loss, mining=args.mining,
                              negatives=args.negatives, seed=args.seed, batch_size=args.batch_size,
                              data_dir=args.data_dir)
    out = to_json(b)
    lines = [f"{Path(args.checkpoint).stem}{' (untrained: epoch 0)' if args.untrained else ''}: the first batch of "
             f"seed {args.seed}, {out['summary']['n_images']} images from {data_text(b.data)}",
             *[f"({note})" for note in b.data.get("notes", []) if "not on this machine" in note], headline(b)]
    for t in out["terms"]:
        fields = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items() if k != "contribution")
        lines.append(f"  {fields}: {t['contribution'] if t['contribution'] is None else format(t['contribution'], '.4f')}")
    _emit(args, {"checkpoint": args.checkpoint, **out}, "\n".join(lines))
    return 0


def _scatter_png(xy, labels, classes, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=90)
    ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
    colours = plt.get_cmap("tab10")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours(i), label=c, markersize=3)
               for i, c in enumerate(classes)]
    ax.legend(handles=handles, fontsize=5, loc="upper right", framealpha=0.6)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


COMMANDS = {"datasets": cmd_datasets, "train": cmd_train, "evaluate": cmd_evaluate, "neighbors": cmd_neighbors,
            "grid": cmd_grid, "study": cmd_study, "export": cmd_export, "card": cmd_card, "project": cmd_project,
            "place": cmd_place, "measures": cmd_measures, "batch": cmd_batch}


# Commands that train or embed: one job then exit, so glibc may keep freed memory for reuse
# (cl.allocator.keep_freed_memory: 1.7x faster CIFAR-10 training steps on 2 cores).
HEAVY_COMMANDS = ("train", "evaluate", "neighbors", "grid", "study", "export", "project", "place", "measures")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            raise ConfigError(f"{_prog()}: choose a command: " + ", ".join(COMMANDS) + " (add --help for details)")
        if args.command in HEAVY_COMMANDS:
            allocator.keep_freed_memory()
        if distributed.launched_rank() is not None and args.command != "train":
            raise ConfigError(f"only `train` runs on several processes; run `{args.command}` as one process")
        return COMMANDS[args.command](args)
    except UserError as err:
        if distributed.should_print(err):  # under torchrun: once for what every rank shares
            print(f"error: {distributed.prefix(err)}{err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if distributed.should_print(distributed.on_every_rank(err)):  # Ctrl-C reaches every rank
            print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"error: {distributed.prefix()}out of memory; use a smaller batch size or data set", file=sys.stderr)
        return 2
    except Exception as err:
        if distributed.lost_peer(err):
            return 1  # another rank failed mid-step and says why; torchrun ends the rest
        raise


def console_main() -> None:
    """``python -m cl`` and the installed ``contrastive-explorer`` command: run, then leave.

    Leaves without the interpreter's teardown: with torch and scikit-learn loaded, destroying every
    module and object took about 1 s of each command's wall time on 2 cores (3.3 s -> 4.3 s for
    ``evaluate``), after all its work was done. Every file a command writes is closed by then; only
    the standard streams may still hold buffered output."""
    rc = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (`... | head`): nothing more can be said there
        pass
    os._exit(0 if rc is None else rc if isinstance(rc, int) else 1)
