"""Map selections: the link encoding, the class and file-name narrowing, the csv, and the Embedding
page reopening a selection from its link."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
from test_deep_links import env, open_link  # noqa: F401 - env: the deep-link tests' app environment (autouse)

from cl.data import load_dataset
from ui import selection


@pytest.mark.parametrize("seed", range(5))
def test_encode_decode_round_trip(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 5000))
    for k in (1, 3, n // 10, n // 2, n):
        chosen = np.sort(rng.choice(n, size=max(1, k), replace=False))
        text = selection.encode(chosen)
        np.testing.assert_array_equal(selection.decode(text, n), chosen)
        assert text[0] in "rb" and all(c.isalnum() or c in "-._" for c in text)  # safe in a URL as it is


def test_encoding_is_compact():
    assert selection.encode([5, 6, 7, 8, 20]) == "r5-8.20"
    box = np.sort(np.random.default_rng(0).choice(2000, 700, replace=False))  # a big box on a 2,000-point map
    assert len(selection.encode(box)) < 400 and selection.encode(box)[0] == "b"


@pytest.mark.parametrize("text", ["", "x12", "r", "r3-1", "r-5", "b!!!", "bAAAA", "r1-99999999999"])
def test_text_it_did_not_write_is_refused(text):
    assert selection.decode(text, 100) is None or len(selection.decode(text, 100)) == 0


def test_decode_drops_indices_past_the_split():
    np.testing.assert_array_equal(selection.decode("r8-12", 10), [8, 9])


def test_narrow_and_csv():
    labels = np.array([0, 1, 0, 2, 1])
    origins = ["cat/a.png", "dog/B.png", "cat/b.png", "emu/c.png", "dog/d.png"]
    classes = ["cat", "dog", "emu"]
    all_points = np.arange(5)
    np.testing.assert_array_equal(selection.narrow(all_points, labels, origins, [1], ""), [1, 4])
    np.testing.assert_array_equal(selection.narrow(all_points, labels, origins, [], "b.PNG"), [1, 2])
    np.testing.assert_array_equal(selection.narrow(np.array([4, 2]), labels, origins, [0, 1], ""), [4, 2])
    df = pd.DataFrame({"x": [0.5, 1.5, 2.5], "y": [1.0, 2.0, 3.0], "index": [4, 2, 0]})
    pred = np.array([0, 1, 1, -1, 0])
    rows = list(csv.reader(io.StringIO(selection.csv_bytes(df, np.array([2, 4]), origins, classes, labels,
                                                             pred).decode())))
    assert rows == [["file", "class", "predicted_class", "x", "y", "test_index"],
                    ["cat/b.png", "cat", "dog", "1.5", "2.0", "2"],
                    ["dog/d.png", "dog", "cat", "0.5", "1.0", "4"]]


def test_the_embedding_page_reopens_a_selection_from_its_link():
    test = load_dataset("digits", "test")
    chosen = [3, 4, 5, 17, 300]
    want = [i for i in chosen if test.labels[i] == 7] or chosen[:1]
    cls = int(test.labels[want[0]])
    at = open_link("embedding", dataset="digits", model="digits-best", sel=selection.encode(chosen), cls=str(cls))
    heads = [h.value for h in at.subheader]
    expect = [i for i in chosen if int(test.labels[i]) == cls]
    assert f"Selected: {len(expect)} image(s)" in heads, heads
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs if img.caption]
    for i in expect:
        assert any(test.origins[i] in c for c in captions), (test.origins[i], captions[:5])
    assert at.query_params["sel"] == selection.encode(chosen) and at.query_params["cls"] == str(cls)
    assert [b for b in at.get("download_button") if "selected images as csv" in b.proto.label]
