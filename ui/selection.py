"""A selection of map points: narrowed by class and file name, written as csv, kept in a link.

A selection travels in the Embedding page's URL as ``sel``: the chosen test indices either as
runs (``r3-7.9.12``: short for a few points or neighbouring ones) or as a bitmask over the
indices, deflated and base64url-encoded (``b...``: short for a large box); whichever is shorter.
"""

from __future__ import annotations

import base64
import csv
import io
import zlib

import numpy as np
import pandas as pd

MAX_LINK_INDEX = 10_000_000  # a link naming a larger index is not ours


def encode(indices) -> str:
    """The shorter of the run and the bitmask encoding of a set of non-negative indices."""
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if not len(idx):
        return ""
    runs, start, prev = [], int(idx[0]), int(idx[0])
    for i in idx[1:].tolist() + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    as_runs = "r" + ".".join(runs)
    mask = np.zeros(int(idx[-1]) + 1, dtype=bool)
    mask[idx] = True
    packed = zlib.compress(np.packbits(mask).tobytes(), 9)
    as_bits = "b" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    return as_runs if len(as_runs) <= len(as_bits) else as_bits


def decode(text: str, n: int) -> np.ndarray | None:
    """The indices of :func:`encode`'s text that are below ``n``; ``None`` for text it did not write."""
    try:
        if text.startswith("r"):
            out: list[int] = []
            for part in text[1:].split("."):
                a, _, b = part.partition("-")
                lo, hi = int(a), int(b or a)
                if not 0 <= lo <= hi < MAX_LINK_INDEX or len(out) + hi - lo > MAX_LINK_INDEX:
                    return None
                out.extend(range(lo, hi + 1))
            idx = np.array(out, dtype=np.int64)
        elif text.startswith("b"):
            raw = base64.urlsafe_b64decode(text[1:] + "=" * (-len(text[1:]) % 4))
            inflater = zlib.decompressobj()
            bits = inflater.decompress(raw, MAX_LINK_INDEX // 8 + 1)
            idx = np.flatnonzero(np.unpackbits(np.frombuffer(bits, dtype=np.uint8)))
        else:
            return None
    except (ValueError, zlib.error):
        return None
    return np.unique(idx[idx < n])


def narrow(indices: np.ndarray, labels: np.ndarray, origins: list[str], classes: list[int] | None,
           name_part: str) -> np.ndarray:
    """The indices whose class is among ``classes`` (all when ``None`` or empty) and whose origin
    contains ``name_part`` (case-insensitive; all when empty), in their order."""
    idx = np.asarray(indices, dtype=np.int64)
    if classes:
        idx = idx[np.isin(np.asarray(labels)[idx], classes)]
    part = name_part.strip().lower()
    if part:
        idx = np.array([i for i in idx.tolist() if part in origins[i].lower()], dtype=np.int64)
    return idx


def csv_bytes(df: pd.DataFrame, indices: np.ndarray, origins: list[str], classes: list[str], labels: np.ndarray,
              pred: np.ndarray | None) -> bytes:
    """One row per selected image: file (its origin), class, predicted class, map coordinates, test index."""
    at = {int(i): k for k, i in enumerate(df["index"].tolist())}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "class", "predicted_class", "x", "y", "test_index"])
    for i in np.asarray(indices, dtype=np.int64).tolist():
        row = at.get(i)
        predicted = classes[int(pred[i])] if pred is not None and pred[i] >= 0 else ""
        w.writerow([origins[i], classes[int(labels[i])], predicted,
                    "" if row is None else df["x"].iat[row], "" if row is None else df["y"].iat[row], i])
    return buf.getvalue().encode("utf-8")
