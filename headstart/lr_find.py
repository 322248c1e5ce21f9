"""`headstart lr-find`: the learning-rate range test (Smith, 2017; as in fastai and Lightning).

Train the first phase of the strategy that trains the body for `steps` mini-batches while the
learning rate grows exponentially from `start_lr` to `end_lr`; record the smoothed loss; stop
once it has blown up. The suggestion is the learning rate where the loss falls fastest, which
`fit --lr` takes as the head's rate (the body's follows with --body-lr-mult and --layer-decay).
Nothing is saved but the plot; the network is thrown away.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .console import log, progress
from .data.transforms import LabelledImages, TrainLoader, normalize
from .errors import HeadstartError
from .heads import HeadSpec
from .probe import HeadTraining, class_weights, train_head
from .runtime import default_batch_size, default_workers, release_free_memory
from .strategies import Strategy, param_groups, plan, set_modes, set_trainable
from .surgery import TransferModel, depth_groups

SMOOTHING = 0.98
BLOWUP = 4.0


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
    augment: str = "crop-flip",
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
    from .api import prepare

    if not 0 < start_lr < end_lr:
        raise HeadstartError(f"--start-lr must be > 0 and below --end-lr; got {start_lr} and {end_lr}")
    if steps < 5:
        raise HeadstartError(f"--steps must be >= 5; got {steps}")
    chosen = Strategy.parse(strategy)
    if not chosen.trains_body:
        raise HeadstartError("lr-find tests the phases that train the body; linear-probe has none "
                             "(its head trains in seconds on cached features: just fit it)")
    p = prepare(data, model, arch=arch, allow_download=allow_download, val_split=val_split, seed=seed,
                cache_dir=cache_dir, no_cache=no_cache, skip_bad_files=skip_bad_files, device=device,
                num_workers=num_workers)
    card, samples, dev = p.card, p.samples, p.device
    if p.tokens is not None:
        raise HeadstartError("lr-find sweeps image DATA only so far; for text, fit with the default --lr (1e-3) "
                             "and compare a few values with --lr")
    body_lr_mult = 0.1 if body_lr_mult is None else body_lr_mult
    layer_decay = 1.0 if layer_decay is None else layer_decay
    torch.manual_seed(seed)
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
    phase = phases[index]
    set_trainable(net, groups, phase.trainable)
    # relative rates per group: the sweep moves them all together, the head's being the one reported
    rel = param_groups(net, groups, phase.trainable, 1.0, body_lr_mult, layer_decay, 0.0, 0.0)
    optimizer = torch.optim.AdamW(rel)
    for g in optimizer.param_groups:
        g["relative"] = g["lr"]
    net.to(dev, memory_format=torch.channels_last)
    labels = samples.labels[p.train_idx]
    workers = default_workers(dev) if num_workers is None else num_workers
    release_free_memory()
    loader = torch.utils.data.DataLoader(
        LabelledImages([samples.paths[i] for i in p.train_idx], labels, TrainLoader(card.preprocessing, augment),
                       seed=seed),
        batch_size=min(batch_size or default_batch_size(dev), len(p.train_idx)), shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0,  # one fork for the whole sweep (see train.py)
        generator=torch.Generator().manual_seed(seed))
    weight = (torch.as_tensor(class_weights(labels, len(samples.classes)), dtype=torch.float32).to(dev)
              if class_balance else None)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    batches = iter(loader)
    with progress("lr range test", steps) as advance:
        for step in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
            for g in optimizer.param_groups:
                g["lr"] = lr * g["relative"]
            try:
                images, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                images, y = next(batches)
            set_modes(net, bn)
            loss = loss_fn(net(normalize(images, card.preprocessing, dev)), y.to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                break
            avg = SMOOTHING * avg + (1 - SMOOTHING) * value
            smoothed = avg / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            raw.append(value)
            smooth.append(smoothed)
            best = min(best, smoothed)
            advance(1)
            if step > 5 and smoothed > BLOWUP * best:
                break
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
