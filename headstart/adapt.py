"""Learning from unlabelled examples (`fit --unlabelled U --adapt ...`), on cached features: seconds on a CPU.
(fixmatch, mcc and dann train the body with U through the engine instead: headstart.classify.adapt_task.)

  self-training          the head labels U, and is fitted again on the labelled examples plus the part of U
                         it is surest of, ROUNDS times, the part growing to the whole of U. The rounds fit the
                         head in the whitened space of DATA's and U's features together (their covariance,
                         regularised as CORAL's), folded into the saved head: a network's features spend
                         their largest directions on what does not tell the classes apart, and whitened,
                         those weigh no more than the rest. Each round's labels are balanced over the classes
                         first (Sinkhorn: U is taken to hold every class about as often; without it, a
                         shifted U collapses onto one class), and the head's L2 strength stays the one
                         cross-validation chose on the labelled examples. The first labels come from the
                         plain probe.
  coral                  U's features are mapped onto DATA's mean and covariance (CORAL: whitened with
                         their own covariance, coloured with DATA's), and the map is folded into the saved
                         head's first layer: the head fitted on DATA reads U's domain through it. The network
                         is unchanged in kind (body, linear head), so evaluate, predict and export work as on
                         any run; it is a head for U's domain. (The other direction, DATA's features moved
                         onto U's, scored higher on the shifted benchmark's target, 0.41 against 0.24, but
                         took 0.14 off the labelled examples' own accuracy, which auto's check must refuse.)
  coral+self-training    both: the mapping first, then the rounds.
  adabn                  the body's BatchNorm statistics re-estimated on U (AdaBN; every weight unchanged),
                         DATA's and U's features extracted again with it, and the head fitted on those; the
                         run keeps that body (headstart.features.restat_batchnorm, classify.unlabelled).
  adabn+self-training    both. Neither is in auto's choice yet (they extract the features again).

`auto` measures how far U is from DATA: a domain classifier (the probe, labelled features against U's)
and its cross-validated balanced accuracy, the proxy A-distance being 2 (2 acc - 1). It tries
self-training, and where U is told apart from DATA (accuracy >= SHIFTED) CORAL after it. Each is checked
on the labelled examples (auto.folds: each fold scored by a head fitted on the other folds, with U,
against one fitted without it): the first that is not more than HARM behind is kept; if none, the plain
probe stays. Every figure goes into metrics["adapt"].

Measured in benchmarks/bench_adapt.py (balanced accuracy on examples no run saw, 3 seeds, against the
probe without U): MNIST 10 per class + 2,000 unlabelled, 0.818 -> 0.904 (self-training; 0.856 before the
whitening); MNIST 50 per class to scikit-learn's 8x8 digits, 0.143 -> 0.468 with self-training, which
auto's check refuses (it takes 0.10 off the labelled folds: 0.89 -> 0.79), so auto gives coral's 0.242;
Rotten Tomatoes 64 per class + the other training movies' rows, 0.681 -> 0.683 (auto; self-training
0.680). The whitening was checked on tasks it was not chosen on (10 per class + 2,000 unlabelled of each,
3 seeds, self-training without it -> with it): MNIST on mobilenet_v2 0.863 -> 0.905, scikit-image
texture patches (5 per class) 0.946 -> 0.948, candy crops 0.992 -> 0.991. The domain classifier scored
0.45 to 0.55 on the same-domain tasks and 1.0 on the shifted one; SHIFTED sits between. ROUNDS: 5 to 20
rounds, and selecting per class rather than over all of U, were within 0.005 of each other on the MNIST
task (before the whitening).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .auto import folds as stratified_folds
from .errors import HeadstartError
from .heads import HeadSpec
from .probe import HeadResult, HeadTraining, balanced_accuracy, train_head

METHODS = ("self-training", "coral", "coral+self-training")
BODY_METHODS = ("adabn", "adabn+self-training")  # the body's BatchNorm statistics first (classify.unlabelled)
ENGINE_METHODS = ("fixmatch", "mcc", "dann")  # train the body with U through the engine (classify.adapt_task)
CHOICES = ("auto", "none", *METHODS, *BODY_METHODS, *ENGINE_METHODS)
ROUNDS = 10  # self-training's rounds: the share of U taken grows by 1/ROUNDS a round
SHIFTED = 0.8  # a domain classifier this accurate (balanced) says U is another domain: CORAL first
HARM = 0.01  # auto keeps a method unless it is this far behind the plain probe on the labelled folds
DOMAIN_ROWS = 2000  # examples of each side the domain classifier sees at most
CHECK_FOLDS = 3
# What auto tries, in order, keeping the first the labelled folds do not refuse (more than HARM behind):
# by whether U is another domain. Self-training in the whitened space of DATA and U together read the
# shifted benchmark's target best (0.47 against CORAL's 0.24 and CORAL then self-training's 0.38); where the
# folds refuse it, CORAL (which leaves DATA's features as they are) is the fallback.
AUTO_ORDER = {False: ("self-training",), True: ("self-training", "coral")}
# --adapt auto with a strategy that trains the body (classify.unlabelled.body_auto): MCC, the best of the three
# engine methods on both benchmarks (bench_adapt.py, lp-ft, 3 seeds): the same domain (MNIST 10 per class + 2,000
# unlabelled) 0.815 against fixmatch's 0.807 and 0.759 without U; the shifted one (to scikit-learn's 8x8 digits)
# 0.578 against dann's 0.254 and fixmatch's 0.128, 0.245 without U. It is checked against the run without U on
# the validation split, as the head methods are on the labelled folds.
AUTO_BODY = "mcc"


def check_method(method: str) -> str:
    m = method.strip().lower()
    if m not in CHOICES:
        raise HeadstartError(f"--adapt must be one of {', '.join(CHOICES)}; got '{method}'")
    return m


@dataclass
class Adapted:
    """What the head is fitted on after adaptation, and the record of how (metrics["adapt"])."""

    method: str  # "none" or one of METHODS
    reason: str
    x: np.ndarray  # the features the final head is fitted on: labelled (mapped by CORAL) + pseudo-labelled U
    y: np.ndarray
    c: float | None  # the head's L2 strength, chosen on the labelled examples (None: by cross-validation)
    record: dict[str, Any] = field(default_factory=dict)
    feature_map: "FeatureMap | None" = None  # U's features into the space of x (CORAL, whitening): folded into the head
    head: HeadResult | None = None  # the head self-training fitted on (x, y) at c (None: to be fitted)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def balanced_labels(p: np.ndarray, iters: int = 50) -> np.ndarray:
    """Sinkhorn: the class probabilities `p` (rows: examples) rescaled so that every class takes an equal
    share of the examples, each row still summing to one."""
    q = p.astype(np.float64) + 1e-12
    n, k = q.shape
    for _ in range(iters):
        q /= q.sum(0, keepdims=True) * k
        q /= q.sum(1, keepdims=True) * n
    return q / q.sum(1, keepdims=True)


@dataclass
class FeatureMap:
    """x -> (x - source) @ matrix + target, row vectors: U's features read as DATA's (CORAL)."""

    matrix: np.ndarray
    source: np.ndarray
    target: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.source) @ self.matrix + self.target).astype(np.float32)

    def then(self, other: "FeatureMap") -> "FeatureMap":
        """This map, then `other`, as one map."""
        return FeatureMap(self.matrix @ other.matrix, self.source,
                          (self.target - other.source) @ other.matrix + other.target)

    def fold_into(self, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A head's state whose first (linear) layer applies this map first: W' = W M^T, b' = b + W t - W' s."""
        name = next(k for k in weights if k.endswith("weight"))
        bias = name[: -len("weight")] + "bias"
        w = weights[name].astype(np.float64)
        w2 = w @ self.matrix.T
        b2 = weights[bias].astype(np.float64) + w @ self.target - w2 @ self.source
        return weights | {name: w2.astype(weights[name].dtype), bias: b2.astype(weights[bias].dtype)}


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance, the covariance regularised by its mean variance times the identity: Sun et al.'s
    CORAL adds the identity to the covariance of standardised features, which is this on features of any
    scale (and more features than examples leave the plain estimate singular)."""
    x = x.astype(np.float64)
    mean = x.mean(0)
    z = x - mean
    cov = z.T @ z / max(1, len(x) - 1)
    return mean, cov + np.eye(len(cov)) * max(float(np.trace(cov)) / len(cov), 1e-8)


def _power(cov: np.ndarray, p: float) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.clip(w, 1e-12, None) ** p) @ v.T


def coral(x_from: np.ndarray, x_to: np.ndarray) -> FeatureMap:
    """The map that moves `x_from` onto `x_to`'s mean and covariance (CORAL), both regularised (_stats).
    Ledoit-Wolf's shrinkage, tried instead, took less from the labelled side and scored 0.19 against 0.24 on
    the shifted benchmark's target."""
    m_from, c_from = _stats(x_from)
    m_to, c_to = _stats(x_to)
    return FeatureMap(_power(c_from, -0.5) @ _power(c_to, 0.5), m_from, m_to)


def whitening(x: np.ndarray) -> FeatureMap:
    """The map that centres `x` and whitens it with its regularised covariance (_stats): self-training's space."""
    mean, cov = _stats(x)
    return FeatureMap(_power(cov, -0.5), mean, np.zeros_like(mean))


def self_train(spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, k: int, training: HeadTraining,
               c: float, start: HeadResult | None = None,
               rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray, HeadResult, FeatureMap]:
    """(features, labels, head, space) of the last round: the labelled examples and all of U, labelled by the
    head, in the space the head reads (`space`: the whitening of x and xu together). The first labels come
    from `start` (fitted on x as they are; default: fitted here at `c`)."""
    fixed = HeadTraining(class_balance=training.class_balance, seed=training.seed, c=c)
    logits = (start or train_head(spec, x, y, None, None, k, fixed)).logits(xu)
    space = whitening(np.concatenate([x, xu]))
    wx, wu = space(x), space(xu)
    xs, ys = wx, y
    for r in range(1, rounds + 1):
        p = balanced_labels(softmax(logits.astype(np.float64)))
        keep = np.argsort(-p.max(1), kind="stable")[: int(round(len(xu) * r / rounds))]
        xs, ys = np.concatenate([wx, wu[keep]]), np.concatenate([y, p.argmax(1)[keep]])
        head = train_head(spec, xs, ys, None, None, k, fixed)
        logits = head.logits(wu)
    return xs, ys, head, space


def confidence(head: HeadResult, xu: np.ndarray) -> dict[str, Any]:
    """The head's confidence on U's features: its mean and a histogram of 10 bins from 0 to 1."""
    conf = softmax(head.logits(xu).astype(np.float64)).max(1)
    return {"mean": round(float(conf.mean()), 4), "histogram": np.histogram(conf, bins=10, range=(0.0, 1.0))[0].tolist()}


def domain_gap(x: np.ndarray, xu: np.ndarray, seed: int) -> dict[str, float]:
    """How well a linear domain classifier tells DATA's features from U's (cross-validated balanced accuracy
    on up to DOMAIN_ROWS of each), and the proxy A-distance 2 (2 acc - 1)."""
    rng = np.random.default_rng([seed, 7])
    a = x if len(x) <= DOMAIN_ROWS else x[rng.choice(len(x), DOMAIN_ROWS, replace=False)]
    b = xu if len(xu) <= DOMAIN_ROWS else xu[rng.choice(len(xu), DOMAIN_ROWS, replace=False)]
    both = np.concatenate([a, b])
    side = np.concatenate([np.zeros(len(a), np.int64), np.ones(len(b), np.int64)])
    head = train_head(HeadSpec("linear"), both, side, None, None, 2, HeadTraining(seed=seed))
    acc = float(head.val_balanced_accuracy if head.val_balanced_accuracy is not None else 0.5)
    return {"classifier_balanced_accuracy": round(acc, 4), "proxy_a_distance": round(max(0.0, 2 * (2 * acc - 1)), 4)}


def _apply(method: str, spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, k: int, training: HeadTraining,
           c: float, start: HeadResult | None = None
           ) -> tuple[np.ndarray, np.ndarray, FeatureMap | None, FeatureMap | None, HeadResult | None]:
    """(features to fit the head on, their labels, the map of U's features into the head's space, the map of
    DATA's features into it, the head self-training fitted on them); a map None: features as they are; the
    head None: none fitted yet."""
    fmap = coral(xu, x) if method.startswith("coral") else None
    if method.endswith("self-training"):
        xs, ys, head, space = self_train(spec, x, y, fmap(xu) if fmap else xu, k, training, c, start)
        return xs, ys, fmap.then(space) if fmap else space, space, head
    return x, y, fmap, None, None


def adapt(spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, k: int, training: HeadTraining,
          method: str, log=None, plain: HeadResult | None = None) -> Adapted:
    """The features and labels to fit the head on, using the unlabelled features `xu` by `method` (auto:
    measured, see the module's docstring). `plain`: the head already fitted on (x, y) with `training`."""
    t0 = time.perf_counter()
    method = check_method(method)
    say = log or (lambda _m: None)
    plain = plain or train_head(spec, x, y, None, None, k, training)
    c = plain.c
    record: dict[str, Any] = {"requested": method, "unlabelled_used": int(len(xu)), "head_c": c,
                              "confidence": confidence(plain, xu)}
    if method == "none":
        reason = "chosen with --adapt none: U is only measured (the head's confidence on it)"
        record.update(method="none", reason=reason, seconds=round(time.perf_counter() - t0, 2))
        return Adapted("none", reason, x, y, training.c, record)
    gap = domain_gap(x, xu, training.seed)
    record["domain"] = gap
    if method == "auto":
        shifted = gap["classifier_balanced_accuracy"] >= SHIFTED
        why = (f"a domain classifier tells U from DATA with balanced accuracy "
               f"{gap['classifier_balanced_accuracy']:.2f} ({'>=' if shifted else '<'} {SHIFTED}: "
               f"{'another domain: CORAL if self-training is refused' if shifted else 'the same domain'})")
        checks: list[str] = []
        record["checks"] = {}
        for candidate in AUTO_ORDER[shifted]:
            say(f"adapt: checking {candidate} on {CHECK_FOLDS} folds of the labelled examples")
            check = record["checks"][candidate] = _check(candidate, spec, x, y, xu, k, training, c)
            behind = check["adapted"] < check["plain"] - HARM
            checks.append(f"{candidate} not measured ({check['note']})" if not check["folds"] else
                          f"{candidate} {check['adapted']:.3f} against {check['plain']:.3f} without U"
                          + (f" (more than {HARM} behind)" if behind else ""))
            if not behind:
                method = candidate
                break
        reason = f"auto: {why}; on the labelled folds " + ", ".join(checks)
        if method == "auto":
            reason += ": U is not used"
            record.update(method="none", reason=reason, seconds=round(time.perf_counter() - t0, 2))
            return Adapted("none", reason, x, y, training.c, record)
    else:
        reason = f"chosen with --adapt {method}"
    xs, ys, fmap, _, head = _apply(method, spec, x, y, xu, k, training, c, plain)
    record.update(method=method, reason=reason, pseudo_labelled=int(len(ys) - len(y)),
                  seconds=round(time.perf_counter() - t0, 2))
    return Adapted(method, reason, xs, ys, c, record, fmap, head)


def _check(method: str, spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, k: int,
           training: HeadTraining, c: float) -> dict[str, Any]:
    """Balanced accuracy on the labelled examples, each fold scored by heads fitted on the other folds: with U
    (`method`, U mapped onto those folds' features for CORAL) and without it, at the same C. CORAL alone
    leaves the labelled features as they are: it is not measured (the same by construction)."""
    counts = np.bincount(y, minlength=k)
    if counts[counts > 0].min() < 2:
        return {"folds": 0, "plain": 0.0, "adapted": 0.0, "note": "a class with a single example: not checked"}
    if not method.endswith("self-training"):
        return {"folds": 0, "plain": 0.0, "adapted": 0.0, "note": "the labelled features are not changed"}
    fixed = HeadTraining(class_balance=training.class_balance, seed=training.seed, c=c)
    plain_pred, adapted_pred = np.empty(len(y), np.int64), np.empty(len(y), np.int64)
    for fit_on, score_on in stratified_folds(y, CHECK_FOLDS, training.seed):
        plain = train_head(spec, x[fit_on], y[fit_on], None, None, k, fixed)
        plain_pred[score_on] = plain.predict(x[score_on])
        unlabelled = coral(xu, x[fit_on])(xu) if method.startswith("coral") else xu
        _, _, head, space = self_train(spec, x[fit_on], y[fit_on], unlabelled, k, training, c, plain)
        adapted_pred[score_on] = head.predict(space(x[score_on]))
    return {"folds": CHECK_FOLDS, "plain": round(balanced_accuracy(plain_pred, y), 4),
            "adapted": round(balanced_accuracy(adapted_pred, y), 4)}


def predict_with(method: str, spec: HeadSpec, x: np.ndarray, y: np.ndarray, xu: np.ndarray, x_test: np.ndarray, k: int,
                 training: HeadTraining) -> np.ndarray:
    """Classes of `x_test` (DATA's own domain) from a head fitted on (x, y) that learnt from `xu` by `method`, as
    the check scores it (advise's learning curve with U): CORAL's map is for U's domain and is not applied."""
    plain = train_head(spec, x, y, None, None, k, training)
    if method == "none":
        return plain.predict(x_test)
    xs, ys, _, space, head = _apply(method, spec, x, y, xu, k, training, plain.c, plain)
    if head is None:
        fixed = HeadTraining(class_balance=training.class_balance, seed=training.seed, c=plain.c)
        head = train_head(spec, xs, ys, None, None, k, fixed)
    return head.predict(space(x_test) if space else x_test)


def pays_off(record: dict[str, Any]) -> str:
    """advise's one line on U: whether learning from it paid off on the labelled folds."""
    method = record.get("method", "none")
    check = (record.get("checks") or {}).get(method)
    if method == "none":
        return f"U does not pay off here: {record.get('reason', '')}"
    if not check or not check.get("folds"):
        return (f"{method}: the labelled examples cannot tell (CORAL changes how U's domain is read, not DATA's); "
                "compare on a few labelled examples from U's domain")
    gain = check["adapted"] - check["plain"]
    verdict = "pays off" if gain > 0.02 else "neither helps nor hurts here"
    return (f"U {verdict} with {method}: {check['adapted']:.3f} on the labelled folds against {check['plain']:.3f} "
            f"without it ({gain:+.3f})")
