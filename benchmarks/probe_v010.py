"""The 0.1.0 linear probe, kept as bench_probe.py's reference: AdamW minibatches for up to 200
epochs, early stopping on validation accuracy. headstart 0.1.0 fitted a head by calling
train_head on 80% of the examples (a stratified split) with the other 20% as validation, then
again on all of them with stop_at=the best epoch (`fit_v010` below does both).

This is a copy of headstart/probe.py as it was before the L-BFGS probe replaced it, made
importable on its own: the progress bar is a no-op, errors are ValueError, and
fold_standardization is a copy of headstart.heads'. Its maths is unchanged: do not tune it, it
is the yardstick. `spec` is any object with a `build(in_features, num_classes) -> nn.Module`
method whose first nn.Linear takes the features (headstart.heads.HeadSpec).
"""


from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class HeadSpec(Protocol):
    """What train_head needs of a head spec (headstart.heads.HeadSpec has it)."""

    def build(self, in_features: int, num_classes: int) -> nn.Module: ...


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """No progress bar: the benchmark fits hundreds of heads."""
    yield lambda n: None


def fold_standardization(head: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make a head trained on (x - mean) / std take raw x: rescale its first Linear (as headstart.heads does).

    W (x - m)/s + b  ==  (W / s) x + (b - (W / s) m)
    """
    lin = next(m for m in head.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        w = lin.weight / std
        lin.bias.sub_(w @ mean)
        lin.weight.copy_(w)


MIN_STEPS = 8


@dataclass(frozen=True)
class HeadTraining:
    epochs: int = 200
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    patience: int = 20
    class_balance: bool = True
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, ok, rule in (
            ("epochs", self.epochs, self.epochs >= 1, ">= 1"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("weight-decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
            ("batch-size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("patience", self.patience, self.patience >= 1, ">= 1"),
            ("label-smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "in [0, 1)"),
        ):
            if not ok:
                raise ValueError(f"--{name} must be {rule}; got {value}")


@dataclass
class HeadResult:
    head: nn.Module
    best_epoch: int
    epochs_run: int
    val_loss: float | None
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (k * n_c): every class weighs the same in the loss whatever its size."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    present = counts > 0
    w = torch.zeros(num_classes)
    w[present] = labels.numel() / (present.sum() * counts[present])
    return w


def _balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    recalls = [(pred[y == c] == c).sum().item() / (y == c).sum().item() for c in torch.unique(y)]
    return sum(recalls) / len(recalls)


def train_head(
    spec: HeadSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    num_classes: int,
    cfg: HeadTraining = HeadTraining(),
    stop_at: int | None = None,
) -> HeadResult:
    """Train `spec` on features; early-stop on validation accuracy; return the best head (raw-feature input).
    `stop_at`: stop after this epoch, the learning-rate schedule still that of cfg.epochs (a refit
    that repeats a validated run up to its best epoch)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xt = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    # Centre each feature, but scale all by one number: per-feature scaling would blow up
    # rare activations of sparse (post-ReLU) features and drown the informative ones.
    mean = xt.mean(0)
    scale = float((xt - mean).pow(2).mean().sqrt()) or 1.0
    std = torch.full_like(mean, scale)
    xt = (xt - mean) / std
    has_val = x_val is not None and y_val is not None and len(y_val) > 0
    if has_val:
        xv = (torch.as_tensor(np.asarray(x_val, dtype=np.float32)) - mean) / std
        yv = torch.as_tensor(np.asarray(y_val, dtype=np.int64))

    head = spec.build(xt.shape[1], num_classes)
    weight = class_weights(yt, num_classes) if cfg.class_balance else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Small datasets would get one optimizer step per epoch and never converge: shrink the
    # batch so every epoch takes at least MIN_STEPS steps.
    batch_size = min(cfg.batch_size, max(8, -(-len(yt) // MIN_STEPS)))
    steps_per_epoch = -(-len(yt) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)

    best_state, best_loss, best_epoch, since_best = None, float("inf"), 0, 0
    best_acc = best_bacc = best_score = None
    history: list[dict[str, Any]] = []
    epoch = 0
    last = min(cfg.epochs, stop_at or cfg.epochs)
    with progress("training head", last) as advance:
        for epoch in range(1, last + 1):
            head.train()
            order = torch.randperm(len(yt), generator=gen)
            total = 0.0
            for i in range(0, len(yt), batch_size):
                idx = order[i : i + batch_size]
                loss = loss_fn(head(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": total / len(yt)}
            if has_val:
                head.eval()
                with torch.no_grad():
                    logits = head(xv)
                    vloss = float(loss_fn(logits, yv))
                    pred = logits.argmax(1)
                record.update(val_loss=vloss, val_accuracy=(pred == yv).sum().item() / len(yv),
                              val_balanced_accuracy=_balanced_accuracy(pred, yv))
                # Monitor validation accuracy (balanced when classes are), and let a tie count as
                # progress, keeping the later, better-fitted epoch: with few examples the validation
                # loss rises as soon as the head grows confident, long before accuracy stops improving.
                score = record["val_balanced_accuracy" if cfg.class_balance else "val_accuracy"]
                if best_score is None or score >= best_score:
                    best_score, best_loss, best_epoch, since_best = score, vloss, epoch, 0
                    best_state = copy.deepcopy(head.state_dict())
                    best_acc, best_bacc = record["val_accuracy"], record["val_balanced_accuracy"]
                else:
                    since_best += 1
            history.append(record)
            advance(1)
            if has_val and since_best >= cfg.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    else:
        best_epoch = epoch
    head.eval()
    fold_standardization(head, mean, std)
    return HeadResult(
        head=head,
        best_epoch=best_epoch,
        epochs_run=epoch,
        val_loss=best_loss if has_val else None,
        val_accuracy=best_acc,
        val_balanced_accuracy=best_bacc,
        history=history,
        seconds=time.perf_counter() - t0,
    )


def fit_v010(spec: HeadSpec, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int,
             split: Callable[[np.ndarray, float, int], tuple[np.ndarray, np.ndarray]],
             val_fraction: float = 0.2) -> nn.Module:
    """headstart 0.1.0's linear-probe fit: `split` (headstart.data.splits.stratified_split) keeps
    val_fraction of each class for early stopping, then the head is trained again on every
    example, validation ones included, up to the epoch validation chose. Returns the head
    (eval mode, raw features in)."""
    cfg = HeadTraining(seed=seed)
    train_idx, val_idx = split(y, val_fraction, seed)
    result = train_head(spec, x[train_idx], y[train_idx], x[val_idx] if len(val_idx) else None,
                        y[val_idx] if len(val_idx) else None, num_classes, cfg)
    if not len(val_idx):  # one example per class: nothing to validate on, 200 epochs and no refit
        return result.head
    everything = np.concatenate([train_idx, val_idx])
    return train_head(spec, x[everything], y[everything], None, None, num_classes, cfg, stop_at=result.best_epoch).head
