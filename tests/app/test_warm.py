"""Test embeddings computed ahead in the background (ui/cache.warm_test_embeddings)."""

import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints" / "digits-best.safetensors"


@pytest.fixture(autouse=True)
def nothing_warmed_yet():
    """The warm store lives in the module: app tests earlier in this process may have filled it."""
    from ui import cache

    with cache._WARM_LOCK:
        running = list(cache._WARM_RUNNING.values())
    for event in running:
        event.wait(120)
    cache.shared.WARM_EMBEDDINGS.clear()
    yield


def test_warmed_embeddings_equal_a_direct_computation_and_are_not_computed_again(monkeypatch):
    from cl.checkpoints import checkpoint_id, load_checkpoint
    from cl.data import load_dataset
    from cl.evaluation import embed
    from ui import cache

    cid = checkpoint_id(CKPT)
    assert cache.warm_test_embeddings(str(CKPT), cid, "digits")
    assert not cache.warm_test_embeddings(str(CKPT), cid, "digits")  # under way or known: not twice
    net, _ = load_checkpoint(CKPT)
    expected = embed(net, load_dataset("digits", "test").images)

    def no_second_computation(*_a, **_k):
        raise AssertionError("embeddings() computed what the background had computed")

    monkeypatch.setattr(cache, "model", no_second_computation)
    got = cache.embeddings.__wrapped__(str(CKPT), cid, "digits", "test")  # waits for the thread
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_failing_warm_up_leaves_the_error_to_the_page():
    from ui import cache

    # a digits model asked for CIFAR-10 (3x32x32): incompatible, so nothing is kept
    assert cache.warm_test_embeddings(str(CKPT), "some-id", "cifar10")
    deadline = time.time() + 60
    while ("some-id" in str(cache._WARM_RUNNING)) and time.time() < deadline:
        time.sleep(0.1)
    assert cache._warmed_test_embeddings((str(CKPT), "some-id", "cifar10")) is None
