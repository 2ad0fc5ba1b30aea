"""Rebuild every shipped checkpoint, test gallery and docs figure from scratch.

    python scripts/build_checkpoints.py --data-dir DATA            # everything (DATA: a torchvision data folder)
    python scripts/build_checkpoints.py --only mnist-best cifar10-best       # a few
    python scripts/build_checkpoints.py --list                               # the commands
    python scripts/build_checkpoints.py --tables                             # docs/results.md tables from the cards
    python scripts/build_checkpoints.py --layouts [NAME ...]                 # t-SNE/UMAP/PCA layouts only

Each model is made by one ``python -m cl train`` command (recorded in its card), so a single
checkpoint can also be rebuilt by copying the command from ``python -m cl card FILE``.
Afterwards ``checkpoints/README.md`` is regenerated from the cards.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "checkpoints"
FIGURES = ROOT / "docs" / "img"
SEED = 0

BEST = ["digits", "mnist", "fashion-mnist", "cifar10"]
GALLERY_SIZES = {"mnist": 2000, "fashion-mnist": 2000, "cifar10": 1017}
FIGURE_MODELS = ["mnist-none-pairwise", "mnist-simclr-triplet", "mnist-best", "cifar10-simclr-triplet",
                 "cifar10-best", "fashion-mnist-best"]


def commands() -> dict[str, list[str]]:
    """Each checkpoint's command: the one recorded in its shipped card when there is one (so a
    rebuild replays exactly what was shipped, thread count included), else the plain recipe."""
    out = _recipe_commands()
    sys.path.insert(0, str(ROOT))
    from cl.checkpoints import read_card

    for name in out:
        path = CKPT / f"{name}.safetensors"
        if path.exists():
            words = shlex.split(read_card(path)["command"])
            if words[:3] == ["python", "-m", "cl"]:
                out[name] = [w for w in _drop_data_dir(words[3:])]
    return out


def _drop_data_dir(words: list[str]) -> list[str]:
    """The data directory is this machine's, given by --data-dir; drop the recorded one."""
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == "--data-dir":
            skip = True
        else:
            out.append(w)
    return out


def _recipe_commands() -> dict[str, list[str]]:
    sys.path.insert(0, str(ROOT))
    from cl.reference import PAPER_TABLE  # its keys are the study's (data set, augmentation, loss) grid

    out = {}
    for d, a, loss in PAPER_TABLE:
        name = f"{d}-{a}-{loss}"
        out[name] = ["train", "--dataset", d, "--recipe", "paper", "--augmentation", a, "--loss", loss,
                     "--seed", str(SEED), "--out", f"checkpoints/{name}.safetensors"]
    for d in BEST:
        out[f"{d}-best"] = ["train", "--dataset", d, "--recipe", "default", "--seed", str(SEED),
                            "--out", f"checkpoints/{d}-best.safetensors"]
    out.update(outlook_commands())
    return out


def outlook_commands() -> dict[str, list[str]]:
    """The "outlook" group (cl.study.OUTLOOK): SimCLR, the study's encoder and triplet budget, for
    triplet mining, contrastive, NT-Xent, SupCon and random negatives; ``python -m cl grid
    --preset outlook`` trains the same."""
    sys.path.insert(0, str(ROOT))
    from cl.reference import OUTLOOK, outlook_train_args

    return {f"{d}-simclr-{suffix}": ["train", *outlook_train_args(d, suffix, SEED),
                                     "--out", f"checkpoints/{d}-simclr-{suffix}.safetensors"]
            for d in ("mnist", "cifar10") for suffix in (m.suffix for m in OUTLOOK)}


def run_cl(args: list[str], data_dir: str | None) -> None:
    cmd = [sys.executable, "-m", "cl", *args] + (["--data-dir", data_dir] if data_dir and args[0] in ("train", "project") else [])
    print("$ python -m cl " + " ".join(args), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def build_galleries(data_dir: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    from cl.data import load_dataset, save_gallery

    for name, n in GALLERY_SIZES.items():
        test = load_dataset(name, "test", data_dir, download=False, allow_gallery=False)
        path = save_gallery(test, min(n, len(test)))
        print(f"gallery {path.relative_to(ROOT)}: {min(n, len(test)):,} of {len(test):,} {name} test images")


def _train_images(card: dict) -> str:
    """``17,387 of 60,000`` for a partial split, ``60,000`` for a complete one."""
    d = card["data"]
    return f"{d['n_images']:,}" + ("" if d.get("complete") else f" of {d['n_full']:,}")


def _acc_top3_knn(m: dict) -> str:
    return f"{m.get('linear_acc', 0):.3f} / {m.get('top3_acc', 0):.3f} / {m.get('knn_acc', 0):.3f}"


def readme_tables() -> str:
    """The two results tables of docs/results.md (paper scenarios next to the study; best models),
    from the shipped cards: nothing is re-computed, so the docs say what the files say."""
    sys.path.insert(0, str(ROOT))
    from cl.checkpoints import read_card
    from cl.reference import PAPER_TABLE

    paper = ["| data | aug | loss | paper acc / top-3 / kNN | ours (paper recipe) acc / top-3 / kNN "
             "| ours standard acc | train images |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for (dataset, aug, loss), ref in PAPER_TABLE.items():
        path = CKPT / f"{dataset}-{aug}-{loss}.safetensors"
        if path.exists():
            card = read_card(path)
            p, s = card["metrics"]["paper"], card["metrics"].get("standard", {})
            paper.append(f"| {dataset} | {aug} | {loss} | {ref[0]:.2f} / {ref[1]:.2f} / {ref[2]:.2f} | "
                         f"{_acc_top3_knn(p)} | {s.get('linear_acc', float('nan')):.3f} | {_train_images(card)} |")
    best = ["| checkpoint | recipe | paper protocol acc / top-3 / kNN (test images scored) | standard acc / kNN "
            "(test images) | train images | training s (wall) |", "| --- | --- | --- | --- | --- | --- |"]
    for path in sorted(CKPT.glob("*best*.safetensors")):
        card = read_card(path)
        p, s = card["metrics"]["paper"], card["metrics"]["standard"]
        best.append(f"| {path.stem} | {card['config']['recipe']} | {_acc_top3_knn(p)} ({p['n_test']:,}) | "
                    f"{s['linear_acc']:.3f} / {s['knn_acc']:.3f} ({s['n_test']:,}) | {_train_images(card)} | "
                    f"{card['training']['seconds']:.0f} |")
    return "\n".join(paper) + "\n\n" + "\n".join(best)


def build_layouts(names: list[str] | None, data_dir: str | None) -> None:
    """The shipped t-SNE, UMAP and PCA layouts of each checkpoint's test gallery, and its shipped
    evaluations (per-class accuracy, confusion matrices), so the app shows them at once (cl.layouts)."""
    sys.path.insert(0, str(ROOT))
    from cl.layouts import build_evaluations
    from cl.layouts import build_layouts as build

    for path in sorted(CKPT.glob("*.safetensors")):
        if not names or path.stem in names:
            build(path)
            build_evaluations(path, data_dir)


def write_index() -> None:
    sys.path.insert(0, str(ROOT))
    from cl.checkpoints import read_card

    lines = ["# Shipped checkpoints", "",
             "Made by `python scripts/build_checkpoints.py --data-dir DATA` (seed 0). Each file is a",
             "safetensors checkpoint whose metadata card (`python -m cl card FILE`) holds the exact command,",
             "the resolved config, data provenance and the metrics below. The MNIST and CIFAR-10 training",
             "sets available offline are partial (17,387 of 60,000 and 5,085 of 50,000 images); the",
             "CIFAR-10 test split is a 1,017-image subset. Paper protocol: probe fitted on 80 % of the test",
             "embeddings and scored on the other 20 %; standard: fitted on train, scored on all of test.", "",
             "| checkpoint | train images | test images | paper acc / top-3 / kNN | standard acc / kNN | train s | size |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(CKPT.glob("*.safetensors")):
        card = read_card(path)
        d, m = card["data"], card["metrics"]
        p, s = m.get("paper", {}), m.get("standard", {})
        lines.append(
            f"| `{path.stem}` | {d['dataset']} {_train_images(card)} | {card['test_data']['n_images']:,} "
            f"| {_acc_top3_knn(p)} | {s.get('linear_acc', 0):.3f} / {s.get('knn_acc', 0):.3f} "
            f"| {card['training']['seconds']:.0f} "
            f"| {path.stat().st_size / 1e6:.2f} MB |")
    (CKPT / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {(CKPT / 'README.md').relative_to(ROOT)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--only", nargs="+", help="checkpoint names to rebuild")
    p.add_argument("--list", action="store_true")
    p.add_argument("--tables", action="store_true", help="print docs/results.md's results tables from the cards")
    p.add_argument("--skip-galleries", action="store_true")
    p.add_argument("--skip-figures", action="store_true")
    p.add_argument("--layouts", nargs="*", metavar="NAME",
                   help="only (re)build the shipped layouts of these checkpoints (none named: all)")
    args = p.parse_args()
    cmds = commands()
    if args.tables:
        print(readme_tables())
        return 0
    if args.list:
        for name, c in cmds.items():
            print(f"{name}: python -m cl {' '.join(c)}")
        return 0
    if args.layouts is not None:
        missing = [n for n in args.layouts if not (CKPT / f"{n}.safetensors").is_file()]
        if missing:
            print(f"error: no checkpoint named {', '.join(missing)} in checkpoints/", file=sys.stderr)
            return 2
        build_layouts(args.layouts, args.data_dir)
        return 0
    unknown = set(args.only or []) - set(cmds)
    if unknown:
        print(f"error: unknown checkpoint names: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    CKPT.mkdir(exist_ok=True)
    for name in args.only or cmds:
        run_cl(cmds[name], args.data_dir)
    if not args.skip_galleries and not args.only:
        build_galleries(args.data_dir)
    if not args.skip_figures:
        FIGURES.mkdir(parents=True, exist_ok=True)
        for name in FIGURE_MODELS:
            if (CKPT / f"{name}.safetensors").exists() and (not args.only or name in args.only):
                run_cl(["project", f"checkpoints/{name}.safetensors", "--method", "tsne", "--limit", "2000",
                        "--out", f"docs/img/{name}-tsne.png"], args.data_dir)
    build_layouts(args.only, args.data_dir)
    # The study's figures and shape measure (cl.study): checkpoints/study.json, docs/img/study/
    run_cl(["study", "--structure", "--out", "docs/img/study"], args.data_dir)
    write_index()
    return 0


if __name__ == "__main__":
    sys.exit(main())
