"""Bench part ``projection``: t-SNE, UMAP and PCA against scikit-learn and plain umap-learn."""

from __future__ import annotations

import time

import numpy as np
import torch

from .common import _Context, _mnist_or_digits, _ratio


# ------------------------------------------------------------------------------------ projection
def _knn_acc_2d(xy: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return round(float(cross_val_score(KNeighborsClassifier(10), xy, labels, cv=3).mean()), 4)


def _part_projection(ctx: _Context) -> dict:
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from cl.encoder import PaperEncoder
    from cl.evaluation import embed
    from cl.projection import ProjectionParams, project, warm_up

    test = _mnist_or_digits(ctx, "test")
    sizes = ctx.sizes or ([1000] if ctx.quick else [1000, 10000])
    n_max = min(max(sizes), len(test))
    torch.manual_seed(0)
    encoder = PaperEncoder(test.channels, test.size).eval()
    emb = embed(encoder, test.images[:n_max])
    labels = test.labels.numpy()[:n_max]
    ctx.say("compiling UMAP kernels (once per process)")
    jit_s = warm_up()
    import umap

    t0 = time.perf_counter()
    with warnings.catch_warnings():  # plain umap-learn's own first-call compilation, outside the timings
        warnings.simplefilter("ignore")
        # from 4,096 points umap-learn searches neighbours with NN-descent (more kernels to compile)
        warm_n = 4200 if max(sizes) >= 4096 else 100
        warm = np.random.default_rng(0).standard_normal((warm_n, 8)).astype(np.float32)
        umap.UMAP(random_state=0, n_epochs=2).fit_transform(warm)
    baseline_warm_s = time.perf_counter() - t0

    def baseline(method: str, x: np.ndarray):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "tsne":
                return TSNE(n_components=2, random_state=0).fit_transform(x), "sklearn.manifold.TSNE(random_state=0)"
            if method == "umap":
                return umap.UMAP(random_state=0).fit_transform(x), "umap.UMAP(random_state=0)"
            return PCA(n_components=2, random_state=0).fit_transform(x), "sklearn PCA(2, random_state=0)"

    out = {}
    for n in sizes:
        n = min(n, len(emb))
        x, y = emb[:n], labels[:n]
        row = {}
        for method in ("tsne", "umap", "pca"):
            ctx.say(f"{method} of {n:,} points: ours")
            t0 = time.perf_counter()
            ours = project(x, ProjectionParams(method))
            ours_s = time.perf_counter() - t0
            reproducible = None
            if n <= 2000:
                reproducible = bool(np.array_equal(ours, project(x, ProjectionParams(method))))
            ctx.say(f"{method} of {n:,} points: baseline")
            t0 = time.perf_counter()
            base, base_name = baseline(method, x)
            base_s = time.perf_counter() - t0
            cell = {"ours_s": round(ours_s, 3), "baseline_s": round(base_s, 3), "baseline": base_name,
                    "speedup": _ratio(base_s, ours_s), "reproducible": reproducible,
                    "knn_acc_ours": _knn_acc_2d(ours, y), "knn_acc_baseline": _knn_acc_2d(np.asarray(base), y)}
            if method == "tsne" and not ctx.quick:
                from openTSNE import TSNE as OpenTSNE

                ctx.say(f"tsne of {n:,} points: openTSNE defaults")
                t0 = time.perf_counter()
                OpenTSNE(random_state=0).fit(x)
                cell["opentsne_default_s"] = round(time.perf_counter() - t0, 3)
            row[method] = cell
        out[str(n)] = row
    return {"embeddings": f"randomly initialised PaperEncoder (seed 0), {emb.shape[1]}-d, first N {test.name} "
                          f"test images", "dataset": test.name, "jit_warmup_s": round(jit_s, 3),
            "baseline_warmup_s": round(baseline_warm_s, 3), "sizes": out}


