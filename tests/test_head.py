"""Surgery on any classifier, new heads, and head training on features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.heads import HeadSpec
from headstart.probe import (C_GRID, DEFAULT_C, HeadTraining, class_weights, cv_folds, one_thread, stratified_folds,
                             train_head)
from headstart.surgery import TransferModel, find_classifier, split


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.proj = nn.Linear(8, 6)
        self.out = nn.Linear(6, 4)

    def forward(self, x):
        return self.out(torch.relu(self.proj(self.features(x))))


def test_split_finds_the_last_linear_of_any_module():
    m = Custom()
    assert find_classifier(m) == "out"
    body, old = split(m)
    assert old.out_features == 4 and body(torch.zeros(2, 3, 9, 9)).shape == (2, 6)


def test_split_by_name_on_timm_and_torchvision_models():
    import timm
    import torchvision

    body, old = split(timm.create_model("test_resnet"), "fc")
    assert isinstance(old, nn.Linear) and body(torch.zeros(1, 3, 64, 64)).shape == (1, old.in_features)
    body, old = split(torchvision.models.mobilenet_v2(), "classifier")
    assert isinstance(old, nn.Sequential) and body(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)


def test_split_errors_are_clear():
    with pytest.raises(HeadstartError, match="no nn.Linear output layer"):
        split(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(HeadstartError, match="no submodule 'nope'"):
        split(Custom(), "nope")


def test_transfer_model_pools_feature_maps():
    body = nn.Conv2d(3, 5, 1)  # a body that stops before pooling
    m = TransferModel(body, HeadSpec().build(5, 2))
    assert m(torch.zeros(3, 3, 4, 4)).shape == (3, 2)


def test_heads_build_and_validate():
    lin = HeadSpec("linear").build(16, 3)
    mlp = HeadSpec("mlp", hidden=7, dropout=0.3).build(16, 3)
    assert lin(torch.zeros(2, 16)).shape == mlp(torch.zeros(2, 16)).shape == (2, 3)
    assert mlp.fc1.out_features == 7 and mlp.dropout.p == 0.3
    with pytest.raises(HeadstartError, match="--head must be one of linear, mlp"):
        HeadSpec("tree")
    with pytest.raises(HeadstartError, match="--dropout must be in"):
        HeadSpec(dropout=1.0)


def _blobs(n_per_class=(40, 40, 40), dim=32, seed=0, shift=3.0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, n in enumerate(n_per_class):
        center = rng.normal(size=dim) * shift
        xs.append(center + rng.normal(size=(n, dim)))
        ys.append(np.full(n, c))
    return np.concatenate(xs).astype(np.float32) * 5 + 7, np.concatenate(ys)


def test_head_learns_is_deterministic_and_takes_raw_features():
    x, y = _blobs()
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va = idx[:90], idx[90:]
    a = train_head(HeadSpec(), x[tr], y[tr], x[va], y[va], 3, HeadTraining(seed=5))
    b = train_head(HeadSpec(), x[tr], y[tr], x[va], y[va], 3, HeadTraining(seed=5))
    assert a.val_accuracy == 1.0 and a.c in C_GRID and a.cv["folds"] == 5
    for k, w in a.weights.items():
        assert np.array_equal(w, b.weights[k]), k
    # the torch head built from the weights takes raw features and agrees with the NumPy one
    with torch.no_grad():
        torch_logits = a.head(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(torch_logits, a.logits(x), rtol=1e-4, atol=1e-4)
    assert (a.predict(x) == y).mean() > 0.95


@pytest.mark.parametrize("n", [24, 150])  # fewer examples than features (solved in their span), and more
def test_head_is_scikit_learns_logistic_regression_at_the_same_c(n):
    """Same objective (class-balanced cross-entropy, C as scikit-learn's, intercept not penalised) on
    the same standardized features: the same optimum, whichever way it is solved."""
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs((n // 3, n // 3, n - 2 * (n // 3)), dim=60, shift=0.4, seed=3)
    for c in (0.01, 1.0):
        r = train_head(HeadSpec(), x, y, None, None, 3, HeadTraining(c=c))
        assert r.cv is None and r.c == c
        mean, scale = x.mean(0), np.sqrt(((x - x.mean(0)) ** 2).mean())
        ref = LogisticRegression(C=c, class_weight="balanced", tol=1e-10, max_iter=10_000).fit((x - mean) / scale, y)
        ours = torch.softmax(torch.from_numpy(r.logits(x)), 1).numpy()
        np.testing.assert_allclose(ours, ref.predict_proba((x - mean) / scale), atol=2e-3)


def test_cross_validation_picks_c_from_out_of_fold_scores():
    x, y = _blobs((30, 30), dim=200, shift=0.15, seed=1)  # hard and high-dimensional: overfits easily
    r = train_head(HeadSpec(), x, y, None, None, 2, HeadTraining(seed=0))
    rows = r.cv["grid"]
    chosen = next(row for row in rows if row["c"] == r.c)
    assert chosen["log_loss"] == min(row["log_loss"] for row in rows)  # the best out-of-fold log-loss
    assert r.val_balanced_accuracy == chosen["balanced_accuracy"] and r.val_loss == chosen["log_loss"]
    assert [row["c"] for row in rows] == sorted(row["c"] for row in rows)  # walked from strong to weak
    assert len(rows) < len(C_GRID) or rows[-1]["c"] == C_GRID[-1]


def test_folds_are_stratified_and_need_two_examples_of_every_class():
    y = np.array([0] * 7 + [1] * 3 + [2] * 12)
    assert cv_folds(y) == 3 and cv_folds(np.array([0, 0, 1])) == 0
    fold = stratified_folds(y, 3, seed=0)
    for f in range(3):
        assert set(y[fold == f]) == {0, 1, 2}  # every fold holds out every class
    # a class with a single example: no cross-validation, the default C
    x, _ = _blobs((5, 5, 1), dim=8)
    r = train_head(HeadSpec(), x, np.array([0] * 5 + [1] * 5 + [2]), None, None, 3)
    assert r.cv is None and r.c == DEFAULT_C and r.val_accuracy is None
    assert r.predict(x[-1:])[0] in (0, 1, 2)


def test_a_class_absent_from_the_examples_is_never_predicted():
    x, y = _blobs((20, 20), dim=8)
    r = train_head(HeadSpec(), x, y, None, None, 3)  # a third class exists but has no example here
    assert r.weights["fc.weight"].shape == (3, 8) and (r.predict(x) != 2).all()


def test_class_balance_helps_the_minority_class():
    rng = np.random.default_rng(2)  # two overlapping 2-d clouds, 200 vs 12 examples
    x = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(1.2, 1, (12, 2))]).astype(np.float32)
    y = np.array([0] * 200 + [1] * 12)
    w = class_weights(y, 2)
    assert w[1] / w[0] == pytest.approx(200 / 12)
    recall = {}
    for balance in (True, False):
        r = train_head(HeadSpec(), x, y, None, None, 2, HeadTraining(c=1.0, class_balance=balance))
        recall[balance] = (r.predict(x)[y == 1] == 1).mean()
    assert recall[True] > recall[False]


def test_mlp_head_learns_from_features():
    x, y = _blobs((20, 20, 20), dim=16, shift=1.0, seed=4)
    r = train_head(HeadSpec("mlp", hidden=16), x, y, None, None, 3, HeadTraining(seed=1))
    assert set(r.weights) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert r.val_accuracy > 0.8 and (r.predict(x) == y).mean() > 0.9
    with torch.no_grad():
        np.testing.assert_allclose(r.head(torch.from_numpy(x)).numpy(), r.logits(x), rtol=1e-4, atol=1e-4)


def test_training_options_are_validated():
    with pytest.raises(HeadstartError, match="--head-c must be > 0; got 0"):
        HeadTraining(c=0)
    with pytest.raises(HeadstartError, match="--folds must be >= 2; got 1"):
        HeadTraining(folds=1)


def test_blas_runs_on_one_thread_during_a_fit_and_is_given_back():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    with one_thread():
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert [p["num_threads"] for p in threadpool_info()] == before
