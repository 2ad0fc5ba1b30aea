"""``python -m benchmarks``: the command runs, writes its JSON and reports positive figures.

Correctness of the report only (keys, units, sanity); never timings. A small size keeps it short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import PARTS, _parse_parts, targets
from cl.errors import ConfigError

from test_app_helpers import ROOT, shared_data_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = dict(os.environ, CL_BENCH_SIZES="300", PYTHONPATH=str(ROOT))
    data = shared_data_dir()
    if data:
        env["CL_DATA_DIR"] = str(data)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "neighbors", "projection",
                           "--json", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last), json.loads(out.read_text())


def test_stdout_and_file_agree(report):
    printed, written = report
    assert printed["parts_run"] == written["parts_run"] == ["projection", "neighbors"]
    assert printed["machine"] == written["machine"]


def test_machine_description(report):
    m = report[1]["machine"]
    for key in ("cpu_model", "logical_cpus", "usable_cpus", "torch", "torch_threads", "python", "versions",
                "load_average_start", "load_average_end", "matmul_gflops"):
        assert key in m, key
    assert m["usable_cpus"] >= 1 and m["torch_threads"] >= 1
    assert m["matmul_gflops"]["threads_1"] > 0


def test_projection_part(report):
    p = report[1]["parts"]["projection"]
    assert "error" not in p and "skipped" not in p, p
    assert p["part_seconds"] > 0 and p["jit_warmup_s"] >= 0
    assert list(p["sizes"]) == ["300"]
    for method in ("tsne", "umap", "pca"):
        cell = p["sizes"]["300"][method]
        assert cell["ours_s"] > 0 and cell["baseline_s"] > 0 and cell["speedup"] > 0
        assert cell["reproducible"] is True
        assert 0 <= cell["knn_acc_ours"] <= 1 and 0 <= cell["knn_acc_baseline"] <= 1
        assert cell["baseline"]


def test_neighbors_part(report):
    n = report[1]["parts"]["neighbors"]
    assert "error" not in n and "skipped" not in n, n
    assert n["n_queries"] > 0
    g = n["galleries"]["300"]
    for side in ("ours", "baseline"):
        assert 0 < g[side]["p50_ms"] <= g[side]["p95_ms"]
        assert g[side]["search_p50_ms"] > 0
    for key in ("decode_prepare_p50_ms", "embed_p50_ms", "mean_ms"):
        assert g["ours"][key] > 0
    assert g["speedup_p95"] > 0
    assert g["same_top10"] == 1.0, "ours and the brute-force baseline find the same neighbours"


def test_targets_listed(report):
    rows = report[1]["targets"]
    assert len(rows) == 19  # the room's rows come with its runs
    for r in rows:
        assert set(r) == {"name", "limit", "unit", "value", "met"}
    # a 300-point run does not measure the 10,000-point targets
    assert all(r["met"] is None for r in rows if "10,000 points" in r["name"])


def test_parts_and_targets_helpers():
    assert _parse_parts(None) == list(PARTS)
    assert _parse_parts(["neighbors,projection"]) == ["projection", "neighbors"]
    with pytest.raises(ConfigError):
        _parse_parts(["nonsense"])
    fake = {"parts": {"projection": {"sizes": {"10000": {"tsne": {"ours_s": 8.0}, "umap": {"ours_s": 12.0}}}},
                      "app": {"skipped": "no browser"}}}
    by_name = {r["name"]: r for r in targets(fake)}
    assert by_name["t-SNE of 10,000 points, seeded (s)"]["met"] is True
    assert by_name["UMAP of 10,000 points, seeded (s)"]["met"] is False
    assert by_name["app first page (s)"]["met"] is None


def test_recipe_targets_from_a_recipes_part():
    fake = {"parts": {"recipes": {"datasets": {
        "mnist": {"ours": {"command_s": 35.0, "linear_acc": 0.991}},
        "digits": {"ours": {"command_s": 12.0, "linear_acc": 0.97}}}},
        "train": {"dataset": "mnist", "scenarios": [{"loss": "triplet", "augmentation": "none",
                                                     "speedup_commands": 2.3}]}}}
    by_name = {r["name"]: r for r in targets(fake)}
    assert by_name["python -m cl train --dataset mnist, whole command (s)"]["met"] is True
    assert by_name["python -m cl train --dataset mnist, paper-protocol linear accuracy"]["met"] is True
    assert by_name["python -m cl train --dataset digits, whole command (s)"]["met"] is False
    assert by_name["python -m cl train --dataset digits, paper-protocol linear accuracy"]["met"] is False
    assert by_name["python -m cl train --dataset cifar10, whole command (s)"]["met"] is None
    paper = [r for r in targets(fake) if r["name"].startswith("paper recipe 1 epoch MNIST")][0]
    assert paper["limit"] == 2.2 and paper["met"] is True


def test_room_targets_per_torch_build():
    from benchmarks.report import targets

    def run(build, rss, errors=0, settled=200):
        return {"torch_build": build, "visitors": 40, "errors": errors, "visits": 200, "settled": settled,
                "peak_rss_mb": rss}

    rows = {r["name"]: r for r in targets({"parts": {"room": {"runs": [run("2.14.1+cu130", 1500.0),
                                                                      run("2.13.0+cpu", 1100.0, 3, 190)]}}})}
    pypi = [r for n, r in rows.items() if "2.14.1+cu130" in n]
    cpu = [r for n, r in rows.items() if "2.13.0+cpu" in n]
    assert [r["met"] for r in pypi] == [True, True, True]  # 0 errors, all settled, 1,500 <= 1,536 MB
    assert [(r["value"], r["met"]) for r in cpu] == [(3, False), (10, False), (1100.0, False)]  # limit 1,024 MB



def test_maptrust_part_reports_exact_figures_and_both_timings():
    from benchmarks.common import _Context
    from benchmarks.maptrust import _part_maptrust

    ctx = _Context(quick=True, data_dir=str(shared_data_dir()) if shared_data_dir() else None, verbose=False)
    ctx.sizes = [300]
    r = _part_maptrust(ctx)
    assert r["n_points"] == 300 and list(r["maps"]) == ["pca"]
    pca = r["maps"]["pca"]
    assert pca["ours_s"] > 0 and pca["baseline_trustworthiness_s"] > 0 and pca["speedup"] > 0
    assert pca["abs_diff_trustworthiness"] < 1e-6 and pca["abs_diff_continuity"] < 1e-6
    assert 0.5 < pca["trustworthiness"] <= 1 and 0 <= pca["mean_kept"] <= 1
