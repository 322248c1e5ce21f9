"""Ranking pretrained models for a dataset without fine-tuning them.

Each score reads only the frozen body's features (or its source head's outputs) on the
user's labelled data, so ranking costs one cached extraction per model plus seconds:

  logme(features, labels)      LogME (You et al., ICML 2021): the log marginal evidence of a
                               Bayesian linear model from features to each one-hot label
                               column, per example, averaged over classes. Higher is better.
  leep(source_probs, labels)   LEEP (Nguyen et al., ICML 2020): log-likelihood of the labels
                               under the source head's "dummy label" distribution.
  nce(source_labels, labels)   NCE (Tran et al., ICCV 2019): -H(target label | source label).
  hscore(features, labels)     regularized H-score (Bao et al. 2019; Ibrahim et al. 2022):
                               tr(cov(f)^-1 cov(E[f|y])) with a shrunk covariance.
  knn_accuracy, linear_accuracy   cross-validated accuracy of a k-NN / a linear probe.

`rank_models(data, models)` runs them over several cards (the `headstart rank` command).
"""

from __future__ import annotations

import dataclasses

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HeadstartError

METRICS = ("logme", "leep", "nce", "hscore", "knn", "linear")
DEFAULT_METRICS = ("logme", "leep", "nce", "hscore", "knn")  # "linear" (a CV linear probe) costs more: on request
# What `rank` sorts by: LogME had the lowest mean top-1 regret against the probe's held-out accuracy
# on 7 tasks x 5, 10, 50 per class (benchmarks/bench_ranking.py; the table is in the README).
DEFAULT_SORT = "logme"


# -- input checks ----------------------------------------------------------------------------------

def _check_features(features: np.ndarray, labels: np.ndarray, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(y) == 0:
        raise HeadstartError(f"{name} must be a (N, D) matrix with one label per row; got shape {f.shape} and "
                             f"{len(y)} labels")
    if not np.isfinite(f).all():
        bad = int((~np.isfinite(f)).any(axis=1).sum())
        raise HeadstartError(f"{name} hold NaN or infinite values in {bad} of {len(f)} rows; "
                             "the model's weights or the input images are broken")
    if np.ptp(f, axis=0).max() == 0:
        raise HeadstartError(f"{name} are constant (every row is the same): the model does not see the inputs; "
                             "check the images and the model's weights")
    if len(np.unique(y)) < 2:
        raise HeadstartError(f"labels hold a single class ({y[0]!r}); scoring needs at least 2")
    return f, y


def _one_hot(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, idx = np.unique(labels, return_inverse=True)
    y = np.zeros((len(labels), len(classes)))
    y[np.arange(len(labels)), idx] = 1.0
    return y, classes


# -- LogME -----------------------------------------------------------------------------------------

def _spectrum(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sigma, Z, rest): the spectrum of F F^T on the span of F, and Y in its eigenbasis.

    sigma holds the k = min(N, D) eigenvalues of F F^T from the span of F (those at rounding
    level set to 0), Z = U^T Y the coordinates of each label column along their unit
    eigenvectors U in sample space, and rest = ||Y||^2 - ||Z||^2 per column, the part of Y
    outside those k directions. From the D x D Gram matrix when N >= D (U = F V / sqrt(sigma)),
    else from the N x N one (U is then a whole basis: rest = 0), so the cost is O(N D min(N, D))
    either way (the paper's fast version for N < D)."""
    n, d = f.shape
    if n >= d:
        sigma, v = np.linalg.eigh(f.T @ f)
        t = v.T @ (f.T @ y)
    else:
        sigma, u = np.linalg.eigh(f @ f.T)
    keep = sigma > sigma.max() * max(n, d) * np.finfo(np.float64).eps
    sigma = np.where(keep, sigma, 0.0)
    if n >= d:  # a direction of V with sigma ~ 0 is not in the span: its share of Y stays in `rest`
        z = np.where(keep[:, None], t / np.sqrt(np.where(keep, sigma, 1.0))[:, None], 0.0)
        rest = np.maximum((y**2).sum(0) - (z**2).sum(0), 0.0)
    else:
        z = u.T @ y
        rest = np.zeros(y.shape[1])
    return sigma, z, rest


def logme_evidence(sigma: np.ndarray, z: np.ndarray, rest: np.ndarray, n: int,
                   alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Log evidence of each label column at (alpha, beta), from `_spectrum` (no N x D work).

    y ~ N(0, F F^T / alpha + I / beta): in the eigenbasis of F F^T its covariance is
    (1 + beta sigma_i / alpha) / beta along direction i and 1 / beta elsewhere, so
        log p(y) = -N/2 log(2 pi) + N/2 log(beta) - 1/2 sum_i log(1 + beta sigma_i / alpha)
                   - beta/2 (sum_i z_i^2 / (1 + beta sigma_i / alpha) + rest),
    the textbook evidence of Bayesian linear regression (w ~ N(0, I / alpha), noise
    N(0, 1 / beta)), finite also at alpha = inf (w = 0)."""
    w = (beta / alpha)[None, :] * sigma[:, None]  # (k, C)
    return (-n / 2 * np.log(2 * np.pi) + n / 2 * np.log(beta) - np.log1p(w).sum(0) / 2
            - beta / 2 * ((z**2 / (1 + w)).sum(0) + rest))


def logme(features: np.ndarray, labels: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> float:
    """LogME: the maximum log evidence per example, averaged over the one-vs-rest label columns.

    For each class, a Bayesian linear regression y = F w + noise, w ~ N(0, 1/alpha), noise
    ~ N(0, 1/beta), at the (alpha, beta) that maximise its evidence, N < D included.

    The paper's MacKay fixed-point iteration (alpha = gamma / m^2, beta = (N - gamma) / residual)
    is not used: it converges linearly, slowly when N < D, and where the features say nothing
    linear about a class its maximum is at alpha = inf (w = 0), which it only creeps towards.
    Measured on 120 x 1280 N(0, 1) features, 10 classes (seed 0): after its 100 iterations alpha
    still moved by up to 4% a step and LogME read -0.26952 where the maximum is -0.26692 (7 of
    the 10 classes have theirs at alpha = inf); with ReLU of the same features (every maximum
    inside) -0.23152 against -0.23119.

    Instead the evidence is maximised exactly: at a fixed x = log(beta / alpha) the best beta is
    N / S(x) in closed form, leaving one variable per class,
        g(x) = -N/2 (log(2 pi S(x) / N) + 1) - 1/2 sum_i log(q_i(x)),
        q_i = 1 + e^x sigma_i,  S(x) = sum_i z_i^2 / q_i + rest,
    read on a grid in x (a (G, k) x (k, C) matrix product for all classes at once) wide enough
    that its ends are the limits alpha -> inf and alpha / beta -> 0 to rounding, then the best
    grid point of each class is refined by Newton steps on g'(x) = 0 kept inside the bracket of
    its two grid neighbours (bisection where a step leaves it), until every step is below `tol`
    or after `max_iter` steps. The result is never below the best grid point."""
    f, labels = _check_features(features, labels)
    y, _ = _one_hot(labels)
    n = len(f)
    sigma, z, rest = _spectrum(f, y)
    z2 = z**2  # (k, C)
    positive = sigma[sigma > 0]

    def profile(x):  # g(x) for x of shape (G,) shared by all classes -> (G, C)
        w = np.exp(x)[:, None] * sigma[None, :]
        s = (1 / (1 + w)) @ z2 + rest
        return -n / 2 * (np.log(2 * np.pi * s / n) + 1) - np.log1p(w).sum(1)[:, None] / 2

    def slopes(x):  # g'(x), g''(x) for one x per class, x of shape (C,)
        w = np.exp(x)[:, None] * sigma[None, :]  # (C, k)
        q = 1 + w
        zz = z2.T
        s = (zz / q).sum(1) + rest
        b = (zz * w / q**2).sum(1)  # -S'(x)
        db = (zz * w * (1 - w) / q**3).sum(1)
        g1 = -(w / q).sum(1) / 2 + n * b / (2 * s)
        g2 = -(w / q**2).sum(1) / 2 + n * (db * s + b**2) / (2 * s**2)
        return g1, g2

    # e^x sigma_i runs from e^-40 for the largest sigma to e^40 for the smallest positive one. Each
    # term of g turns over within a few units of x, so a step of 1/4 lands next to the best maximum:
    # against a scan in steps of 0.002 on 60 random problems (N 8-200, D 3-400, ReLU, dead
    # columns) no scan point was above the result by more than 1e-14 per example.
    step = 0.25
    grid = np.arange(-np.log(positive.max()) - 40, -np.log(positive.min()) + 40 + step, step)
    values = profile(grid)  # (G, C)
    best = values.argmax(0)
    x = grid[best]
    lo = grid[np.maximum(best - 1, 0)]
    hi = grid[np.minimum(best + 1, len(grid) - 1)]
    inner = (best > 0) & (best < len(grid) - 1)  # at an end of the grid: the limit is the maximum
    lo, hi = np.where(inner, lo, x), np.where(inner, hi, x)
    for _ in range(max_iter):
        g1, g2 = slopes(x)
        lo = np.where(g1 > 0, x, lo)
        hi = np.where(g1 < 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - g1 / g2
        new = np.where((g2 < 0) & (new >= lo) & (new <= hi), new, (lo + hi) / 2)
        new = np.where(inner, new, x)
        done = np.abs(new - x).max() <= tol
        x = new
        if done:
            break

    def evidence(x):  # at beta = N / S(x), alpha = beta e^-x: the evidence itself, one x per class
        s = (z2.T / (1 + np.exp(x)[:, None] * sigma[None, :])).sum(1) + rest
        beta = n / s
        return logme_evidence(sigma, z, rest, n, beta * np.exp(-x), beta)

    best_evidence = np.maximum(evidence(x), evidence(grid[best]))
    return float((best_evidence / n).mean())


# -- LEEP, NCE ---------------------------------------------------------------------------------------

def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: average log of sum_z P(y_i | z) theta(x_i)_z, with P(y | z) estimated from the data."""
    theta = np.asarray(source_probs, dtype=np.float64)
    if theta.ndim != 2 or len(theta) != len(labels):
        raise HeadstartError(f"source_probs must be (N, Z) with one label per row; got {theta.shape}")
    if not np.isfinite(theta).all() or (theta < 0).any():
        raise HeadstartError("source_probs must be probabilities (finite, non-negative)")
    y, _ = _one_hot(np.asarray(labels))
    theta = theta / theta.sum(1, keepdims=True)
    joint = y.T @ theta / len(theta)  # (C, Z): P(y, z)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = theta @ cond.T  # (N, C): the dummy classifier's predictions
    return float(np.mean(np.log(np.maximum((eep * y).sum(1), 1e-300))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: the negative conditional entropy -H(Y | Z) of target labels given source labels."""
    z = np.asarray(source_labels)
    y = np.asarray(labels)
    if z.shape != y.shape or z.ndim != 1:
        raise HeadstartError(f"source_labels and labels must be two vectors of the same length; got {z.shape}, {y.shape}")
    _, zi = np.unique(z, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((yi.max() + 1, zi.max() + 1))
    np.add.at(joint, (yi, zi), 1.0)
    joint /= len(y)
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log((joint / pz)[nz])).sum())


# -- H-score -----------------------------------------------------------------------------------------

def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """Regularized H-score: tr(S^-1 B) with S the Ledoit-Wolf shrunk covariance of the features
    and B the covariance of the class-conditional means (a shrunk S keeps it finite when N < D)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    f, labels = _check_features(features, labels)
    f = f - f.mean(0)
    # Ledoit-Wolf: (1 - s) S + s mu I; scikit-learn's estimator object is 10x slower at D = 1,280
    s = ledoit_wolf_shrinkage(f, assume_centered=True)
    cov = f.T @ f / len(f)
    mu = np.trace(cov) / cov.shape[0]
    shrunk = (1 - s) * cov
    shrunk[np.diag_indices_from(shrunk)] += s * mu
    classes, idx = np.unique(labels, return_inverse=True)
    means = np.stack([f[idx == c].mean(0) for c in range(len(classes))])
    weights = np.bincount(idx) / len(idx)
    between = (means * weights[:, None]).T @ means
    return float(np.trace(np.linalg.solve(shrunk, between)))


# -- cross-validated accuracies ------------------------------------------------------------------------

def _folds(labels: np.ndarray, k: int = 5) -> int:
    values, counts = np.unique(labels, return_counts=True)
    small = [str(v) for v, c in zip(values, counts) if c < 2]
    if small:
        raise HeadstartError(
            f"cross-validation needs at least 2 examples of every class; class{'es' if len(small) > 1 else ''} "
            f"{', '.join(repr(s) for s in small)} {'have' if len(small) > 1 else 'has'} only 1: add examples, "
            "or leave out the knn and linear metrics"
        )
    return int(min(k, counts.min()))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """Stratified k-fold accuracy of a cosine k-nearest-neighbour classifier."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    f, labels = _check_features(features, labels)
    n_folds = _folds(labels, folds)
    neighbours = max(1, min(k, int(len(labels) * (n_folds - 1) / n_folds) - 1))
    clf = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, f, labels, cv=cv).mean())


def linear_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Stratified k-fold accuracy of headstart's linear probe (the head `fit` would train), at the
    L2 strength its own cross-validation picks (headstart.probe)."""
    from .heads import HeadSpec
    from .probe import HeadTraining, cross_validate, one_thread, standardize

    f, labels = _check_features(features, labels)
    _folds(labels, folds)
    classes, y = np.unique(labels, return_inverse=True)
    with one_thread():
        z = standardize(f)[0]
        cv = cross_validate(HeadSpec(), z, y, len(classes), HeadTraining(seed=seed, folds=folds))
    return cv["chosen"]["accuracy"]


# -- ranking several cards -----------------------------------------------------------------------------

def scores(features: np.ndarray, labels: np.ndarray, source_logits: np.ndarray | None,
           metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0) -> dict[str, float | None]:
    """The requested scores for one model; LEEP and NCE are None without a source head."""
    out: dict[str, float | None] = {}
    for m in metrics:
        if m == "logme":
            out[m] = logme(features, labels)
        elif m == "hscore":
            out[m] = hscore(features, labels)
        elif m == "knn":
            out[m] = knn_accuracy(features, labels, seed=seed)
        elif m == "linear":
            out[m] = linear_accuracy(features, labels, seed=seed)
        elif m in ("leep", "nce"):
            if source_logits is None:
                out[m] = None
                continue
            z = source_logits - source_logits.max(1, keepdims=True)
            probs = np.exp(z)
            probs /= probs.sum(1, keepdims=True)
            out[m] = leep(probs, labels) if m == "leep" else nce(probs.argmax(1), labels)
    return out


def parse_metrics(metric: str) -> tuple[tuple[str, ...], str]:
    """(metrics to compute, the one to sort by) from --metric."""
    m = metric.strip().lower().replace("linear-probe", "linear")
    if m == "all":
        return METRICS, "logme"
    if m not in METRICS:
        raise HeadstartError(f"--metric must be one of {', '.join(METRICS)}, all; got '{metric}'")
    return tuple(dict.fromkeys([*DEFAULT_METRICS, m])), m


def rank_models(
    data: str | Path,
    models: Sequence[Any] | None = None,
    *,
    metric: str = DEFAULT_SORT,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
    extract_batch_size: int | None = None,
    num_workers: int | None = None,
    allow_download: bool = False,
    text: Any = None,
) -> dict[str, Any]:
    """Score every candidate on DATA from cached features; rows sorted by `metric` (best first).

    DATA holds images or texts; candidates of the other modality are skipped with a note.
    Word-vector cards are scored on averaged word vectors (their frozen features: the
    encoder that fit puts over them starts random). `text`: TextOptions (columns, max length)."""
    from .console import log, warn
    from .classify import contrastive
    from .classify.prepare import read_samples
    from .cache import FeatureCache
    from .data.modality import data_modality
    from .text.options import TextOptions
    from .zoo import get_card, is_installed, list_cards

    compute, key = parse_metrics(metric)
    text = text or TextOptions()
    kind = data_modality(data)
    samples = read_samples(data, kind, text)
    from .zoo.card import ModelCard

    wanted = list(models) if models else [c for c in list_cards() if c.modality == kind and is_installed(c)]
    cards, notes = [], []
    for m in wanted:
        card = m if isinstance(m, ModelCard) else get_card(m, allow_download=allow_download)
        if card.modality != kind:
            notes.append(f"{card.name} skipped: a{'n' if card.modality == 'image' else ''} {card.modality} model, "
                         f"and DATA holds {kind}s")
            continue
        cards.append(card)
    if not cards:
        others = ", ".join(c.name for c in list_cards() if c.modality == kind)
        given = ", ".join(f"{getattr(m, 'name', m)}" for m in wanted)
        raise HeadstartError(f"none of the models given ({given}) reads {kind}s; give {kind} models with --models "
                             f"({others})")
    for note in notes:
        warn(note)
    cache = FeatureCache.from_options(cache_dir, no_cache)
    rows = []
    for card in cards:
        from .classify.prepare import prepare

        card_text = dataclasses.replace(text, encoder="mean") if card.architecture == "word-vectors" else text
        p = prepare(data, card, val_split=0.0, cache_dir=cache.root, no_cache=not cache.enabled,
                    skip_bad_files=skip_bad_files, device=device, extract_batch_size=extract_batch_size,
                    num_workers=num_workers, allow_download=allow_download, text=card_text)
        feats = p.features()
        t0 = time.perf_counter()
        names = np.asarray(p.samples.classes)[p.samples.labels]  # class names, so that errors can name them
        row: dict[str, Any] = {"model": card.name}
        saved = _saved_scores(cache, feats.key, names, compute)
        if saved is not None:
            if saved.get("cv_note") and key in ("knn", "linear"):
                raise HeadstartError(saved["cv_note"])  # asked for by name: the reason it has no value is an error
            row.update(saved)
        else:
            x = np.asarray(feats.array)
            source_logits = None
            if card.has_source_head:
                import torch

                head = _source_head(card)
                with torch.inference_mode():
                    source_logits = head(torch.from_numpy(np.array(x, dtype=np.float32))).numpy()
            try:
                row.update(scores(x, names, source_logits, compute))
            except HeadstartError as e:  # cross-validation needs 2 examples per class: skip it unless asked for
                if key in ("knn", "linear") or "cross-validation" not in str(e):
                    raise
                row.update(scores(x, names, source_logits, [m for m in compute if m not in ("knn", "linear")]))
                row.update({m: None for m in compute if m in ("knn", "linear")})
                row["cv_note"] = str(e)
            _save_scores(cache, feats.key, names, compute, row)
        if row.get("cv_note") and row["cv_note"] not in notes:
            notes.append(row["cv_note"])
        row["extract_seconds"] = round(feats.seconds, 3)
        row["cache_hit"] = feats.cache_hit
        row["score_seconds"] = round(time.perf_counter() - t0, 3)
        if not card.has_source_head and ("leep" in compute or "nce" in compute):
            row["note"] = "no source-task head: LEEP and NCE need one"
        if contrastive.by_default(card, p.samples):  # what fit does with it here changes the features scored
            row["note"] = "; ".join(filter(None, [row.get("note"), "these scores read its pretrained embeddings; fit "
                                                  "--strategy auto tunes it on pairs of DATA's texts first (contrastive)"]))
        row.pop("cv_note", None)
        rows.append(row)
        value = row.get(key)
        log(f"{card.name}: {key} {value:.3f}" if isinstance(value, float) else f"{card.name}: {key} {value}")
    ranked = sorted(rows, key=lambda r: (r.get(key) is None, -(r.get(key) or 0.0)))
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i if r.get(key) is not None else None
    return {"metric": key, "n": len(samples), "classes": len(samples.classes), "modality": kind, "models": ranked,
            "notes": notes}


SCORES_FORMAT = 2  # 2: LogME maximises the evidence exactly (1 stopped short when N < D)


def _scores_file(cache, feature_key: str, labels: np.ndarray, metrics: Sequence[str]) -> Path | None:
    """Scores sit beside the features they came from, keyed by the labels and the metrics asked for."""
    import hashlib
    import json

    if not cache.enabled or not cache.entry(feature_key).is_dir():
        return None
    blob = json.dumps({"format": SCORES_FORMAT, "labels": [str(v) for v in labels], "metrics": list(metrics)})
    return cache.entry(feature_key) / f"scores-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.json"


def _saved_scores(cache, feature_key, labels, metrics) -> dict[str, Any] | None:
    import json

    path = _scores_file(cache, feature_key, labels, metrics)
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # damaged: computed again (and rewritten)
    return saved if isinstance(saved, dict) and all(m in saved for m in metrics) else None


def _save_scores(cache, feature_key, labels, metrics, row: dict[str, Any]) -> None:
    from .console import warn
    from .errors import CannotWrite
    from .fileio import atomic_write_json

    path = _scores_file(cache, feature_key, labels, metrics)
    if path is not None:
        try:
            atomic_write_json(path, {k: v for k, v in row.items() if k in metrics or k in ("note", "cv_note")})
        except (OSError, CannotWrite) as e:  # best effort: a cache that cannot be written costs speed, not the ranking
            warn(f"could not keep the scores in the cache ({str(e)[:120]}); they will be computed again next time")


def _source_head(card):
    """The card's source-task classifier (e.g. the 1,000 ImageNet classes), on the CPU."""
    from .surgery import split
    from .zoo import load_network

    _, head = split(load_network(card), card.classifier)
    return head.eval()
