"""Print the README's results tables (Markdown) from the shipped checkpoints' cards.

    python scripts/results_table.py

Nothing is re-computed: every figure is read from a card (``python -m cl card FILE``), so the
README says exactly what the shipped files say.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cl.checkpoints import read_card  # noqa: E402
from cl.cli import PAPER_TABLE  # noqa: E402

CKPT = ROOT / "checkpoints"


def _train_images(card: dict) -> str:
    d = card["data"]
    return f"{d['n_images']:,}" + ("" if d["complete"] else f" of {d['n_full']:,}")


def paper_rows() -> list[str]:
    rows = ["| data | aug | loss | paper acc / top-3 / kNN | ours (paper recipe) acc / top-3 / kNN | ours standard acc "
            "| train images |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for (dataset, aug, loss), ref in PAPER_TABLE.items():
        path = CKPT / f"{dataset}-{aug}-{loss}.safetensors"
        if not path.exists():
            continue
        card = read_card(path)
        p, s = card["metrics"]["paper"], card["metrics"].get("standard", {})
        rows.append(f"| {dataset} | {aug} | {loss} | {ref[0]:.2f} / {ref[1]:.2f} / {ref[2]:.2f} | "
                    f"{p['linear_acc']:.3f} / {p['top3_acc']:.3f} / {p['knn_acc']:.3f} | "
                    f"{s.get('linear_acc', float('nan')):.3f} | {_train_images(card)} |")
    return rows


def best_rows() -> list[str]:
    rows = ["| checkpoint | recipe | paper protocol acc / top-3 / kNN (test images scored) | standard acc / kNN "
            "(test images) | train images | training s (wall) |", "| --- | --- | --- | --- | --- | --- |"]
    for path in sorted(CKPT.glob("*best*.safetensors")):
        card = read_card(path)
        p, s = card["metrics"]["paper"], card["metrics"].get("standard", {})
        rows.append(f"| {path.stem} | {card['config']['recipe']} | {p['linear_acc']:.3f} / {p['top3_acc']:.3f} / "
                    f"{p['knn_acc']:.3f} ({p['n_test']:,}) | {s['linear_acc']:.3f} / {s['knn_acc']:.3f} "
                    f"({s['n_test']:,}) | {_train_images(card)} | {card['training']['seconds']:.0f} |")
    return rows


if __name__ == "__main__":
    print("\n".join(paper_rows()))
    print()
    print("\n".join(best_rows()))
