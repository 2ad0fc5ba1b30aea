"""Bench part ``maptrust``: neighbours kept, trustworthiness and continuity of the 10,000-image
test split's maps (:func:`cl.maptrust.map_trust`, exact) against ``sklearn.manifold.trustworthiness``
on the same embeddings and maps (cosine in the embedding, as retrieval ranks), in this process."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import ROOT, _Context, _mnist_or_digits, _ratio


def _part_maptrust(ctx: _Context) -> dict:
    import torch
    from sklearn.manifold import trustworthiness

    from cl.checkpoints import load_checkpoint
    from cl.encoder import build_encoder
    from cl.evaluation import embed
    from cl.maptrust import map_trust
    from cl.projection import ProjectionParams, project

    test = _mnist_or_digits(ctx, "test")
    n = min(len(test), (ctx.sizes or [10000])[0])
    ckpt = ROOT / "checkpoints" / f"{test.name}-best.safetensors"
    if Path(ckpt).exists():
        model, _card = load_checkpoint(ckpt)
        encoder = f"shipped {ckpt.name}"
    else:  # a trained model's map is the realistic case; a random encoder still gives exact figures to compare
        torch.manual_seed(0)
        model = build_encoder("convnet", test.channels, test.size, width=16).eval()
        encoder = "a randomly initialised ConvNet (seed 0)"
    ctx.say(f"embedding {n:,} {test.name} test images with {encoder}")
    emb = embed(model, test.images[:n])
    t0 = time.perf_counter()
    map_trust(emb[:64], emb[:64, :2])  # load (or compile, once per machine) the kernel
    kernel_s = time.perf_counter() - t0
    methods = ("pca",) if ctx.quick else ("pca", "tsne")
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    maps = {}
    for method in methods:
        ctx.say(f"{method} of {n:,} points")
        xy = project(emb, ProjectionParams(method))
        t0 = time.perf_counter()
        ours = map_trust(emb, xy)
        ours_s = time.perf_counter() - t0
        ctx.say(f"ours {ours_s:.2f} s; sklearn.manifold.trustworthiness (full n x n ranks) ...")
        t0 = time.perf_counter()
        t_ref = float(trustworthiness(emb, xy, n_neighbors=ours.k, metric="cosine"))
        t_ref_s = time.perf_counter() - t0
        # continuity is trustworthiness with the spaces swapped (unit vectors: euclidean ranks as cosine)
        c_ref = float(trustworthiness(xy, unit, n_neighbors=ours.k))
        maps[method] = {"ours_s": round(ours_s, 3), "baseline_trustworthiness_s": round(t_ref_s, 3),
                        "speedup": _ratio(t_ref_s, ours_s), **ours.summary(),
                        "baseline_trustworthiness": round(t_ref, 6), "baseline_continuity": round(c_ref, 6),
                        "abs_diff_trustworthiness": abs(ours.trustworthiness - t_ref),
                        "abs_diff_continuity": abs(ours.continuity - c_ref)}
    return {"embeddings": f"{n:,} {test.name} test images, {encoder}, {emb.shape[1]}-d",
            "n_points": n, "kernel_load_s": round(kernel_s, 3), "torch_threads": torch.get_num_threads(),
            "maps": maps,
            "note": "ours: neighbours kept, trustworthiness and continuity together; baseline: trustworthiness alone"}
