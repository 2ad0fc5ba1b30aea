"""Training: reproducibility on CPU, clean stops, progress events, and that it learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cl.data import load_dataset
from cl.encoder import build_encoder
from cl.errors import ConfigError
from cl.evaluation import evaluate_model
from cl.losses import LABELS, LOSS_CLASSES, ContrastiveLoss
from cl.training import TrainConfig, resolve_config, train

torch.set_num_threads(1)

PROGRESS_KEYS = {"epoch", "epochs", "step", "steps", "loss", "images_per_s", "elapsed"}


@pytest.fixture(scope="module")
def digits_train():
    return load_dataset("digits", "train")


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def small_train(digits_train):
    idx = np.random.default_rng(0).permutation(len(digits_train))[:240]
    return digits_train.subset(np.sort(idx))


@pytest.fixture(scope="module")
def small_test(digits_test):
    return digits_test.subset(np.arange(200))


def _cfg(**kw) -> TrainConfig:
    base = dict(dataset="digits", epochs=1, batch_size=48, threads=1, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _same_weights(m1, m2) -> bool:
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


SCENARIOS = [
    dict(recipe="paper"),  # triplet, study's way
    dict(recipe="paper", loss="pairwise", augmentation="fer"),  # positives augmented once
    dict(recipe="paper", loss="contrastive", augmentation="simclr", augment_once=False),
    dict(recipe="default"),  # SupCon on two views, ConvNet
    dict(recipe="default", loss="ntxent", encoder_width=8),
    dict(recipe="default", loss="triplet", mining="batch-hard", encoder_width=8),
    dict(recipe="default", views=2, encoder_width=8),  # SupCon on two views per image
    dict(recipe="default", loss="triplet", mining="semi-hard", views=1, encoder_width=8),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_same_seed_same_weights_and_metrics(scenario, small_train, small_test):
    r1 = train(_cfg(**scenario), small_train)
    r2 = train(_cfg(**scenario), small_train)
    assert r1.stopped == r2.stopped == "completed"
    assert _same_weights(r1.model, r2.model)
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    e1 = evaluate_model(r1.model, small_test)
    e2 = evaluate_model(r2.model, small_test)
    for key in ("linear_acc", "top3_acc", "knn_acc", "precision_at_10", "confusion_matrix", "predictions"):
        assert e1[key] == e2[key], key
    # training changed the weights (not a no-op)
    torch.manual_seed(0)
    c = resolve_config(_cfg(**scenario))
    untrained = build_encoder(c.encoder, 1, 28, width=c.encoder_width)
    assert not _same_weights(untrained, r1.model)
    assert r1.n_train == len(small_train)
    assert r1.images_seen > 0 and all(math.isfinite(h["loss"]) for h in r1.history)


@pytest.mark.parametrize("recipe", ["paper", "default"])
def test_different_seeds_differ(recipe, small_train):
    r1 = train(_cfg(recipe=recipe, seed=1, encoder_width=8), small_train)
    r2 = train(_cfg(recipe=recipe, seed=2, encoder_width=8), small_train)
    assert not _same_weights(r1.model, r2.model)


def test_cancel_stops_early(small_train):
    calls = {"n": 0}
    events = []

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 2

    r = train(_cfg(recipe="default", epochs=5, batch_size=32, encoder_width=8), small_train,
              progress=events.append, should_stop=should_stop)
    assert r.stopped == "cancelled"
    assert len(events) == 2  # exactly two steps ran
    assert len(r.history) <= 1
    assert not r.model.training  # handed back in eval mode


def test_time_budget_stops(small_train):
    events = []
    r = train(_cfg(recipe="default", epochs=500, batch_size=32, encoder_width=8, time_budget=0.5), small_train,
              progress=events.append)
    assert r.stopped == "time_budget"
    assert len(r.history) < 500
    assert r.seconds < 10
    assert events and events[-1]["elapsed"] < 10


def test_progress_events_have_documented_keys(small_train):
    events = []
    epochs_seen = []
    r = train(_cfg(recipe="paper", epochs=2, batch_size=64), small_train, progress=events.append,
              on_epoch_end=lambda model, epoch: epochs_seen.append(epoch) or {"probe": float(epoch)})
    assert events
    steps = events[0]["steps"]
    assert len(events) == steps * 2
    for ev in events:
        assert PROGRESS_KEYS <= set(ev), PROGRESS_KEYS - set(ev)
        assert ev["epochs"] == 2 and 1 <= ev["epoch"] <= 2 and 1 <= ev["step"] <= ev["steps"]
        assert math.isfinite(ev["loss"]) and ev["images_per_s"] > 0 and ev["elapsed"] >= 0
    assert [ev["step"] for ev in events[:steps]] == list(range(1, steps + 1))
    elapsed = [ev["elapsed"] for ev in events]
    assert elapsed == sorted(elapsed)
    assert epochs_seen == [1, 2]
    assert [h["probe"] for h in r.history] == [1.0, 2.0]


def test_resolve_config_paper_and_validation():
    pair = resolve_config(TrainConfig(recipe="paper", loss="pairwise"))
    assert (pair.encoder, pair.optimizer, pair.batch_size, pair.lr, pair.epochs) == ("paper", "sgd", 1024, 0.05, 5)
    assert pair.augment_once is True and pair.augment_anchor is False
    trip = resolve_config(TrainConfig(recipe="paper"))
    assert (trip.loss, trip.lr, trip.epochs, trip.batch_size) == ("triplet", 0.15, 10, 1024)
    default = resolve_config(TrainConfig(dataset="digits"))
    assert default.loss == "supcon" and default.encoder == "convnet"
    for bad in (dict(epochs=0), dict(epochs=-1), dict(batch_size=1), dict(lr=-0.1), dict(lr=float("nan")),
                dict(loss="hinge"), dict(augmentation="mixup"), dict(recipe="fast"), dict(time_budget=0),
                dict(mining="batch-hard", loss="supcon"), dict(temperature=0.0)):
        with pytest.raises(ConfigError):
            resolve_config(TrainConfig(**bad))


def test_training_refuses_single_class(small_train):
    one = small_train.subset(np.flatnonzero(small_train.labels.numpy() == 3))
    with pytest.raises(ConfigError):
        train(_cfg(), one)


def test_default_recipe_learns_digits(digits_train, digits_test):
    r = train(TrainConfig(dataset="digits", epochs=10, seed=0, threads=1, device="cpu"), digits_train)
    assert r.stopped == "completed" and len(r.history) == 10
    trained = evaluate_model(r.model, digits_test, protocol="paper")
    torch.manual_seed(0)
    untrained = evaluate_model(build_encoder("convnet", 1, 28, width=r.config.encoder_width), digits_test)
    assert trained["n_test"] == 108
    assert trained["linear_acc"] > 0.8, trained["linear_acc"]
    assert trained["knn_acc"] > 0.8
    assert trained["linear_acc"] > untrained["linear_acc"] + 0.3
    assert trained["knn_acc"] > untrained["knn_acc"]
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_forward_triplet_reuses_the_anchor_pass_exactly_as_three_passes():
    """x_p=None (positive == anchor) must leave loss, gradients and BatchNorm running statistics
    as the study's three separate passes model(a), model(a), model(n) leave them."""
    import copy

    from cl.encoder import PaperEncoder
    from cl.training import forward_triplet

    torch.manual_seed(0)
    ours = PaperEncoder(1, 28).train()
    ref = copy.deepcopy(ours)
    x_a, x_n = torch.randn(64, 1, 28, 28), torch.randn(64, 1, 28, 28)
    loss_fn = torch.nn.TripletMarginLoss(margin=1.0, p=2)
    z = forward_triplet(ours, x_a, None, x_n)
    loss_ours = loss_fn(*z)
    loss_ref = loss_fn(ref(x_a), ref(x_a), ref(x_n))
    loss_ours.backward()
    loss_ref.backward()
    assert torch.allclose(loss_ours, loss_ref, atol=1e-6)
    for (name, p1), (_, p2) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.allclose(p1.grad, p2.grad, rtol=1e-4, atol=1e-6), name
    for (name, b1), (_, b2) in zip(ours.named_buffers(), ref.named_buffers(), strict=True):
        if b1.dtype.is_floating_point:
            assert torch.allclose(b1, b2, rtol=1e-5, atol=1e-7), name
    # momentum restored after the pass
    assert all(m.momentum == 0.1 for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # with a real positive it is exactly three passes
    z2 = forward_triplet(ref, x_a, x_n, x_n)
    assert torch.equal(z2[1], z2[2])


def test_default_recipe_is_one_view_supcon_and_views_validated():
    c = resolve_config(TrainConfig(dataset="mnist"))
    assert (c.loss, c.views, c.optimizer, c.encoder) == ("supcon", 1, "adamw", "convnet")
    assert resolve_config(TrainConfig(dataset="mnist", loss="ntxent")).views == 2
    assert resolve_config(TrainConfig(recipe="paper", loss="supcon")).views == 2
    for bad in (dict(views=3), dict(views=0), dict(loss="ntxent", views=1),
                dict(recipe="paper", loss="triplet", views=1)):
        with pytest.raises(ConfigError):
            resolve_config(TrainConfig(**bad))


def test_one_view_counts_one_image_per_item(small_train):
    one = train(_cfg(recipe="default", encoder_width=8, views=1), small_train)
    two = train(_cfg(recipe="default", encoder_width=8, views=2), small_train)
    assert one.images_seen == len(small_train) and two.images_seen == 2 * len(small_train)


def test_precision_is_fp32_for_the_paper_recipe_and_hardware_chosen_for_ours():
    from cl.training import auto_precision

    assert resolve_config(TrainConfig(recipe="paper")).precision == "fp32"
    assert resolve_config(TrainConfig(dataset="mnist")).precision == auto_precision("auto")
    assert auto_precision("cpu") == ("bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32")
    for chosen in ("fp32", "bf16"):
        assert resolve_config(TrainConfig(dataset="mnist", precision=chosen)).precision == chosen
        assert resolve_config(TrainConfig(recipe="paper", precision=chosen)).precision == chosen
    for bad in ("fp16", "float32", ""):
        with pytest.raises(ConfigError):
            resolve_config(TrainConfig(precision=bad))


def test_bf16_training_runs_the_encoder_in_bf16_and_keeps_float32_weights(small_train):
    from cl import training

    inside, outside = [], []
    real_encode = training._encode

    def spy(run, x):
        hook = run.model.backbone[0].register_forward_hook(lambda _m, _i, out: inside.append(out.dtype))
        try:
            z = real_encode(run, x)
        finally:
            hook.remove()
        outside.append(z.dtype)
        return z

    fp32 = train(_cfg(recipe="default", encoder_width=8, epochs=3, precision="fp32"), small_train)
    try:
        training._encode = spy
        bf16 = train(_cfg(recipe="default", encoder_width=8, epochs=3, precision="bf16"), small_train)
    finally:
        training._encode = real_encode
    assert inside and set(inside) == {torch.bfloat16}  # the first convolution ran in bf16
    assert set(outside) == {torch.float32}  # and the losses see float32
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    # same seed and data: only the arithmetic differs, so the weights must too
    assert not _same_weights(fp32.model, bf16.model)
    assert bf16.history[-1]["loss"] < bf16.history[0]["loss"]
    assert abs(bf16.history[-1]["loss"] - fp32.history[-1]["loss"]) < 0.1 * fp32.history[-1]["loss"]


class _ClassCentroidLoss(ContrastiveLoss):
    r"""A loss written only for this test: cross-entropy of each normalised embedding against the
    batch's normalised class centroids, :math:`-\log \mathrm{softmax}_c(z_i \cdot \mu_c / 0.1)_{y_i}`."""

    needs = LABELS
    calls = 0

    def forward(self, embeddings, labels=None, tuples=None):
        type(self).calls += 1
        z = torch.nn.functional.normalize(embeddings, dim=1)
        classes, index = torch.unique(labels, return_inverse=True)
        centroids = torch.zeros(len(classes), z.shape[1], dtype=z.dtype).index_add_(0, index, z)
        centroids = torch.nn.functional.normalize(centroids, dim=1)
        return torch.nn.functional.cross_entropy(z @ centroids.T / 0.1, index)


def test_a_new_loss_is_one_class_and_one_registry_line(monkeypatch, digits_train, digits_test):
    monkeypatch.setitem(LOSS_CLASSES, "class-centroid", _ClassCentroidLoss)
    _ClassCentroidLoss.calls = 0
    r = train(TrainConfig(dataset="digits", loss="class-centroid", epochs=1, seed=0, threads=1, device="cpu"),
              digits_train)
    steps = math.ceil(len(digits_train) / r.config.batch_size)
    assert r.stopped == "completed" and len(r.history) == 1 and math.isfinite(r.history[0]["loss"])
    # the loop asked the class what it needs (labels) and fed it every step the digits recipe's two views
    assert _ClassCentroidLoss.calls == steps and r.config.views == 2
    assert r.images_seen == 2 * len(digits_train)
    torch.manual_seed(0)
    untrained = evaluate_model(build_encoder("convnet", 1, 28, width=r.config.encoder_width), digits_test)
    trained = evaluate_model(r.model, digits_test)
    assert trained["knn_acc"] > untrained["knn_acc"], (trained["knn_acc"], untrained["knn_acc"])
