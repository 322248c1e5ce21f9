"""`--strategy auto`: the strategy chosen by measuring on the user's own data, not by a rule.

Every labelled example is measured by a run that never saw it: the examples are dealt into FOLDS
stratified folds (folds()); a candidate trains on the others and is scored on one fold, then on
the next, as far as the budget allows. On 10 examples per class three folds give up to 5x the
evidence of a held-out fifth, where one example more or less decides, and each run still trains
on two thirds of the examples (the relative merit of training the body grows with the data: a
half would understate it more).

1. The linear probe on the folds (a head fitted on the other folds' cached features, its L2
   strength by cross-validation there, scored on the fold). Seconds.
2. Trials of the strategies that train the body (TRIALS: finetune, then lp-ft), with the run's own
   settings and its whole schedule (compressed to fewer epochs only where one fold's run would not
   fit in what is left of the budget: fewer optimizer steps under-train a body; never shorter than
   the trial it must beat: trial_epochs()), on the same
   folds: the first, then the next while the budget allows (those that ran decide). Each fold's
   last epoch is scored. The trial's predictions are compared, example by example, with those of
   the best so far: the difference in balanced accuracy and its spread (one standard error of
   that paired difference). A trial ahead by more than the spread becomes the best. One that could
   no longer win after a fold stops there. No trial starts against a best that is wrong on too
   few examples to be beaten by more than the spread. A trial takes what is left of the budget:
   the first (finetune) usually all of it.
3. The costlier strategy is kept only when it won that way, and is then trained in full (the run's
   own split, schedule and early stopping); otherwise the probe stays, and the reason says that the
   data could not tell them apart.

Time: the probe and the trials take at most `budget` seconds, counted once the features are
there (a first fit extracts them before). Auto takes the probe's time + at most the budget + the
chosen strategy's own fit. Every trial's score, difference, spread, epochs and seconds are written
into the run (metrics["auto"]) and printed. Pure NumPy: the
training runs are started by headstart.api.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import HeadstartError
from .options import check_value

DEFAULT_BUDGET = 60.0  # seconds the trials may take (--budget)
FOLDS = 3  # auto's folds: each run trains on two thirds of the examples and scores the rest
# Trial order: the first to pull ahead of the probe is kept unless the next beats it by more than the
# spread. Finetune first: on the tasks measured (benchmarks/bench_auto.py; MNIST 10 and 20 per class,
# synthetic shapes 10 per class, the colour patches) it matched or beat lp-ft in 3 of 4 and
# was 0.012 behind in the fourth; lp-ft's first epoch is the probe's, so it still wins where the
# probe's head is the better start.
TRIALS = ("finetune", "lp-ft")


class TrialStopped(Exception):
    """Raised from inside a trial's training loop when it cannot win within the budget."""


def check_budget(budget: float | None, auto: bool) -> float:
    """--budget's default (its range: headstart.options.RANGES); it applies only to --strategy auto."""
    if budget is None:
        return DEFAULT_BUDGET
    if not auto:
        raise HeadstartError("--budget applies to --strategy auto (the time its trials may take); "
                             "leave it out, or use --strategy auto")
    check_value("budget", budget)
    return float(budget)


def epoch_seconds(n_params: int, modality: str, device_type: str, n_train: int, n_val: int) -> float:
    """A rough estimate of one epoch of training the whole body, before any is timed, per million
    parameters of the body: ~0.015 s per image on 2 CPU cores (EfficientNet-Lite0's 3.4M: 45 s for
    15 epochs of 48 + 12 shapes, 20 s for an epoch of 400 + 100 8x8 digits, validation included),
    ~0.003 s per text (MiniLM, 22M: 16 movie reviews/s), ~100x less on a GPU; validating an example
    costs about a third of training on it. After a trial, its own timing replaces the estimate."""
    per_example = (0.003 if modality == "text" else 0.015) * n_params / 1e6 * (1.0 if device_type == "cpu" else 0.01)
    return per_example * (n_train + n_val / 3)


def trial_epochs(share: float, epoch_seconds: float, full: int, against_epochs: int | None) -> tuple[int, str | None]:
    """(epochs, why not): the epochs a trial's run on a fold gets in `share` seconds. Its whole schedule
    (`full`), or fewer where a fold's run would not fit, keeping an epoch's time for setting the run up
    (building the network, lp-ft's head phase): a run cut short leaves no measurement. 0 when the trial
    does not run: not one epoch fits, or fewer than those of the trial it must beat (`against_epochs`),
    as a shorter run of the same kind is no fair challenger."""
    if epoch_seconds <= 0:
        return full, None
    epochs = min(full, int(share // epoch_seconds) - 1)
    if epochs < 1:
        return 0, (f"an epoch on a fold takes about {epoch_seconds:.0f} s here: with the run's set-up, not one fits in "
                   f"the {max(0.0, share):.0f} s left of the budget (--budget)")
    if against_epochs is not None and epochs < against_epochs:
        return 0, (f"only {epochs} of its {full} epochs would fit in the {share:.0f} s left of the budget, fewer than "
                   f"the {against_epochs} of the trial it must beat")
    return epochs, None


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def can_win(ref: np.ndarray, y: np.ndarray) -> bool:
    """Whether any predictions could beat `ref` by more than the spread: only examples ref gets wrong
    can count for a challenger (with every one of them right, the difference is their weight and
    the spread the root of their squared weights)."""
    y = np.asarray(y)
    w = _weights(y)[np.asarray(ref) != y]
    return float(w.sum()) > float(np.sqrt((w * w).sum()))


def _weights(y: np.ndarray) -> np.ndarray:
    """Each example's weight in balanced accuracy: 1 / (classes x its class's size)."""
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def paired(pred: np.ndarray, ref: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(difference, spread): pred's balanced accuracy minus ref's on the same examples, and the
    standard error of that difference when the two are equally good. Every example weighs
    1 / (classes x its class's size) in balanced accuracy; only examples where exactly one of the
    two is right count: sqrt(sum of w_i^2 over them) (McNemar's test, weighted). One such example
    in pred's favour gives a difference equal to its spread; two net examples are needed to win."""
    pred, ref, y = np.asarray(pred), np.asarray(ref), np.asarray(y)
    w = _weights(y)
    d = (pred == y).astype(np.float64) - (ref == y).astype(np.float64)
    return float((w * d).sum()), float(np.sqrt((w * w * d * d).sum()))


def folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k stratified folds of the examples, as [(train on, score on)] with every example scored in
    exactly one: each class is dealt out to the folds in turn, starting where the last class
    stopped, so that the folds differ in size by at most one."""
    rng = np.random.default_rng([seed, k])
    fold = np.empty(len(y), dtype=np.int64)
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return [(np.flatnonzero(fold != j), np.flatnonzero(fold == j)) for j in range(k)]


def can_still_win(pred: np.ndarray, ref: np.ndarray, y: np.ndarray, scored: np.ndarray) -> bool:
    """Whether predictions known on `scored` (pred elsewhere ignored) could still beat `ref` by more
    than the spread once the rest is scored: at best, every other example ref gets wrong turns right."""
    pred, ref, y = np.asarray(pred), np.asarray(ref), np.asarray(y)
    w = _weights(y)
    d = np.where(ref != y, 1.0, 0.0)  # the best the unscored examples can do
    d[scored] = (pred[scored] == y[scored]).astype(np.float64) - (ref[scored] == y[scored]).astype(np.float64)
    return float((w * d).sum()) > float(np.sqrt((w * w * d * d).sum()))


@dataclass
class Trial:
    """A body strategy measured against the best so far (`against`, whose out-of-fold predictions are
    `ref`; -1 where it has none) on the folds (headstart.auto.folds): the strategy trains on the
    other folds with the run's whole schedule and is scored on one, then the next while the budget
    allows, so that the examples are scored by runs that never saw them, as `ref`'s were. The
    training loop calls it after each validation with the global epoch, the scored fold's
    predictions and whether the epoch trained the body; it returns whether to go on. Each fold's
    last epoch is what counts (a fold's best epoch would be picked on the very examples it is
    scored on); the decision is taken on the examples scored by the folds that ran to their end."""

    strategy: str
    against: str
    ref: np.ndarray
    y: np.ndarray
    budget: float
    probe: np.ndarray | None = None  # the linear probe's out-of-fold predictions, when `ref` is another trial's
    epoch_seconds_estimate: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    pred: np.ndarray | None = None  # out-of-fold predictions so far: each fold's latest epoch (-1: none yet)
    scored: np.ndarray | None = None  # the fold being scored now
    done: list[np.ndarray] = field(default_factory=list)  # the folds whose run has ended
    fold_epochs: list[int] = field(default_factory=list)
    body_epochs: int = 0
    stopped: str | None = None  # why a fold stopped before its end, or why the next did not run
    diverged: str | None = None  # where a fold's loss became NaN or infinite: the trial is left out
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.pred = np.full(len(self.y), -1, dtype=np.int64)

    @property
    def seconds_per_epoch(self) -> float | None:
        """What an epoch that trains the body on one fold's training part took here, set-up included (None before the first)."""
        return self.seconds / self.body_epochs if self.body_epochs else None

    def start_fold(self, scored: np.ndarray) -> bool:
        """Before each fold's run: whether it runs (the trial must still be able to win, and the run
        must fit in the budget, taking as long as those before it)."""
        elapsed = time.perf_counter() - self.t0
        if self.done:
            if not self._can_still_win():
                self.stopped = (f"after {len(self.done)} of {FOLDS} folds it could no longer beat {self.against} by "
                                "more than the spread, whatever the rest gave")
                return False
            if elapsed + elapsed / len(self.done) > self.budget:
                self.stopped = (f"a fold took {elapsed / len(self.done):.0f} s: another would pass the "
                                f"{self.budget:.0f} s left of the budget, so {len(self.done)} of {FOLDS} decide")
                return False
        self.scored = scored
        self.fold_epochs.append(0)
        return True

    def _can_still_win(self) -> bool:
        """can_still_win on the examples `ref` has predictions for (all, or those of the folds the best so far
        was decided on)."""
        valid = np.flatnonzero(self.ref >= 0)
        known = np.intersect1d(np.concatenate(self.done), valid)
        sub = np.searchsorted(valid, known)
        return can_still_win(self.pred[valid], self.ref[valid], self.y[valid], sub)

    def end_fold(self) -> None:
        assert self.scored is not None
        self.done.append(self.scored)
        self.seconds = time.perf_counter() - self.t0

    def __call__(self, epoch: int, pred: np.ndarray, trained_body: bool) -> bool:
        assert self.pred is not None and self.scored is not None
        self.pred[self.scored] = np.asarray(pred)
        self.fold_epochs[-1] += 1
        elapsed = time.perf_counter() - self.t0
        self.seconds = elapsed
        self.body_epochs += trained_body
        per_epoch = elapsed / self.body_epochs if self.body_epochs else self.epoch_seconds_estimate
        if elapsed + per_epoch > self.budget:
            self.stopped = (f"a fold stopped at epoch {epoch} after {elapsed:.0f} s: another epoch would pass "
                            f"the {self.budget:.0f} s left of the budget")
            return False
        return True

    def diverge(self, where: str) -> None:
        """A fold's loss became NaN or infinite (`where`): the trial decides nothing, and auto goes on without it."""
        self.diverged = where
        self.seconds = time.perf_counter() - self.t0

    def _scored(self) -> np.ndarray:
        """The examples the decision is taken on: scored by a fold that ran to its end, and by `ref` (none once a
        fold diverged)."""
        if not self.done or self.diverged:
            return np.array([], dtype=np.int64)
        idx = np.sort(np.concatenate(self.done))
        return idx[self.ref[idx] >= 0]

    def decided(self) -> np.ndarray:
        """The predictions decided on (-1 elsewhere: a fold stopped before its end leaves none)."""
        assert self.pred is not None
        out = np.full(len(self.y), -1, dtype=np.int64)
        idx = self._scored()
        out[idx] = self.pred[idx]
        return out

    def compare(self, other: np.ndarray) -> tuple[float, float]:
        """(difference, spread) against `other`'s predictions, on the examples decided on."""
        idx = self._scored()
        assert self.pred is not None
        return paired(self.pred[idx], other[idx], self.y[idx])

    @property
    def ahead(self) -> bool:
        """Ahead of the reference by more than the spread on the examples decided on."""
        if not len(self._scored()):
            return False
        diff, spread = self.compare(self.ref)
        return diff > spread

    def record(self) -> dict[str, Any]:
        """What the run keeps about this trial: its out-of-fold figures against the reference (and the probe)."""
        idx = self._scored()
        out: dict[str, Any] = {"strategy": self.strategy, "against": self.against, "seconds": round(self.seconds, 1),
                               "folds_run": len(self.done), "scored": int(len(idx)), "epochs": list(self.fold_epochs),
                               "budget": round(self.budget, 1)}
        if self.stopped:
            out["why"] = self.stopped
        if self.diverged:
            out.update(outcome="diverged", why=f"in fold {len(self.done) + 1}, {self.diverged}")
            return out
        if not len(idx):
            out["outcome"] = "stopped"
            return out
        assert self.pred is not None
        diff, spread = self.compare(self.ref)
        out.update(val_balanced_accuracy=round(balanced_accuracy(self.pred[idx], self.y[idx]), 4),
                   difference=round(diff, 4), spread=round(spread, 4))
        if self.probe is not None:  # against the linear probe too: advise's gain of this strategy
            diff, spread = self.compare(self.probe)
        out["against_probe"] = {"difference": round(diff, 4), "spread": round(spread, 4)}
        out["outcome"] = "won" if self.ahead else "not ahead"
        return out


def trial_line(t: dict[str, Any]) -> str:
    """One trial's figures and outcome, as fit prints them."""
    if t["outcome"] == "not run":
        return f"no trial of {t['strategy']}: {t['why']}"
    if t["outcome"] == "diverged":
        return f"{t['strategy']} diverged ({t['why']}; {t['seconds']:.0f} s): left out, lower --lr to measure it"
    if t["outcome"] == "stopped":
        return f"{t['strategy']} stopped ({t['why']}; {t['seconds']:.0f} s)"
    fig = (f"{t['strategy']} {t['val_balanced_accuracy']:.3f} on {t['scored']} ({t['difference']:+.3f} against "
           f"{t['against']}, spread {t['spread']:.3f}, {'+'.join(map(str, t['epochs']))} epochs, {t['seconds']:.0f} s)")
    return fig + (": ahead by more than the spread" if t["outcome"] == "won" else ": not ahead by more than the spread")


def describe(probe: dict[str, Any], trials: list[dict[str, Any]], chosen: str, n: int,
             skipped: str | None = None) -> str:
    """The reason auto gives: the measurements, in one sentence."""
    parts = [f"measured on {n} examples in {FOLDS} folds, each scored by a run trained on the others: "
             f"linear probe {probe['val_balanced_accuracy']:.3f}"]
    parts += [trial_line(t) for t in trials]
    if skipped:
        parts.append(skipped)
    text = "; ".join(parts)
    if chosen == "linear-probe" and any(t["outcome"] not in ("not run", "diverged") for t in trials):
        text += ". The data cannot tell the body strategies apart from the cheaper probe: the probe is kept"
    elif chosen != "linear-probe" and len(trials) > 1:
        text += f". {chosen} is kept"
    return text
