"""Bench part ``neighbors``: image file to top-10 neighbours, against scikit-learn brute force."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cl.errors import DataUnavailableError

from .common import _Context, _load, _mnist_or_digits, _ratio, percentile


# ------------------------------------------------------------------------------------ neighbours
def _part_neighbors(ctx: _Context) -> dict:
    from PIL import Image
    from sklearn.neighbors import NearestNeighbors

    from cl.data import to_float
    from cl.encoder import build_encoder
    from cl.evaluation import embed
    from cl.retrieval import NeighborIndex, embed_one, prepare_query

    test = _mnist_or_digits(ctx, "test")
    dataset = test.name
    gallery_sizes = ctx.sizes or ([10000] if ctx.quick else [10000, 60000])
    n_queries = 30 if ctx.quick else 200
    torch.manual_seed(0)
    model = build_encoder("convnet", test.channels, test.size, width=16).eval().to(memory_format=torch.channels_last)
    need = max(gallery_sizes)
    sources = [test]
    if need > len(test):
        try:
            sources.append(_load(dataset, "train", ctx))
        except DataUnavailableError:
            pass
    pool_images = torch.cat([s.images for s in sources])[:need]
    pool_labels = np.concatenate([s.labels.numpy() for s in sources])[:need]
    ctx.say(f"embedding a gallery of {len(pool_images):,} {dataset} images")
    pool = embed(model, pool_images)

    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-query-"))
    try:
        files = []
        for i in range(20):  # what users upload: a bigger, dark-on-light picture of a digit
            arr = 255 - test.images[i, 0].numpy()
            path = tmp / f"query-{i}.png"
            Image.fromarray(arr, "L").resize((280, 280), Image.Resampling.BILINEAR).save(path)
            files.append(path)

        plain = build_encoder("convnet", test.channels, test.size, width=16)  # NCHW copy, same weights
        plain.load_state_dict(model.state_dict())
        plain.eval()

        def embed_ours(image):
            return embed_one(model, image)

        @torch.no_grad()
        def embed_plain(image):  # what one writes without thinking about threads or memory layout
            return plain(to_float(image[None]))[0].numpy()

        def run(embed_fn, search) -> tuple[dict, list, list]:
            totals, prep, emb_t, srch, tops, vecs = [], [], [], [], [], []
            for i in range(n_queries + 3):
                path = files[i % len(files)]
                t0 = time.perf_counter()
                prepared = prepare_query(path, test.channels, test.size, dataset)
                t1 = time.perf_counter()
                vec = embed_fn(prepared.tensor)
                t2 = time.perf_counter()
                top = search(vec)
                t3 = time.perf_counter()
                if i < 3:
                    continue  # warm-up
                totals.append(t3 - t0)
                prep.append(t1 - t0)
                emb_t.append(t2 - t1)
                srch.append(t3 - t2)
                tops.append(top)
                vecs.append(vec)
            def ms(seconds: list) -> list:
                return [t * 1000.0 for t in seconds]

            return ({"p50_ms": percentile(ms(totals), 50), "p95_ms": percentile(ms(totals), 95),
                     "mean_ms": round(float(np.mean(ms(totals))), 3),
                     "decode_prepare_p50_ms": percentile(ms(prep), 50), "embed_p50_ms": percentile(ms(emb_t), 50),
                     "search_p50_ms": percentile(ms(srch), 50)}, tops, vecs)

        galleries = {}
        for size in gallery_sizes:
            reps = -(-size // len(pool))
            gallery = np.tile(pool, (reps, 1))[:size]
            labels = np.tile(pool_labels, reps)[:size]
            ctx.say(f"top-10 over {size:,} embeddings: ours")
            index = NeighborIndex(gallery, labels)
            ours, ours_top, vecs = run(embed_ours, lambda v, index=index: [h.index for h in index.query(v, k=10)])
            ctx.say(f"top-10 over {size:,} embeddings: plain forward pass + sklearn NearestNeighbors per query")

            def naive(v, gallery=gallery):
                nn = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(gallery)
                return nn.kneighbors(np.asarray(v, dtype=np.float32)[None], return_distance=False)[0].tolist()

            base, base_top, _ = run(embed_plain, naive)
            base["name"] = ("plain NCHW forward pass with default threads + sklearn NearestNeighbors(metric='cosine', "
                            "algorithm='brute') fitted per query; same decoding and preprocessing")
            # Near-ties (a tiled gallery repeats vectors) may be ordered differently: compare the
            # neighbours' similarities to the query rather than their indices.
            unit = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
            same = [np.allclose(np.sort(unit[a] @ (v / np.linalg.norm(v))), np.sort(unit[b] @ (v / np.linalg.norm(v))),
                                atol=1e-5) for a, b, v in zip(ours_top, base_top, vecs, strict=True)]
            galleries[str(size)] = {"ours": ours, "baseline": base, "speedup_p95": _ratio(base["p95_ms"], ours["p95_ms"]),
                                    "same_top10": round(float(np.mean(same)), 3),
                                    "gallery": (f"{size:,} embeddings of {dataset} images" if reps == 1
                                                else f"{len(pool):,} {dataset} embeddings tiled to {size:,}")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"encoder": "randomly initialised default-recipe ConvNet (width 16, 64-d, seed 0), channels-last",
            "query": "280x280 PNG of a dark-on-light digit read from disk (decode, invert, crop, centre, 28x28)",
            "dataset": dataset, "n_queries": n_queries, "torch_threads": torch.get_num_threads(),
            "galleries": galleries}


