"""`--strategy auto`: the strategy chosen by measuring on the user's own data, not by a rule.

1. The linear probe: a head fitted on the training split's cached features (its L2 strength by
   cross-validation) and scored on the held-out split. Seconds.
2. Trials of the strategies that train the body (TRIALS: finetune, then lp-ft), with the run's own
   settings. After every epoch a trial's held-out predictions are compared, example by example,
   with those of the best so far: the difference in balanced accuracy and its spread (one
   standard error of that paired difference). A trial that pulls ahead by more than the spread
   runs to its end and becomes the best; one that has not by the end of its share of the budget
   stops, and what it wrote is removed. No trial starts against a best that is wrong on too few
   held-out examples to be beaten by more than the spread.
3. A trial whose whole schedule fits its share of the budget is the real run: when it wins, the
   run it wrote is the run kept. Otherwise it is a short run (as many epochs as fit, the same
   schedule compressed), and the strategy that won is then trained in full.
4. The costlier strategy is kept only when it won that way; otherwise the cheaper one stays, and
   the reason says that the data could not tell them apart.

Time: the trials that do not win share `budget` seconds, counted from the start of auto and
checked at epoch ends (the next epoch must fit in what is left). When the probe wins, auto takes
the probe's time + the budget; when a body strategy wins, its time + the budget (+ its short
trial's). Every trial's score, difference, spread, epochs and seconds are written into the run
(metrics["auto"]) and printed. Pure NumPy: the training runs are started by headstart.api.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import HeadstartError

DEFAULT_BUDGET = 60.0  # seconds a trial may spend without pulling ahead (--budget)
# Trial order: the first to pull ahead of the probe is kept unless the next beats it by more than the
# spread. Finetune first: on the tasks measured (benchmarks/bench_auto.py; MNIST 10 and 20 per class,
# synthetic shapes 10 per class, the colour patches) it matched or beat lp-ft in 3 of 4 and
# was 0.012 behind in the fourth; lp-ft's first epoch is the probe's, so it still wins where the
# probe's head is the better start.
TRIALS = ("finetune", "lp-ft")


class TrialStopped(Exception):
    """Raised from inside a trial's training loop when it cannot win within the budget."""


def check_budget(budget: float | None, auto: bool) -> float:
    """--budget's range and default, in one place; it applies only to --strategy auto."""
    if budget is None:
        return DEFAULT_BUDGET
    if not auto:
        raise HeadstartError("--budget applies to --strategy auto (the time its trials may take without winning); "
                             "leave it out, or use --strategy auto")
    if not budget >= 0:
        raise HeadstartError(f"--budget must be >= 0 seconds (0: the linear probe, no trials); got {budget}")
    return float(budget)


def epoch_seconds(n_params: int, modality: str, device_type: str, n_train: int, n_val: int) -> float:
    """A rough estimate of one epoch of training the whole body, before any is timed, per million
    parameters of the body: ~0.015 s per image on 2 CPU cores (EfficientNet-Lite0's 3.4M: 45 s for
    15 epochs of 48 + 12 shapes, 20 s for an epoch of 400 + 100 8x8 digits, validation included),
    ~0.003 s per text (MiniLM, 22M: 16 movie reviews/s), ~100x less on a GPU; validating an example
    costs about a third of training on it. After a trial, its own timing replaces the estimate."""
    per_example = (0.003 if modality == "text" else 0.015) * n_params / 1e6 * (1.0 if device_type == "cpu" else 0.01)
    return per_example * (n_train + n_val / 3)


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


@dataclass
class Trial:
    """A body strategy measured against the best so far (`against`, whose held-out predictions are
    `ref`), epoch by epoch. Called by the training loop after each validation with the global epoch,
    the held-out predictions and whether the epoch trained the body; returns whether to go on."""

    strategy: str
    against: str
    ref: np.ndarray
    y: np.ndarray
    budget: float
    probe: np.ndarray | None = None  # the linear probe's held-out predictions, when `ref` is another trial's
    epoch_seconds_estimate: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    preds: dict[int, np.ndarray] = field(default_factory=dict)
    ahead_at: dict[str, Any] | None = None
    body_epochs: int = 0
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def ahead(self) -> bool:
        return self.ahead_at is not None

    @property
    def seconds_per_epoch(self) -> float | None:
        """What an epoch that trains the body took here, set-up included (None before the first)."""
        return self.seconds / self.body_epochs if self.body_epochs else None

    def __call__(self, epoch: int, pred: np.ndarray, trained_body: bool) -> bool:
        self.preds[epoch] = np.asarray(pred)
        elapsed = time.perf_counter() - self.t0
        self.seconds = elapsed
        self.body_epochs += trained_body
        diff, spread = paired(pred, self.ref, self.y)
        if not self.ahead and diff > spread:
            self.ahead_at = {"epoch": epoch, "seconds": round(elapsed, 1), "difference": round(diff, 4),
                             "spread": round(spread, 4)}
        if self.ahead:
            return True
        per_epoch = elapsed / self.body_epochs if self.body_epochs else self.epoch_seconds_estimate
        if elapsed + per_epoch > self.budget:
            self.stopped = (f"not ahead of {self.against} by more than the spread after {elapsed:.0f} s "
                            f"(epoch {epoch}); another epoch would pass the {self.budget:.0f} s budget")
            return False
        return True

    def record(self, best_epoch: int | None) -> dict[str, Any]:
        """What the run keeps about this trial: its kept (or last) epoch against the reference."""
        epoch = best_epoch if best_epoch in self.preds else max(self.preds) if self.preds else None
        out: dict[str, Any] = {"strategy": self.strategy, "against": self.against, "seconds": round(self.seconds, 1),
                               "epochs": len(self.preds), "budget": self.budget}
        if epoch is not None:
            diff, spread = paired(self.preds[epoch], self.ref, self.y)
            out.update(epoch=epoch, val_balanced_accuracy=round(balanced_accuracy(self.preds[epoch], self.y), 4),
                       difference=round(diff, 4), spread=round(spread, 4))
            if self.probe is not None:  # against the linear probe too: advise's gain of this strategy
                diff, spread = paired(self.preds[epoch], self.probe, self.y)
            out["against_probe"] = {"difference": round(diff, 4), "spread": round(spread, 4)}
        out["outcome"] = ("won" if self.ahead else "stopped" if self.stopped else "ended without pulling ahead")
        if self.ahead_at:
            out["ahead_at"] = self.ahead_at
        if self.stopped:
            out["why"] = self.stopped
        return out


def trial_line(t: dict[str, Any]) -> str:
    """One trial's figures and outcome, as fit prints them."""
    if t["outcome"] == "not run":
        return f"no trial of {t['strategy']}: {t['why']}"
    if "val_balanced_accuracy" not in t:
        return f"{t['strategy']} stopped before its first epoch ({t['seconds']:.0f} s)"
    fig = (f"{t['strategy']} {t['val_balanced_accuracy']:.3f} ({t['difference']:+.3f} against {t['against']}, "
           f"spread {t['spread']:.3f}, {t['epochs']} epochs, {t['seconds']:.0f} s)")
    if t["outcome"] == "won":
        return fig + ": ahead by more than the spread"
    if t["outcome"] == "stopped":
        return fig + f": not ahead within its {t['budget']:.0f} s of the budget"
    return fig + ": not ahead by more than the spread"


def describe(probe: dict[str, Any], trials: list[dict[str, Any]], chosen: str, n_val: int,
             skipped: str | None = None) -> str:
    """The reason auto gives: the measurements, in one sentence."""
    parts = [f"measured on {n_val} held-out examples: linear probe {probe['val_balanced_accuracy']:.3f}"]
    parts += [trial_line(t) for t in trials]
    if skipped:
        parts.append(skipped)
    text = "; ".join(parts)
    if chosen == "linear-probe" and any(t["outcome"] != "not run" for t in trials):
        text += ". The data cannot tell the body strategies apart from the cheaper probe: the probe is kept"
    elif chosen != "linear-probe" and len(trials) > 1:
        text += f". {chosen} is kept"
    return text
