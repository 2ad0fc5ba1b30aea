"""ui.vega: a chart's Vega-Lite spec made once per distinct inputs, equal to what st.altair_chart sends."""

import json

import altair as alt
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ui import charts, shared, vega


@pytest.fixture(autouse=True)
def fresh_cache():
    shared.VEGA_SPECS.clear()
    yield
    shared.VEGA_SPECS.clear()


def counted(calls: list):
    def build(df, title):
        calls.append(title)
        return alt.Chart(df, title=title).mark_point().encode(x="a:Q", y="b:Q")
    return build


def rows(spec: dict) -> list[dict]:
    """The spec's one dataset back as rows (Arrow IPC bytes as Streamlit sends them, or records)."""
    (data,) = spec["datasets"].values()
    if isinstance(data, bytes):
        return pa.ipc.open_stream(data).read_all().to_pylist()
    return list(data)


def test_same_inputs_build_once_and_give_the_same_spec():
    calls = []
    build = counted(calls)
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    first = vega.spec(build, df, "t")
    again = vega.spec(build, df.copy(), "t")  # equal content, another object
    assert calls == ["t"]
    assert again is first


def test_other_inputs_give_another_spec_never_a_stale_one():
    calls = []
    build = counted(calls)
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    one = vega.spec(build, df, "t")
    changed = df.copy()
    changed.loc[1, "b"] = 5.0
    two = vega.spec(build, changed, "t")
    three = vega.spec(build, df, "another title")
    assert calls == ["t", "t", "another title"]
    assert rows(one) == [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}]
    assert rows(two) == [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 5.0}]
    assert three["title"] == "another title" and one["title"] == "t"


def test_frame_attributes_are_part_of_the_inputs():
    calls = []
    build = counted(calls)
    df = pd.DataFrame({"a": [1.0], "b": [2.0]})
    other = df.copy()
    other.attrs["thumb_base"] = "app/static/thumbs/x/"
    vega.spec(build, df, "t")
    vega.spec(build, other, "t")
    assert len(calls) == 2


def test_the_spec_is_altairs_own_with_the_data_alongside():
    """The kept spec says what Altair's to_dict says (marks, encodings, params), its data as rows."""
    n = 50
    rng = np.random.default_rng(0)
    df = charts.scatter_frame(rng.normal(size=(n, 2)), np.arange(n), rng.integers(0, 3, n), ["a", "b", "c"], None, None)
    chart = charts.scatter(df, "class", ["a", "b", "c"], "t-SNE")
    reference = chart.to_dict()
    ours = vega.spec(charts.scatter, df, "class", ["a", "b", "c"], "t-SNE")
    strip = ("datasets", "data", "$schema", "config")

    def norm(spec):
        return json.loads(json.dumps({k: v for k, v in spec.items() if k not in strip}, sort_keys=True))

    assert norm(ours) == norm(reference)
    (ref_rows,) = reference["datasets"].values()
    assert rows(ours) == ref_rows
    assert [p["name"] for p in ours["params"]] == ["brush", "pick"]


def test_identity_keys_a_chart_without_looking_at_its_inputs():
    calls = []

    def build():
        calls.append(1)
        return alt.Chart(pd.DataFrame({"a": [1]})).mark_point().encode(x="a:Q")

    a = vega.spec(build, identity=("map", "cid-1", "tsne", 2000))
    b = vega.spec(build, identity=("map", "cid-1", "tsne", 2000))
    c = vega.spec(build, identity=("map", "cid-2", "tsne", 2000))
    assert a is b and c is not a and len(calls) == 2


def test_kept_specs_are_bounded(monkeypatch):
    monkeypatch.setattr(shared.VEGA_SPECS, "max_size", 20_000)
    calls = []
    build = counted(calls)
    big = pd.DataFrame({"a": np.arange(500, dtype=float), "b": np.arange(500, dtype=float)})
    for k in range(6):
        vega.spec(build, big, f"t{k}")
    assert shared.VEGA_SPECS.size <= 20_000 or len(shared.VEGA_SPECS) == 1
    assert len(shared.VEGA_SPECS) < 6
    vega.spec(build, big, "t5")  # the newest is still there
    assert calls.count("t5") == 1
    vega.spec(build, big, "t0")  # the oldest went first
    assert calls.count("t0") == 2
