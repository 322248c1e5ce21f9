"""`headstart lr-find`: the learning-rate range test (Smith, 2017; as in fastai and Lightning).

Train the first phase of the strategy that trains the body for `steps` mini-batches while the
learning rate grows exponentially from `start_lr` to `end_lr`; record the smoothed loss; stop
once it has blown up. The suggestion is the learning rate where the loss falls fastest, which
`fit --lr` takes as the head's rate (the body's follows with --body-lr-mult and --layer-decay).
Nothing is saved but the plot; the network is thrown away.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .console import log, progress
from .engine import Callback, Diverged, Engine, TrainConfig, make_accelerator, seed_everything
from .errors import HeadstartError
from .fileio import check_writable
from .heads import HeadSpec
from .options import check_value
from .probe import HeadTraining, train_head
from .runtime import default_batch_size, release_free_memory
from .strategies import Strategy, plan
from .surgery import TransferModel, depth_groups
from .classify.task import ClassificationTask

SMOOTHING = 0.98
BLOWUP = 4.0


class _BlownUp(Exception):
    pass


def lr_find(
    data: str | Path,
    model: str | None = None,
    *,
    strategy: str = "finetune",
    arch: str | None = None,
    allow_download: bool = False,
    head: str = "linear",
    hidden: int = HeadSpec.hidden,
    dropout: float = HeadSpec.dropout,
    body_lr_mult: float | None = None,
    layer_decay: float | None = None,
    bn: str = "frozen",
    augment: str | None = None,
    seed: int = 0,
    val_split: float = 0.2,
    class_balance: bool = True,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    steps: int = 100,
    batch_size: int | None = None,
    plot: str | Path | None = None,
    num_workers: int | None = None,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
    skip_bad_files: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Loss against learning rate for the first phase of `strategy` that trains the body, and a suggestion."""
    from .classify.prepare import prepare

    if not 0 < start_lr < end_lr:
        raise HeadstartError(f"--start-lr must be > 0 and below --end-lr; got {start_lr} and {end_lr}")
    check_value("steps", steps)
    if plot:
        check_writable(plot, "--plot", folder=False)
    augment = augment or "crop-flip"
    chosen = Strategy.parse(strategy)
    if not chosen.trains_body:
        raise HeadstartError("lr-find tests the phases that train the body; linear-probe has none "
                             "(its head trains in seconds on cached features: just fit it)")
    if chosen.kind == "contrastive":
        raise HeadstartError("lr-find sweeps the labels' loss; contrastive's encoder learns from pairs at the transformer "
                             "rate (fit --strategy contrastive sets it): test lp-ft or finetune instead")
    p = prepare(data, model, arch=arch, allow_download=allow_download, val_split=val_split, seed=seed,
                cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files, device=device,
                num_workers=num_workers)
    card, samples, dev = p.card, p.samples, p.device
    if p.tokens is not None:
        raise HeadstartError("lr-find sweeps image DATA only so far; for text, fit with the default --lr (1e-3) "
                             "and compare a few values with --lr")
    body_lr_mult = 0.1 if body_lr_mult is None else body_lr_mult
    layer_decay = 1.0 if layer_decay is None else layer_decay
    seed_everything(seed)
    spec = HeadSpec(kind=head, hidden=hidden, dropout=dropout)  # type: ignore[arg-type]
    net = TransferModel(p.body(), spec.build(card.num_features, len(samples.classes)))
    groups = depth_groups(net.body)
    chosen.check(len(groups), card.name)
    phases = plan(chosen, len(groups), 1, 1, 1)
    index = next(i for i, ph in enumerate(phases) if not ph.from_cache)
    if any(ph.from_cache for ph in phases[:index]):  # lp-ft, gradual: the head first learns on cached features
        x, y, tr = p.features().array, samples.labels, p.train_idx
        head_result = train_head(spec, x[tr], y[tr], None, None, len(samples.classes),
                                 HeadTraining(class_balance=class_balance, seed=seed))
        net.head.load_state_dict({k: torch.from_numpy(v) for k, v in head_result.weights.items()})
    # the head at lr 1 and the body's groups at their relative rates: the sweep moves them all together
    cfg = TrainConfig(strategy=chosen.name, head=spec.to_dict(), epochs=1, lr=1.0, body_lr_mult=body_lr_mult,
                      layer_decay=layer_decay, weight_decay=0.0, batch_size=batch_size or default_batch_size(dev),
                      warmup=0.0, bn=bn, augment=augment, seed=seed, val_split=val_split, class_balance=class_balance)
    engine = Engine(Path(tempfile.gettempdir()), ClassificationTask(card, samples, p.train_idx, p.val_idx, p.features,
                                                                    cfg, net, num_workers),
                    cfg, make_accelerator(cfg, Path(tempfile.gettempdir()), None, cpu=dev.type == "cpu"),
                    checkpoints=False, verbose=False)
    phase = engine.phases[index]
    data, wrapped, optimizer, _ = engine.start_phase(index, phase)
    release_free_memory()

    def rate(step: int) -> float:
        return start_lr * (end_lr / start_lr) ** (step / (steps - 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(getattr(optimizer, "optimizer", optimizer), rate)
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []

    class Sweep(Callback):
        """Records each step's loss; stops the sweep once the smoothed loss has blown up."""

        def __init__(self, advance) -> None:
            self.avg, self.best, self.advance = 0.0, math.inf, advance

        def on_step_end(self, engine: Engine, loss: torch.Tensor) -> None:
            value, step = float(loss.detach()), len(lrs)
            self.avg = SMOOTHING * self.avg + (1 - SMOOTHING) * value
            smoothed = self.avg / (1 - SMOOTHING ** (step + 1))
            lrs.append(rate(step))
            raw.append(value)
            smooth.append(smoothed)
            self.best = min(self.best, smoothed)
            self.advance(1)
            if step > 5 and smoothed > BLOWUP * self.best:
                raise _BlownUp

    def batches():  # `steps` mini-batches, epoch after epoch
        epoch, n = 0, 0
        while True:
            for batch in engine.task.batches(data, epoch):
                if n == steps:
                    return
                yield batch
                n += 1
            epoch += 1

    with progress("lr range test", steps) as advance:
        engine.callbacks.append(Sweep(advance))
        try:
            engine.train_epoch(wrapped, optimizer, schedule, batches(), phase, 0, steps)
        except (_BlownUp, Diverged):
            pass
    if len(lrs) < 5:
        raise HeadstartError(f"the loss blew up within {len(lrs)} steps; lower --start-lr (now {start_lr:g})")
    suggested, lowest = suggest(lrs, smooth)
    out = {"model": card.name, "strategy": chosen.name, "phase": phase.name, "trainable_groups": phase.trainable,
           "lrs": lrs, "losses": raw, "smoothed_losses": smooth, "suggested_lr": suggested, "min_loss_lr": lowest,
           "plot": None}
    if plot:
        out["plot"] = str(draw(lrs, smooth, suggested, Path(plot), f"{card.name}, {chosen.name}: {phase.name}"))
    log(f"lr-find: suggested --lr {suggested:.2g}")
    return out


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(lr where the loss falls fastest before its minimum, lr of the minimum)."""
    lo = int(np.argmin(losses))
    if lo < 2:
        return lrs[lo] / 10, lrs[lo]
    slope = np.gradient(np.asarray(losses[: lo + 1]), np.log10(lrs[: lo + 1]))
    return float(lrs[int(np.argmin(slope[:lo]))]), float(lrs[lo])


def draw(lrs: list[float], losses: list[float], suggested: float, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(lrs, losses)
    ax.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:.2g}")
    ax.set_xscale("log")
    lo, hi = min(losses), max(min(losses) + 1e-6, 1.5 * losses[0])  # the blow-up would flatten the rest
    ax.set_ylim(lo - 0.05 * (hi - lo), hi)
    ax.set_xlabel("learning rate (head)")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def text_plot(lrs: list[float], losses: list[float], suggested: float, rows: int = 12, width: int = 50) -> str:
    """Loss against log learning rate as text, one line per learning-rate bucket (labelled by its
    middle); the bars span from the lowest loss to 1.5x the first, so the blow-up does not flatten them."""
    lo = min(losses)
    hi = max(lo + 1e-12, 1.5 * losses[0])
    edges = np.logspace(math.log10(lrs[0]), math.log10(lrs[-1]), rows + 1)
    lines = []
    for a, b in zip(edges[:-1], edges[1:]):
        vals = [v for lr, v in zip(lrs, losses) if a <= lr <= b]
        if not vals:
            continue
        v = float(np.mean(vals))
        bar = "#" * max(1, min(width, int(round((v - lo) / (hi - lo) * width))))
        mark = "  <- suggested" if a <= suggested <= b else ""
        lines.append(f"lr {math.sqrt(a * b):8.1e}  loss {v:7.4f}  {bar}{mark}")
    return "\n".join(lines)
