"""Transferability scores against values derived independently, not against themselves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import solve_triangular
from scipy.optimize import minimize

from headstart.errors import HeadstartError
from headstart.rank import hscore, knn_accuracy, leep, linear_accuracy, logme, nce


def _evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """Log marginal likelihood of Bayesian linear regression, straight from the textbook formula."""
    n, d = f.shape
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    sign, logdet = np.linalg.slogdet(a)
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - logdet / 2)


def _evidence_n_by_n(gram: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """The same evidence as the density of y ~ N(0, F F^T / alpha + I / beta): an N x N Cholesky
    (the determinant lemma and Woodbury turn the D x D formula into this), for D >> N."""
    n = len(y)
    try:
        chol = np.linalg.cholesky(gram * np.exp(-log_alpha) + np.eye(n) * np.exp(-log_beta))
    except np.linalg.LinAlgError:
        return -np.inf
    r = solve_triangular(chol, y, lower=True)
    return -n / 2 * np.log(2 * np.pi) - np.log(np.diag(chol)).sum() - r @ r / 2


def _logme_by_search(f: np.ndarray, labels: np.ndarray) -> float:
    """Nelder-Mead over (log alpha, log beta) per class, from the 2 best points of a coarse log
    grid, each run restarted from where it stopped; the D x D formula, or the N x N one for N < D."""
    n, d = f.shape
    gram = f @ f.T
    total = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)
        if n < d:
            def loss(p):
                return -_evidence_n_by_n(gram, y, p[0], p[1])
        else:
            def loss(p):
                return -_evidence(f, y, p[0], p[1])
        grid = np.stack(np.meshgrid(np.arange(-12.0, 19.0, 2.0), np.arange(-6.0, 13.0, 2.0)), -1).reshape(-1, 2)
        starts = sorted(grid, key=loss)[:2]
        best = np.inf
        for x0 in starts:
            for _ in range(2):
                run = minimize(loss, x0=x0, method="Nelder-Mead",
                               options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
                x0 = run.x
                best = min(best, run.fun)
        total.append(-best / n)
    return float(np.mean(total))


def test_the_two_textbook_forms_of_the_evidence_agree():
    rng = np.random.default_rng(3)
    f, y = rng.normal(size=(15, 20)), (np.arange(15) % 3 == 0).astype(float)
    for log_alpha, log_beta in [(0.0, 0.0), (3.0, 1.0), (-2.0, 4.0), (12.0, 2.0)]:
        assert _evidence_n_by_n(f @ f.T, y, log_alpha, log_beta) == pytest.approx(_evidence(f, y, log_alpha, log_beta),
                                                                                  rel=1e-10)


# N < D (issue 18): LogME once stopped its fixed-point iteration short of the maximum there: it read
# -0.26720 on the "noise" case below, whose maximum is -0.26489, and missed by 1e-3 on the 120 x 1280
# and 30 x 200 "relu" ones, by 4e-7 on the 50 x 500 one (N(0, 1) features hold nothing linear about
# a class: its maximum is often at alpha = inf, w = 0, which the search approaches). "relu" features are
# non-negative like a CNN's, "signal" adds a mean per class, "dead" zeroes a quarter of the columns
# (F^T F has zero eigenvalues) and "repeated" repeats the first half of the rows under other labels
# (F F^T has zero eigenvalues; under the same labels the evidence would grow without bound).
@pytest.mark.parametrize("n, d, classes, kind", [
    (60, 6, 3, "signal"), (12, 25, 3, "signal"), (40, 40, 4, "signal"), (120, 1280, 10, "noise"),
    (120, 1280, 10, "relu"), (30, 200, 5, "relu"), (50, 500, 3, "relu signal"), (80, 40, 4, "relu signal dead"),
    (40, 100, 3, "signal repeated"),
])
def test_logme_matches_direct_maximization_of_the_evidence(n, d, classes, kind):
    rng = np.random.default_rng(n + d)
    labels = np.arange(n) % classes
    f = rng.normal(size=(n, d))
    if "signal" in kind:
        f += 0.8 * rng.normal(size=(classes, d))[labels]
    if "relu" in kind:
        f = np.maximum(f, 0)
    if "dead" in kind:
        f[:, : d // 4] = 0
    if "repeated" in kind:
        f[n // 2:] = f[: n - n // 2]
    assert logme(f, labels) == pytest.approx(_logme_by_search(f, labels), abs=1e-7)


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 5
    noise = rng.normal(size=(300, 32))
    informative = noise + 2.0 * rng.normal(size=(5, 32))[labels]
    assert logme(informative, labels) > logme(noise, labels)


def test_leep_known_values():
    labels = np.array([0, 0, 1, 1, 1])
    aligned = np.eye(2)[labels]  # the source head already knows the target classes
    assert leep(aligned, labels) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((5, 7), 1 / 7)  # it knows nothing: the best it can do is the label prior
    prior = np.array([2 / 5, 3 / 5])
    assert leep(uniform, labels) == pytest.approx(float(np.mean(np.log(prior[labels]))), abs=1e-12)


def test_leep_by_hand():
    theta = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 0])
    # P(y, z) = sum over examples with label y of theta_z / N
    pyz = np.array([[0.9 + 0.6, 0.1 + 0.4], [0.2, 0.8]]) / 3
    pz = pyz.sum(0)
    expected = np.mean([np.log(sum(pyz[y, z] / pz[z] * theta[i, z] for z in range(2))) for i, y in enumerate(labels)])
    assert leep(theta, labels) == pytest.approx(expected, abs=1e-12)


def test_nce_known_values():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    assert nce(y + 10, y) == pytest.approx(0.0)  # the source label determines the target label
    p = np.bincount(y) / len(y)
    assert nce(np.zeros_like(y), y) == pytest.approx(float((p * np.log(p)).sum()))  # it says nothing: -H(Y)


def test_hscore_against_a_direct_formula_and_scikit_learn_shrinkage():
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(1)
    labels = np.arange(4000) % 4
    f = rng.normal(size=(4000, 6)) + rng.normal(size=(4, 6))[labels]
    fc = f - f.mean(0)
    between = sum((labels == c).mean() * np.outer(fc[labels == c].mean(0), fc[labels == c].mean(0)) for c in range(4))
    shrunk = LedoitWolf(assume_centered=True).fit(fc).covariance_
    assert hscore(f, labels) == pytest.approx(float(np.trace(np.linalg.inv(shrunk) @ between)), rel=1e-9)
    noise = rng.normal(size=(4000, 6))
    assert hscore(noise, labels) < 0.01 < hscore(f, labels)


def test_cross_validated_accuracies():
    rng = np.random.default_rng(2)
    labels = np.arange(90) % 3
    separable = rng.normal(size=(90, 8)) * 0.1 + 5 * np.eye(3, 8)[labels]
    assert knn_accuracy(separable, labels) == 1.0
    assert linear_accuracy(separable, labels) == 1.0
    shuffled = rng.permutation(labels)
    assert knn_accuracy(separable, shuffled) < 0.6


@pytest.mark.parametrize("fn", [logme, hscore, knn_accuracy])
def test_bad_features_are_clear_errors(fn):
    labels = np.array([0, 1] * 5)
    f = np.arange(40.0).reshape(10, 4)
    f[3, 2] = np.nan
    with pytest.raises(HeadstartError, match="NaN or infinite values in 1 of 10 rows"):
        fn(f, labels)
    with pytest.raises(HeadstartError, match="constant"):
        fn(np.ones((10, 4)), labels)
    with pytest.raises(HeadstartError, match="single class"):
        fn(np.arange(40.0).reshape(10, 4), np.zeros(10))


def test_cross_validation_names_the_class_with_one_example():
    f = np.random.default_rng(0).normal(size=(7, 3))
    labels = np.array(["cat", "cat", "cat", "dog", "dog", "dog", "emu"])
    with pytest.raises(HeadstartError, match="class 'emu' has only 1"):
        knn_accuracy(f, labels)
    assert np.isfinite(logme(f, labels))  # LogME needs no folds
