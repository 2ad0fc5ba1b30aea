"""The targets table and the printed summary of a bench run."""

from __future__ import annotations


# ------------------------------------------------------------------------------------ targets
def targets(payload: dict) -> list[dict]:
    """The issue's targets, each with the measured value (None when not measured in this run)."""
    parts = payload.get("parts", {})
    rows = []

    def add(name, limit, unit, value, higher_is_better=False):
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        rows.append({"name": name, "limit": limit, "unit": unit, "value": value, "met": met})

    train = parts.get("train", {})
    speed = one = None
    for s in train.get("scenarios", []):
        if s["loss"] == "triplet" and s["augmentation"] == "none" and train.get("dataset") == "mnist":
            speed, one = s["speedup_commands"], s.get("speedup_one_process")
    add("paper recipe 1 epoch MNIST, train+evaluate commands vs paper pipeline (x faster)", 2.2, "x", speed, True)
    add("paper recipe 1 epoch MNIST, one process each (train + evaluate) vs paper pipeline (x faster)", 3.0, "x",
        one, True)
    from .recipes import RECIPE_TARGETS

    recipes = parts.get("recipes", {}).get("datasets", {})
    for dataset, (limit_s, floor) in RECIPE_TARGETS.items():
        ours = (recipes.get(dataset) or {}).get("ours") or {}
        add(f"python -m cl train --dataset {dataset}, whole command (s)", limit_s, "s", ours.get("command_s"))
        add(f"python -m cl train --dataset {dataset}, paper-protocol linear accuracy", floor, "acc",
            ours.get("linear_acc"), True)
    tta = parts.get("time_to_accuracy", {})
    if tta.get("dataset") == "mnist":
        to = tta.get("default", {}).get("seconds_to", {})
        add("default recipe to MNIST linear accuracy 0.93 (s of training)", 15.0, "s", to.get("0.93"))
        add("default recipe to MNIST linear accuracy 0.99 (s of training)", 120.0, "s", to.get("0.99"))
    else:
        add("default recipe to MNIST linear accuracy 0.93 (s of training)", 15.0, "s", None)
        add("default recipe to MNIST linear accuracy 0.99 (s of training)", 120.0, "s", None)
    proj = parts.get("projection", {}).get("sizes", {}).get("10000", {})
    add("t-SNE of 10,000 points, seeded (s)", 10.0, "s", proj.get("tsne", {}).get("ours_s"))
    add("UMAP of 10,000 points, seeded (s)", 10.0, "s", proj.get("umap", {}).get("ours_s"))
    nb = parts.get("neighbors", {}).get("galleries", {}).get("10000", {})
    add("image file -> top-10 over 10,000 embeddings, p95 (ms)", 30.0, "ms", nb.get("ours", {}).get("p95_ms"))
    app = parts.get("app", {})
    add("app first page (s)", 5.0, "s", app.get("first_page_s"))
    add("app peak RSS, one user, 10,000-point scatter (MB)", 700.0, "MB",
        app.get("peak_rss_mb") if app.get("scatter_points") else None)
    links = parts.get("links", {})
    add("cold server: first visit of the deep link to mnist-best's t-SNE, slowest run (s)", 5.0, "s",
        (links.get("cold_summary") or {}).get("max_s"))
    add("every page of every shipped model, first visit, slowest (s)", 5.0, "s",
        (links.get("pages_summary") or {}).get("max_s"))
    for run in parts.get("room", {}).get("runs", []):
        build = run.get("torch_build", "?")
        add(f"room of {run.get('visitors')} + 2 trainings, torch {build}: errors", 0, "", run.get("errors"))
        add(f"room of {run.get('visitors')} + 2 trainings, torch {build}: pages not settled", 0, "",
            run.get("visits", 0) - run.get("settled", 0) if "settled" in run else None)
        add(f"room of {run.get('visitors')} + 2 trainings, torch {build}: server peak RSS (MB)",
            1024.0 if "+cpu" in build else 1536.0, "MB", run.get("peak_rss_mb"))
    for page, rec in parts.get("views", {}).get("pages", {}).items():
        proto = rec.get("protocol", {})
        add(f"server CPU per warm view, {page} (s)", 0.15, "s", proto.get("cpu_s", {}).get("mean"))
        add(f"script runs per view, {page}", 1, "", proto.get("runs", {}).get("max"))
        add(f"websocket MB per view, {page}", 1.5 if page == "study" else 0.5, "MB", proto.get("wire_mb", {}).get("mean"))
    for run in parts.get("wsroom", {}).get("runs", []):
        label = (f"protocol room {run.get('visitors')} x {len(run.get('links', []))} + 2 trainings, {run.get('servers')}, "
                 f"torch {run.get('server_torch', '?')}")
        add(f"{label}: errors", 0, "", run.get("errors"))
        add(f"{label}: all views done after (s)", 30.0, "s", run.get("all_done_after_s"))
        add(f"{label}: p95 (s)", 15.0, "s", (run.get("latency") or {}).get("p95_s"))
        if "+cpu" in str(run.get("server_torch")):
            add(f"{label}: peak RSS per replica, CPU-only build (MB)", 1024.0, "MB",
                max(run.get("peak_rss_mb_per_process") or [0]) or None)
    room = parts.get("browserroom", {})
    if "chart_drawn" in room:
        label = f"browser room {room.get('visitors')} ({room.get('phones')} phones), {room.get('servers')}"
        add(f"{label}: errors", 0, "", room.get("errors"))
        add(f"{label}: p95 time to chart drawn (s)", 20.0, "s", room["chart_drawn"]["all"].get("p95_s"))
    return rows


# ------------------------------------------------------------------------------------ printing
def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[("" if v is None else (f"{v:,.3g}" if isinstance(v, float) and abs(v) < 1000 else
                                     f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)))
              for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _format_part(name: str, r: dict) -> str:
    head = f"\n== {name} ({r.get('part_seconds', 0):.0f} s)"
    if "skipped" in r:
        return f"{head}\nskipped: {r['skipped']}"
    if "error" in r:
        return f"{head}\nerror: {r['error']}"
    if name == "train":
        rows = []
        for s in r["scenarios"]:
            o, b = s["ours"], s["baseline"]
            one = s.get("one_process") or {}
            rows.append([f"{s['loss']}/{s['augmentation']}", o["total_s"], b["total_s"], s["speedup_commands"],
                         one.get("ours_s"), one.get("baseline_s"), one.get("speedup"),
                         o["images_per_s"], b["images_per_s"], s["speedup_images_per_s"], b["build_pairs_s"],
                         o["linear_acc"], b["linear_acc"]])
        return (f"{head}: {r['dataset']} ({r['n_train']:,} train images), paper recipe, 1 epoch\n"
                + _table(["scenario", "ours cmds s", "paper cmds s", "x", "ours 1 proc s", "paper 1 proc s", "x",
                          "ours img/s", "paper img/s", "x", "paper lists s", "ours acc", "paper acc"], rows))
    if name == "recipes":
        rows = []
        for dataset, d in r["datasets"].items():
            if "skipped" in d:
                rows.append([dataset, "skipped"] + [None] * 8)
                continue
            o, b = d["ours"], d["baseline"] or {}
            rows.append([dataset, o["command_s"], d["limit_s"], o["train_seconds"], o["linear_acc"], d["min_linear_acc"],
                         b.get("command_s"), b.get("linear_acc"), d["speedup_commands"], o["epochs"]])
        return (f"{head}: whole `python -m cl train --dataset D` commands; baseline: the previous default recipe\n"
                + _table(["data set", "ours cmd s", "limit s", "ours train s", "ours acc", "min acc", "previous cmd s",
                          "previous acc", "x", "epochs"], rows))
    if name == "time_to_accuracy":
        rows = []
        for key in ("default", "paper"):
            d = r[key]
            rows.append([key, d["config"]["loss"], len(d["history"]), d["seconds_to"].get("0.93"),
                         d["seconds_to"].get("0.99"), d["best_acc"], d["seconds_to_best"], d["stopped"]])
        return (f"{head}: {r['dataset']}, paper protocol, seconds of training\n"
                + _table(["recipe", "loss", "epochs", "s to 0.93", "s to 0.99", "best acc", "s to best", "stopped"],
                         rows))
    if name == "projection":
        rows = []
        for n, row in r["sizes"].items():
            for method, c in row.items():
                rows.append([int(n), method, c["ours_s"], c["baseline_s"], c["speedup"], c.get("opentsne_default_s"),
                             c["reproducible"], c["knn_acc_ours"], c["knn_acc_baseline"]])
        return (f"{head}: {r['embeddings']}; JIT warm-up {r['jit_warmup_s']:.1f} s\n"
                + _table(["points", "method", "ours s", "baseline s", "x", "openTSNE s", "reproducible",
                          "2-D kNN ours", "2-D kNN base"], rows))
    if name == "neighbors":
        rows = []
        for n, g in r["galleries"].items():
            o, b = g["ours"], g["baseline"]
            rows.append([int(n), o["p50_ms"], o["p95_ms"], o["decode_prepare_p50_ms"], o["embed_p50_ms"],
                         o["search_p50_ms"], b["p50_ms"], b["p95_ms"], g["speedup_p95"], g["same_top10"]])
        return (f"{head}: {r['n_queries']} queries, file -> top-10 (ms)\n"
                + _table(["gallery", "p50", "p95", "decode+prep", "embed", "search", "naive p50", "naive p95",
                          "x p95", "same top-10"], rows))
    if name == "maptrust":
        rows = [[m, d["ours_s"], d["baseline_trustworthiness_s"], d["speedup"], d["trustworthiness"],
                 d["baseline_trustworthiness"], d["continuity"], d["baseline_continuity"], d["mean_kept"]]
                for m, d in r["maps"].items()]
        return (f"{head}: {r['embeddings']}; kernel load {r['kernel_load_s']} s\n"
                + _table(["map", "ours s", "sklearn T s", "x", "T", "sklearn T", "C", "sklearn C", "kept"], rows))
    if name == "app":
        emb = (f"embedding page with {r['scatter_points']:,} points {r['embedding_page_s']} s" if "scatter_points" in r
               else f"embedding page skipped: {r.get('embedding_page_skipped')}")
        return (f"{head}\nfirst page {r.get('first_page_s')} s (settled {r.get('first_page_idle_s')} s); {emb}; "
                f"peak RSS {r.get('peak_rss_mb')} MB, of which `import torch` alone is "
                f"{r.get('torch_import_rss_mb')} MB ({r.get('torch_build')})")
    if name == "links":
        slow = ", ".join(r.get("pages_over_5s", [])) or "none"
        return (f"{head}\ncold deep link {r.get('link')}: {[c['settle_s'] for c in r.get('cold', [])]} s; "
                f"first visits of {r.get('pages_summary', {}).get('n')} pages: p50 {r.get('pages_summary', {}).get('p50_s')} s, "
                f"max {r.get('pages_summary', {}).get('max_s')} s; over 5 s: {slow}; errors {r.get('errors')} "
                f"({r.get('torch_build')})")
    if name == "room":
        rows = [[run.get("torch_build"), run.get("visitors"), run.get("errors"), f"{run.get('settled')}/{run.get('visits')}",
                 run["settle"]["all"].get("p50_s"), run["settle"]["all"].get("p95_s"),
                 (run["settle"].get("upload") or {}).get("p50_s"), run.get("peak_rss_mb")] for run in r.get("runs", [])]
        return (f"{head}: visitors at once (half on phones), deep links, an upload, two trainings; demo mode\n"
                + _table(["torch", "visitors", "errors", "settled", "p50 s", "p95 s", "upload p50 s", "peak RSS MB"], rows))
    if name == "views":
        rows = [[p, v["protocol"]["cpu_s"].get("mean"), v["protocol"]["runs"].get("mean"), v["protocol"]["wire_mb"].get("mean"),
                 (v.get("browser") or {}).get("cpu_s", {}).get("mean"), (v.get("browser") or {}).get("wire_mb", {}).get("mean"),
                 (v.get("browser") or {}).get("chart_drawn_s", {}).get("median")] for p, v in r.get("pages", {}).items()]
        return (f"{head}: per page, demo mode, a new visitor per view\n"
                + _table(["page", "CPU s/view", "runs", "ws MB", "browser CPU s", "browser MB", "chart drawn s"], rows))
    if name == "wsroom":
        rows = [[run.get("servers"), run.get("visitors"), run.get("errors"), f"{run.get('views_ok')}/{run.get('views')}",
                 run.get("all_done_after_s"), run.get("views_per_s"), (run.get("latency") or {}).get("p50_s"),
                 (run.get("latency") or {}).get("p95_s"), run.get("server_cpu_s")] for run in r.get("runs", [])]
        return (f"{head}: protocol visitors at once, deep links, two trainings; demo mode\n"
                + _table(["servers", "visitors", "errors", "ok", "all done s", "views/s", "p50 s", "p95 s",
                          "server CPU s"], rows))
    if name == "browserroom" and "chart_drawn" in r:
        rows = [[k, v.get("n"), v.get("p50_s"), v.get("p95_s"), v.get("max_s")] for k, v in r["chart_drawn"].items()]
        return (f"{head}: {r.get('visitors')} Chromium visitors at once ({r.get('phones')} phones), one chart link each, "
                f"{r.get('servers')}, two trainings; errors {r.get('errors')}\n"
                + _table(["chart drawn", "visits", "p50 s", "p95 s", "max s"], rows))
    if name == "distributed":
        rows = [[key, d["world_size"], d["backend"], d["command_s"], d["train_seconds"], d["images_per_s"],
                 d["linear_acc"]] for key, d in (("1 process", r["one_process"]), ("2 processes", r["two_processes"]))]
        return (f"{head}: python -m cl train --dataset digits ({r['n_train']:,} train images, {r['epochs']} epochs), "
                f"alone and under torchrun; accuracy: paper protocol, {r['one_process']['n_test_scored']} test images "
                f"scored\n" + _table(["run", "processes", "backend", "cmd s", "train s", "img/s", "linear acc"], rows)
                + f"\ntraining 1 process / 2 processes: x{r['speedup_train']}; whole command: x{r['speedup_command']}")
    return head


def _format_targets(rows: list[dict]) -> str:
    table = [[r["name"], r["limit"], r["value"], {True: "met", False: "NOT met", None: "not measured"}[r["met"]]]
             for r in rows]
    return "\n== targets\n" + _table(["target", "limit", "measured", ""], table)

