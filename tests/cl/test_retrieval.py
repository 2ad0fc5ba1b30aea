"""cl.retrieval: cosine top-k, the match percentile and neighbour agreement, against scikit-learn and
formulas computed here."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from cl.retrieval import NeighborIndex, SimilarityScale, most_changed, neighbour_agreement


@pytest.fixture
def gallery():
    rng = np.random.default_rng(3)
    return rng.normal(size=(300, 16)).astype(np.float32), rng.integers(0, 5, 300)


def test_top_k_matches_scikit_learn_cosine(gallery):
    emb, labels = gallery
    index = NeighborIndex(emb, labels)
    reference = NearestNeighbors(n_neighbors=10, metric="cosine").fit(emb)
    query = np.random.default_rng(4).normal(size=16).astype(np.float32)
    dist, idx = reference.kneighbors(query[None])
    hits = index.query(query, k=10)
    assert [h.index for h in hits] == idx[0].tolist()
    np.testing.assert_allclose([h.similarity for h in hits], 1 - dist[0], atol=1e-5)
    assert [h.label for h in hits] == labels[idx[0]].tolist()


def test_exclude_drops_the_query_itself_and_k_is_capped(gallery):
    emb, labels = gallery
    index = NeighborIndex(emb[:5], labels[:5])
    hits = index.query(emb[2], k=10, exclude=2)
    assert len(hits) == 4 and 2 not in [h.index for h in hits]


def test_match_percentile_counts_ties_half():
    scale = SimilarityScale(np.eye(4, dtype=np.float32))  # every nearest-other similarity is 0
    assert scale.n_images == 4
    assert scale.percentile(0.0) == 50.0 and scale.percentile(1.0) == 100.0 and scale.percentile(-1.0) == 0.0


def test_neighbour_agreement_by_hand(gallery):
    emb, _ = gallery
    same = neighbour_agreement(emb, emb, k=5)
    assert np.all(same == 1.0)
    other = np.random.default_rng(9).normal(size=emb.shape).astype(np.float32)
    got = neighbour_agreement(emb, other, k=5)
    nn_a = NearestNeighbors(n_neighbors=6, metric="cosine").fit(emb).kneighbors(emb)[1][:, 1:]
    nn_b = NearestNeighbors(n_neighbors=6, metric="cosine").fit(other).kneighbors(other)[1][:, 1:]
    expected = np.array([len(set(a) & set(b)) / 5 for a, b in zip(nn_a, nn_b, strict=True)])
    np.testing.assert_allclose(got, expected)


def test_most_changed_lists_the_lowest_agreement_first():
    order, tied = most_changed(np.array([0.9, 0.1, 0.5, 0.1, 1.0]), n=3)
    assert set(order[:2].tolist()) == {1, 3} and order[2] == 2 and tied == 2
